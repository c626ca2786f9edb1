"""Small helpers every package shares: checkpoints, devices, run folders, box post-processing."""
