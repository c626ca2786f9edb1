"""`mnv3det data` (placeholder until its issue lands; the owner replaces this file)."""
