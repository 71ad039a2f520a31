"""MongoDB storage for crmkit: ``crmkit.connect("mongodb://host/db")`` once this is installed.

The store keeps each aggregate in its own collection of the URL's database, writes in
client-session transactions (replica sets and sharded clusters), and runs purchase
summaries and relationship traversal inside the server. See the storage chapter of the
crmkit documentation for the document shapes, indexes and sharding.

pymongo is imported only when a MongoDB URL is opened (or one of the classes below is
used), so having this plugin installed costs ``crmkit.connect("memory://")`` nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crmkit_mongo._url import MongoURL, parse_url

if TYPE_CHECKING:
    from crmkit_mongo._repository import MongoRepository
    from crmkit_mongo._store import MongoStore

__version__ = "0.1.0"

__all__ = ["MongoRepository", "MongoStore", "MongoURL", "parse_url"]

_LAZY = {"MongoStore": "crmkit_mongo._store", "MongoRepository": "crmkit_mongo._repository"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crmkit_mongo' has no attribute {name!r}")
