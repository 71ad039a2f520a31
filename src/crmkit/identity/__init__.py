"""Identity: matching records, contact points as identity keys, merging duplicates and un-merging.

``Matcher`` matches plain records (no store needed); ``crm.customers.find_by_email`` and
``find_by_phone`` look customers up by their normalised contact points; ``crm.identity``
finds likely duplicates among stored customers, merges them and undoes merges;
``DuplicateRule`` refuses or flags a likely duplicate as it is added.
"""

from crmkit.identity._contact import CALLING_CODES, email_key, phone_key
from crmkit.identity._matcher import KINDS, Match, Matcher, Parameters, prior_parameters
from crmkit.identity._records import DuplicateAlert, IdentityKey, Merge, Moved
from crmkit.identity._rules import DuplicateRule
from crmkit.identity._service import DEFAULT_RULES, ODOO_RULES, Duplicate, Identity, Unmerged

__all__ = [
    "CALLING_CODES",
    "DEFAULT_RULES",
    "KINDS",
    "ODOO_RULES",
    "Duplicate",
    "DuplicateAlert",
    "DuplicateRule",
    "Identity",
    "IdentityKey",
    "Match",
    "Matcher",
    "Merge",
    "Moved",
    "Parameters",
    "Unmerged",
    "email_key",
    "phone_key",
    "prior_parameters",
]
