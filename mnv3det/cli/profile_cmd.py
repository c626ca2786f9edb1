"""`mnv3det profile` (placeholder until its issue lands; the owner replaces this file)."""
