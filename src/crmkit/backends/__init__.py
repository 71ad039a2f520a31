"""Backends that ship inside crmkit (only the in-memory reference store)."""
