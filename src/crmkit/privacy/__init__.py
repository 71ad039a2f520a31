"""Privacy: export everything held about a person, erase it by anonymising, retention holds.

::

    data = crm.privacy.export(ada.id)                # JSON-ready: every record about her
    plan = crm.privacy.erase(ada.id, dry_run=True)   # what would change; nothing written
    report = crm.privacy.erase(ada.id)               # anonymised everywhere, in one transaction
    crm.privacy.hold(bob.id, until=dt.date(2033, 12, 31), reason="tax records")

Every registered aggregate is covered, plugins' too: the records about a person are found
by walking the references of ``crm.schema``, and the fields to anonymise are those declared
with ``personal=`` (``schema.text(personal="contact")``).
"""

from crmkit.privacy._records import Erasure, Hold
from crmkit.privacy._service import ErasureRefused, ErasureReport, FieldChange, Privacy, to_json

#: The privacy layer's aggregates (registered by crmkit's built-in plugin).
AGGREGATES: tuple[type, ...] = (Hold, Erasure)

__all__ = ["AGGREGATES", "Erasure", "ErasureRefused", "ErasureReport", "FieldChange", "Hold", "Privacy", "to_json"]
