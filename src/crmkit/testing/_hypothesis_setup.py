"""Hypothesis entry point: make ``st.from_type(crmkit.Customer)`` and friends use crmkit's strategies.

Hypothesis calls ``register`` when it is imported (entry-point group ``hypothesis``), so
``import crmkit`` alone never imports Hypothesis. The strategies are looked up only when
``from_type`` first needs them, because Hypothesis may be imported *by*
``crmkit.testing.strategies`` itself, before that module has finished loading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_STRATEGIES = {
    "crmkit.customers:Customer": "customers",
    "crmkit.customers:Consent": "consents",
    "crmkit.customers:EmailAddress": "email_addresses",
    "crmkit.customers:Phone": "phones",
    "crmkit.customers:PostalAddress": "postal_addresses",
    "crmkit.customers:Handle": "handles",
    "crmkit.relationships:Relationship": "relationships",
    "crmkit.interactions:Interaction": "interactions",
    "crmkit.transactions:Transaction": "transactions",
    "crmkit.transactions:LineItem": "line_items",
}


def _lazy(name: str) -> Callable[[type], Any]:
    def build(_type: type) -> Any:
        from crmkit.testing import strategies

        return getattr(strategies, name)()

    return build


def register() -> None:
    """Register a strategy for every domain class a user may ask ``st.from_type`` for."""
    import importlib

    from hypothesis import strategies as st

    for target, name in _STRATEGIES.items():
        module, cls = target.split(":")
        st.register_type_strategy(getattr(importlib.import_module(module), cls), _lazy(name))
