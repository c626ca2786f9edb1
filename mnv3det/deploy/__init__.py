"""Deployment: runtime backends, the one prediction path, detect sources, export, profile."""
