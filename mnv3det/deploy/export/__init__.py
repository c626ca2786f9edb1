"""Write a model in a deployment format and check it against PyTorch: one registry (registry.py), one module per
format (its writer, calibration and verification choices), the pipelines (pipeline.py for onnx/torchscript,
edge.py for the static formats). Sits above deploy/runtime, which runs what it writes.
"""
