"""`mnv3det export` (placeholder until its issue lands; the owner replaces this file)."""
