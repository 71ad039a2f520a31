"""MongoDB storage for crmkit: ``crmkit.connect("mongodb://host/db")`` once this is installed.

The store keeps each aggregate in its own collection of the URL's database, writes in
client-session transactions (replica sets and sharded clusters), and runs purchase
summaries and relationship traversal inside the server. See the storage chapter of the
crmkit documentation for the document shapes, indexes and sharding.
"""

from crmkit_mongo._repository import MongoRepository
from crmkit_mongo._store import MongoStore
from crmkit_mongo._url import MongoURL, parse_url

__version__ = "0.1.0"

__all__ = ["MongoRepository", "MongoStore", "MongoURL", "parse_url"]
