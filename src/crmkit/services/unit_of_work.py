"""The unit of work of a connection: transactions, events before and after commit, and the actor."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, cast

from crmkit._errors import CRMError, ValidationError
from crmkit._validation import text_of
from crmkit.events import Event
from crmkit.store import Store

if TYPE_CHECKING:
    from crmkit._host import PluginHost
    from crmkit.audit._journal import Journal
    from crmkit.crm import CRM

__all__ = ["UnitOfWork"]


class _RollbackOnly(Exception):
    pass


#: How many times ``crmkit_before_commit`` may be called for what its own writes added.
_BEFORE_COMMIT_ROUNDS = 10


def _actor(field: str, value: object) -> str | None:
    """None or a non-blank actor name such as ``user:42``."""
    if value is None:
        return None
    text = text_of(field, value)
    if len(text) > 200:
        raise ValidationError(field, "must be at most 200 characters", value)
    return text


def _settle(calls: list[Callable[[bool], None]], committed: bool) -> None:
    """Call every ``_after_transaction`` callable, each even if another raised; then raise the first error.

    After a rollback nothing is raised: the error that rolled the transaction back is the one to see.
    """
    error: BaseException | None = None
    for call in calls:
        try:
            call(committed)
        except BaseException as exc:  # the others still run; the first is raised
            error = error or exc
    if error is not None and committed:
        raise error


class UnitOfWork:
    """Transactions of one connection per thread: nesting, rollback-only, events and the actor (CRM's part)."""

    tenant: str
    store: Store
    _host: PluginHost
    _local: threading.local
    _actor: str | None
    _events_wanted: bool
    #: Aggregates whose events are built even when no plugin wants every event (crmkit's own rules read them).
    _watched: frozenset[str] = frozenset()
    _before_commit_wanted: bool
    #: Writes the audit trail and the event feed of each transaction inside it (None: neither is kept).
    _journal: Journal | None = None

    def now(self) -> dt.datetime:  # pragma: no cover - the CRM's clock
        raise NotImplementedError

    @property
    def actor(self) -> str | None:
        """Who the changes made now are attributed to (events carry it); None when unset."""
        stack = getattr(self._local, "actors", None)
        return stack[-1] if stack else self._actor

    @contextmanager
    def acting_as(self, actor: str | None) -> Iterator[None]:
        """Attribute the changes made in the block (on this thread) to ``actor``."""
        checked = _actor("actor", actor)
        stack = self._local.__dict__.setdefault("actors", [])
        stack.append(checked)
        try:
            yield
        finally:
            stack.pop()

    @property
    def cause(self) -> str:
        """What the changes made now are attributed to: ``api`` unless ``caused_by`` says otherwise."""
        stack = getattr(self._local, "causes", None)
        return stack[-1] if stack else "api"

    @contextmanager
    def caused_by(self, cause: str) -> Iterator[None]:
        """Attribute the changes made in the block (on this thread) to ``cause``.

        crmkit's own APIs set theirs (``import`` for ``add_many`` and ``upsert_many``,
        ``merge`` and ``unmerge``, ``rule:<name>`` for life-cycle rules); an application names
        its own (``import:salesforce``, ``job:nightly-cleanup``). Events and audit entries carry it.
        """
        checked = _actor("cause", cause)
        if checked is None:
            raise ValidationError("cause", "must name what makes the changes", cause)
        stack = self._local.__dict__.setdefault("causes", [])
        stack.append(checked)
        try:
            yield
        finally:
            stack.pop()

    @contextmanager
    def _unless_caused(self, cause: str) -> Iterator[None]:
        """``caused_by(cause)`` when nothing names a cause yet (an API's default for what it writes)."""
        if getattr(self._local, "causes", None):
            yield
            return
        with self.caused_by(cause):
            yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all; events are delivered after the commit.

        Blocks nest: an inner block joins the outer transaction. If an exception leaves an
        inner block, the whole transaction is rolled back even if the outer code catches it.
        """
        with self._transaction(None):
            yield

    @contextmanager
    def _transaction(self, committed_events: list[Event] | None) -> Iterator[None]:
        """``transaction()``; given a list, the events of the commit go into it instead of to the hooks.

        (Bulk imports may write on a helper thread, and deliver the events on the caller's.)
        """
        local = self._local
        if getattr(local, "depth", 0) > 0:
            local.depth += 1
            try:
                yield
            except BaseException:
                local.doomed = True
                raise
            finally:
                local.depth -= 1
            return
        local.depth, local.events, local.doomed, local.settle = 1, [], False, []
        committed = False
        try:
            with self.store.transaction():
                yield
                if local.doomed:
                    raise _RollbackOnly
                # derived records (hooks' history rows, the audit trail): rules see and write everything,
                # under record-level access too (crmkit.access); the actor's own writes were checked
                with getattr(self.store, "unrestricted", nullcontext)():
                    self._before_commit(local)
                    if self._journal is not None and local.events:
                        self._journal.write(cast("CRM", self), local.events)
            committed = True
        except _RollbackOnly:
            raise CRMError("rolled back: an inner transaction() block failed and its error was caught") from None
        finally:
            local.depth = 0
            events, local.events = local.events, []
            settle, local.settle = local.settle, []
            if settle and not committed:
                _settle(settle, False)  # raises nothing: the error that rolled back goes on
        try:
            if settle:
                _settle(settle, True)
        finally:  # the commit's events are delivered even if a follow-up failed
            if events:
                if committed_events is None:
                    self._host.after_commit(cast("CRM", self), events)
                else:
                    committed_events.extend(events)

    def _after_transaction(self, call: Callable[[bool], None]) -> None:
        """Call ``call(committed)`` once the calling thread's transaction ends (``call(True)`` now outside one).

        For what a transaction cannot hold: a file kept outside the store is deleted only
        once the deletion of its record has committed, and an attach's staged copy is
        dropped whether its transaction committed or rolled back.
        """
        if not self._in_transaction():
            call(True)
            return
        self._local.settle.append(call)

    def _before_commit(self, local: threading.local) -> None:
        """Hand the transaction's events to ``crmkit_before_commit``, again for what its writes add."""
        if not self._before_commit_wanted:
            return
        seen = 0  # writes the hook makes join this transaction: its depth is still 1
        for _ in range(_BEFORE_COMMIT_ROUNDS):
            if seen == len(local.events):
                return
            fresh, seen = local.events[seen:], len(local.events)
            self._host.before_commit(cast("CRM", self), tuple(fresh))
            if local.doomed:
                raise _RollbackOnly
        raise CRMError(
            f"crmkit_before_commit kept writing for {_BEFORE_COMMIT_ROUNDS} rounds: "
            "a hook reacts to its own records (rolled back)"
        )

    def _in_transaction(self) -> bool:
        """Whether the calling thread is inside ``transaction()``."""
        return getattr(self._local, "depth", 0) > 0

    def _wants_events(self, entity: str) -> bool:
        """Whether the writes of this aggregate build events (some hook reads them)."""
        return self._events_wanted or entity in self._watched

    def _emit(self, kind: type[Event], before: Any, after: Any) -> None:
        if self._events_wanted or kind.entity in self._watched:
            self._local.events.append(kind(self.tenant, self.now(), before, after, self.actor, self.cause))

    def _emit_created(self, kind: type[Event], records: list[Any]) -> None:
        """``_emit`` of the creation of each record of a bulk write: one clock read, actor and cause for all."""
        if records and (self._events_wanted or kind.entity in self._watched):
            tenant, now, actor, cause = self.tenant, self.now(), self.actor, self.cause
            self._local.events.extend([kind(tenant, now, None, record, actor, cause) for record in records])

    def _emit_changed(self, kind: type[Event], pairs: list[tuple[Any, Any]]) -> None:
        """``_emit`` of each (before, after) change of a bulk write: one clock read, actor and cause for all."""
        if pairs and (self._events_wanted or kind.entity in self._watched):
            tenant, now, actor, cause = self.tenant, self.now(), self.actor, self.cause
            self._local.events.extend([kind(tenant, now, before, after, actor, cause) for before, after in pairs])
