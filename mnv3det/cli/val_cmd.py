"""`mnv3det val` (placeholder until its issue lands; the owner replaces this file)."""
