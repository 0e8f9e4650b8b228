"""Interoperability with other libraries (optional extras)."""
