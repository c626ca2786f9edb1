"""`mnv3det detect` (placeholder until its issue lands; the owner replaces this file)."""
