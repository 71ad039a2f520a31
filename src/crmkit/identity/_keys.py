"""Keeping ``identity_keys`` in step with customers, and looking customers up by them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crmkit._errors import ConflictError, ValidationError
from crmkit.customers import Customer
from crmkit.identity._contact import email_key, phone_key
from crmkit.identity._records import IdentityKey
from crmkit.identity._text import fold, token_key
from crmkit.query import And, Compare, In, parse_order
from crmkit.services.records import _stamped

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = [
    "BLOCKING",
    "MERGED_INTO",
    "blocking_keys_of",
    "customers_by_key",
    "drop_keys",
    "keys_of",
    "rekey",
    "rekey_changed",
    "write_keys",
]

#: The attribute that marks a customer merged into another (its value: the survivor's id).
MERGED_INTO = "merged_into"

#: The kinds of ``identity_keys`` that block duplicate detection (``crm.identity.duplicates``):
#: customers sharing one of these keys are compared. ``name`` is the folded name with its
#: words sorted; ``address`` the folded first address line's words sorted, and the postcode.
BLOCKING = ("email", "phone", "name", "address")


def _region(crm: CRM, customer: Customer) -> str | None:
    region: str | None = getattr(crm, "_identity_region", None)
    if region is None:
        region = next((a.country for a in customer.addresses if a.country), None)
    return region


def keys_of(crm: CRM, customer: Customer) -> list[tuple[str, str]]:
    """The (kind, key) pairs of a customer's e-mails and phones; none for a merged-away customer.

    A phone that cannot be read as E.164 (a national number without a known region) has no key.
    """
    if MERGED_INTO in customer.attributes:
        return []
    found: dict[tuple[str, str], None] = {}
    for email in customer.emails:
        try:
            found[("email", email_key(email.address))] = None
        except ValidationError:
            continue
    region = _region(crm, customer)
    for phone in customer.phones:
        try:
            found[("phone", phone_key(phone.number, region=region))] = None
        except ValidationError:
            continue
    return list(found)


def blocking_keys_of(customer: Customer) -> list[tuple[str, str]]:
    """The (kind, key) pairs that block duplicate detection besides e-mails and phones: name and address."""
    if MERGED_INTO in customer.attributes:
        return []
    found: list[tuple[str, str]] = []
    name = token_key(fold(customer.name or ""))
    if name:
        found.append(("name", name))
    if customer.addresses:
        address = customer.addresses[0]
        line = token_key(fold(" ".join(address.lines)))
        if line:
            found.append(("address", f"{line}|{fold(address.postal_code or '').replace(' ', '')}"))
    return found


def _spec(crm: CRM) -> Any:
    return crm.schema.declared.get("identity_keys")


def write_keys(crm: CRM, customers: Sequence[Customer], *, check_emails: bool = True) -> None:
    """Store the keys of newly stored customers (inside the caller's transaction).

    ``check_emails=False`` skips the unique e-mail policy: the customers' e-mails did not
    change (a rename re-keys the name), and what they held before the policy stays theirs.
    """
    spec = _spec(crm)
    if spec is None or not customers:
        return
    rows = [
        # stamped with the customer's own time: no extra reading of the clock per write
        _stamped(IdentityKey(customer_id=c.id, kind=kind, key=key), c.updated_at or crm.now())
        for c in customers
        for kind, key in [*keys_of(crm, c), *blocking_keys_of(c)]
    ]
    if rows:
        if check_emails and getattr(crm, "_identity_unique_emails", False):
            _refuse_taken_emails(crm, spec, rows)
        crm.store.repository(spec).insert(crm.tenant, rows)


def _refuse_taken_emails(crm: CRM, spec: Any, rows: list[IdentityKey]) -> None:
    """ConflictError naming the other customer when an e-mail key is held by another customer already."""
    wanted: dict[str, uuid.UUID] = {}
    for row in rows:
        if row.kind != "email":
            continue
        other = wanted.setdefault(row.key, row.customer_id)
        if other != row.customer_id:
            raise ConflictError(
                f"e-mail {row.key} is given to two customers ({other} and {row.customer_id})",
                entity="customer",
                key=row.customer_id,
            )
    if not wanted:
        return
    where = And((Compare("kind", "==", "email"), In("key", tuple(wanted))))
    for held in crm.store.repository(spec).find(crm.tenant, where, parse_order(None, spec), None):
        if held.customer_id != wanted[held.key]:
            err = ConflictError(
                f"e-mail {held.key} belongs to customer {held.customer_id} already",
                entity="customer",
                key=wanted[held.key],
            )
            err.field = "emails"  # type: ignore[attr-defined]
            raise err


def rekey(crm: CRM, customers: Iterable[Customer], *, check_emails: bool = True) -> None:
    """Replace the stored keys of customers whose name, contact points (or merge state) changed."""
    spec = _spec(crm)
    items = list(customers)
    if spec is None or not items:
        return
    crm.store.repository(spec).delete_where(crm.tenant, In("customer_id", tuple(c.id for c in items)))
    write_keys(crm, items, check_emails=check_emails)


def rekey_changed(crm: CRM, pairs: Sequence[tuple[Customer, Customer]], *, rules: bool = True) -> None:
    """Re-key the updated customers whose name, contact points, addresses or attributes changed, in a few writes.

    The unique e-mail policy checks those whose e-mails changed; ``rules`` applies the
    connection's duplicate rules to them (not to a merge's own writes).
    """
    changed = [
        (old, new)
        for old, new in pairs
        if (old.name, old.emails, old.phones, old.addresses, old.attributes)
        != (new.name, new.emails, new.phones, new.addresses, new.attributes)
    ]
    spec = _spec(crm)
    if spec is None or not changed:
        return
    crm.store.repository(spec).delete_where(crm.tenant, In("customer_id", tuple(new.id for _, new in changed)))
    write_keys(crm, [new for old, new in changed if old.emails != new.emails])
    write_keys(crm, [new for old, new in changed if old.emails == new.emails], check_emails=False)
    if rules:
        from crmkit.identity._rules import apply_rules

        apply_rules(crm, [new for _, new in changed])


def drop_keys(crm: CRM, customer_id: uuid.UUID) -> None:
    """Remove a deleted customer's keys: derived rows, written without events, go without them too."""
    spec = _spec(crm)
    if spec is not None:
        crm.store.repository(spec).delete_where(crm.tenant, Compare("customer_id", "==", customer_id))


def customers_by_key(crm: CRM, kind: str, key: str) -> list[Customer]:
    """The customers holding a key, oldest first (an index look-up, then the customers by id)."""
    spec = _spec(crm)
    if spec is None:
        raise ValidationError("identity", "the identity aggregates are not registered on this connection", kind)
    where = And((Compare("kind", "==", kind), Compare("key", "==", key)))
    rows = crm.store.repository(spec).find(crm.tenant, where, parse_order(None, spec), None)
    ids: list[uuid.UUID] = list(dict.fromkeys(r.customer_id for r in rows))
    if not ids:
        return []
    return list(crm.customers.scan(In("id", tuple(ids)), order_by=("created_at", "id")))
