"""Evaluation: infer -> score (pycocotools-exact) -> write reports and plots."""
