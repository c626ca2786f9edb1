"""Run any exported model: a Backend per runtime, the one prediction path, detect's sources, timing.

This layer imports nothing from deploy/export or from the modules above it (benchmark, profile, detect_runner):
an exported file carries its own description (metadata.py), so running it needs no exporter.
"""
