"""crmkit: a CRM domain library with plugin storage backends.

Customers, relationships, interactions, transactions and the customer life cycle as
frozen, validated domain objects; storage picked by URL (``crmkit.connect``) from
pluggable backends; life-cycle rules, channels and relationship types as plugins.
"""

from crmkit._errors import (
    BackendError,
    ConflictError,
    CRMError,
    NotFound,
    PluginError,
    TransitionVetoed,
    ValidationError,
)
from crmkit._host import PluginInfo, plugins
from crmkit.channels import Channel, ChannelType
from crmkit.crm import CRM, BulkResult, Page, TimelineEntry, connect
from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.hookspecs import hookimpl
from crmkit.interactions import Interaction
from crmkit.lifecycle import CustomerFacts, Decision, LifecyclePolicy, StageProposal
from crmkit.lifecycle_model import Stage, StageChange
from crmkit.query import F
from crmkit.relationships import Reached, Relationship, RelationshipType
from crmkit.state_changes import StateChange
from crmkit.summaries import PurchaseSummary
from crmkit.transactions import LineItem, Transaction

__version__ = "0.1.0"

__all__ = [
    "CRM",
    "BackendError",
    "BulkResult",
    "CRMError",
    "Channel",
    "ChannelType",
    "ConflictError",
    "Consent",
    "Customer",
    "CustomerFacts",
    "Decision",
    "EmailAddress",
    "F",
    "Handle",
    "Interaction",
    "LifecyclePolicy",
    "LineItem",
    "NotFound",
    "Page",
    "Phone",
    "PluginError",
    "PluginInfo",
    "PostalAddress",
    "PurchaseSummary",
    "Reached",
    "Relationship",
    "RelationshipType",
    "Stage",
    "StageChange",
    "StateChange",
    "StageProposal",
    "TimelineEntry",
    "Transaction",
    "TransitionVetoed",
    "ValidationError",
    "connect",
    "hookimpl",
    "plugins",
]
