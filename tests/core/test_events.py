"""Events reach crmkit_after_commit only after the commit, in order, with before and after."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import attrs
import pytest

import crmkit
from crmkit import Customer, Transaction, events


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[events.Event]] = []

    @crmkit.hookimpl
    def crmkit_after_commit(self, events: Sequence[events.Event]) -> None:
        self.batches.append(list(events))


def test_events_after_commit_with_before_and_after() -> None:
    rec = Recorder()
    with crmkit.connect("memory://", plugins=[rec], tenant="t1") as crm:
        c = crm.customers.add(Customer(kind="person", name="Ada"))
        c2 = crm.customers.update(attrs.evolve(c, name="Ada King"))
        crm.transactions.add(Transaction(customer_id=c.id, occurred_at=crm.now(), amount=Decimal("5"), currency="GBP"))
        crm.customers.delete(c.id)
    kinds = [type(e) for batch in rec.batches for e in batch]
    assert kinds == [events.CustomerCreated, events.CustomerUpdated, events.TransactionAdded, events.CustomerDeleted]
    updated = rec.batches[1][0]
    assert updated.before == c and updated.after == c2 and updated.tenant == "t1"
    assert rec.batches[3][0].after is None and rec.batches[3][0].before == c2


def test_no_events_for_rolled_back_work_and_one_batch_per_transaction() -> None:
    rec = Recorder()
    with crmkit.connect("memory://", plugins=[rec]) as crm:
        with pytest.raises(ZeroDivisionError), crm.transaction():
            crm.customers.add(Customer(kind="person", name="Lost"))
            1 / 0  # noqa: B018
        assert rec.batches == [] and crm.customers.count() == 0
        with crm.transaction():
            a = crm.customers.add(Customer(kind="person", name="A"))
            with crm.transaction():
                crm.customers.add(Customer(kind="person", name="B"))
            assert rec.batches == []  # nothing delivered before the outer commit
            crm.lifecycle.move(a.id, crmkit.Stage.PROSPECT)
        assert len(rec.batches) == 1
        assert [type(e) for e in rec.batches[0]] == [
            events.CustomerCreated,
            events.CustomerCreated,
            events.CustomerUpdated,
            events.event_for("state_changes", "created"),  # the generic record of the change
            events.StageChanged,  # and the customers' own event
        ]


def test_an_inner_failure_caught_by_the_caller_still_rolls_everything_back() -> None:
    with crmkit.connect("memory://") as crm:
        with pytest.raises(crmkit.CRMError, match="rolled back"), crm.transaction():
            crm.customers.add(Customer(kind="person", name="A"))
            try:
                with crm.transaction():
                    crm.customers.add(Customer(kind="person", name="B"))
                    raise KeyError("inner")
            except KeyError:
                pass
        assert crm.customers.count() == 0


def test_stage_change_events_carry_the_change() -> None:
    rec = Recorder()
    with crmkit.connect("memory://", plugins=[rec], block=["vip_rules"]) as crm:
        c = crm.customers.add(Customer(kind="person", name="A"))
        crm.transactions.add(
            Transaction(
                customer_id=c.id, occurred_at=crm.now() - dt.timedelta(days=1), amount=Decimal(1), currency="EUR"
            )
        )
        crm.lifecycle.evaluate(c.id)
    changed = [e for batch in rec.batches for e in batch if isinstance(e, events.StageChanged)]
    assert len(changed) == 1 and changed[0].after.to_stage == crmkit.Stage.CUSTOMER


class Broken:
    def __init__(self, name: str) -> None:
        self.name = name

    @crmkit.hookimpl
    def crmkit_after_commit(self, events: Sequence[events.Event]) -> None:
        raise RuntimeError(f"{self.name} is down")


class Wrapper:
    """A new-style hook wrapper: it runs around each implementation's call and sees its error."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @crmkit.hookimpl(wrapper=True)
    def crmkit_after_commit(self, events: Sequence[events.Event]):  # type: ignore[no-untyped-def]
        try:
            return (yield)
        except RuntimeError as exc:
            self.seen.append(str(exc))
            raise


@pytest.mark.parametrize("order", ["broken first", "broken last"])
def test_every_after_commit_implementation_is_called_and_every_error_reported(order: str) -> None:
    audit, hook, webhook, wrapper = Recorder(), Broken("hook"), Broken("webhook"), Wrapper()
    plugins = [hook, audit, webhook, wrapper] if order == "broken first" else [wrapper, audit, hook, webhook]
    with crmkit.connect("memory://", plugins=plugins) as crm:
        with pytest.raises(RuntimeError) as raised:
            crm.customers.add(Customer(kind="person", name="Ada"))
        assert [[type(e) for e in batch] for batch in audit.batches] == [[events.CustomerCreated]]
        errors = raised.value.crmkit_errors  # type: ignore[attr-defined]
        assert sorted(str(e) for e in errors) == ["hook is down", "webhook is down"]
        assert str(raised.value) == str(errors[0]) and raised.value is errors[0]
        assert getattr(raised.value, "__notes__", None) == [f"crmkit: also raised: RuntimeError: {errors[1]}"]
        assert sorted(wrapper.seen) == ["hook is down", "webhook is down"]
        assert crm.customers.count() == 1


def test_an_import_error_comes_first_with_the_hooks_errors_attached() -> None:
    hook = Broken("hook")
    with crmkit.connect("memory://", plugins=[hook]) as crm:
        rows: list[object] = [Customer(kind="person", name=f"p{i}") for i in range(5)] + ["not a customer"]
        with pytest.raises(crmkit.ValidationError) as raised:
            crm.customers.add_many(rows, batch_size=2)  # type: ignore[arg-type]
        assert raised.value.row == 5
        assert [str(e) for e in raised.value.crmkit_errors[1:]] == ["hook is down"] * 2  # type: ignore[attr-defined]
        assert crm.customers.count() == 4
