"""Hypothesis entry point: make ``st.from_type(crmkit.Customer)`` and friends use crmkit's strategies."""

from __future__ import annotations


def register() -> None:
    """Called by Hypothesis when it is imported."""
