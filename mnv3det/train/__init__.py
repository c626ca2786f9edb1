"""Training: config, loop, checkpoint state, optimizer, EMA, DDP, loss and assigner, autoanchor, run plots."""
