"""`mnv3det train` (placeholder until its issue lands; the owner replaces this file)."""
