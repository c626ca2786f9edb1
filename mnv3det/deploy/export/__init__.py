"""Write a model in a deployment format and check it against PyTorch: one writer module per format (what the format
records in deploy/formats.py name), one pipeline (pipeline.py) for all of them, end_to_end.py for `--nms`. Sits
above deploy/runtime, which runs what it writes.
"""
