"""A short tour of crmkit on the in-memory store: run ``python examples/quickstart.py``.

Customers and their contact points, a relationship, interactions and purchases, a query,
one customer's timeline, the life-cycle rules, and a first look at customer value.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import crmkit
from crmkit import Channel, Consent, Customer, EmailAddress, F, Interaction, Relationship, Transaction


def day(month: int, d: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, d, hour, tzinfo=dt.timezone.utc)


def main() -> None:
    clock_now = day(6, 30, 18)
    # block: show only crmkit's default rules, whatever rule plugins are installed
    with crmkit.connect("memory://", tenant="acme-shop", clock=lambda: clock_now, block=["vip_rules"]) as crm:
        print(f"connected: {crm!r}")

        # customers, one of them an organisation, with consent recorded per channel
        acme = crm.customers.add(Customer(kind="organization", name="Acme Ltd", tags={"b2b"}))
        ada = crm.customers.add(
            Customer(
                kind="person",
                name="Ada Lovelace",
                emails=[EmailAddress("ada@example.com", consent=[Consent(Channel.EMAIL, granted=True, at=day(1, 2))])],
                tags={"newsletter"},
            )
        )
        grace = crm.customers.add(Customer(kind="person", name="Grace Hopper"))
        print(f"customers: {crm.customers.count()} (Ada may be e-mailed: {ada.may_contact('email')})")

        # a relationship: Ada works for Acme; ask Acme who works for it
        crm.relationships.add(Relationship(source_id=ada.id, target_id=acme.id, kind="works_for", role="CTO"))
        staff = crm.relationships.neighbours(acme.id, kind="employs", direction="out")
        print(f"Acme employs: {[crm.customers.get(r.customer_id).name for r in staff]}")

        # interactions on several channels, and purchases in exact Decimal money
        crm.interactions.add_many(
            [
                Interaction(customer_id=ada.id, channel=Channel.EMAIL, direction="inbound", occurred_at=day(1, 5),
                            subject="Pricing question"),
                Interaction(customer_id=ada.id, channel=Channel.PHONE, direction="outbound", occurred_at=day(1, 6),
                            subject="Call back", outcome="quote sent"),
                Interaction(customer_id=grace.id, channel=Channel.WEB, direction="inbound", occurred_at=day(2, 1)),
            ]
        )
        crm.transactions.add_many(
            Transaction(customer_id=ada.id, occurred_at=day(m, 9), amount=Decimal(a), currency="EUR")
            for m, a in ((1, "120.00"), (2, "80.50"), (3, "99.90"), (5, "45.00"), (6, "150.00"))
        )
        crm.transactions.add(Transaction(customer_id=acme.id, occurred_at=day(1, 20), amount=Decimal("2400"),
                                         currency="EUR"))

        # queries with F(...): large purchases, and people who get the newsletter
        big = crm.transactions.find(F("amount") >= Decimal(100), order_by="-amount")
        print("purchases of 100 or more:", ", ".join(f"{t.amount} {t.currency}" for t in big))
        readers = crm.customers.find((F("kind") == "person") & F("tags").contains("newsletter"))
        print("newsletter readers:", [c.name for c in readers])

        # one customer's timeline: interactions and transactions in time order
        print("Ada's timeline:")
        for entry in crm.timeline(ada.id, limit=4):
            record = entry.record
            what = getattr(record, "subject", None) or getattr(record, "amount", "")
            print(f"  {entry.at:%Y-%m-%d}  {entry.kind:<12} {what}")

        # the life cycle: default rules propose a stage from the facts computed in the store
        for customer in (ada, acme, grace):
            decision = crm.lifecycle.evaluate(customer.id)
            now_in = crm.customers.get(customer.id).stage
            print(f"{customer.name:<13} {decision.current} -> {now_in} ({decision.reason})")

        # customer value: per-customer summaries and averages, aggregated by the store
        summary = crm.value.summary(unit="week", observation_end=clock_now)
        row = summary.get(ada.id)
        print(f"Ada: {row.frequency} repeat purchases, recency {row.recency:.1f} weeks, age {row.T:.1f} weeks, "
              f"mean repeat spend {row.monetary_value:.2f} EUR")
        m = crm.value.metrics(currency="EUR")
        print(f"average order value {m.average_order_value:.2f} EUR, {m.purchase_frequency:.1f} orders per customer")


if __name__ == "__main__":
    main()
