"""Test-only helpers for crmkit: real database servers (see ``servers``).

Import from ``tests.support.servers`` explicitly; this file stays empty so the
helpers are loaded exactly once, whichever way pytest names this folder.
"""
