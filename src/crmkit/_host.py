"""The plugin host: builds a pluggy manager per ``connect`` and wraps each hook in a typed call."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from crmkit import hookspecs
from crmkit._errors import CRMError, PluginError
from crmkit.channels import ChannelType
from crmkit.relationships import RelationshipType

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.customers import Customer
    from crmkit.events import Event
    from crmkit.lifecycle import CustomerFacts, StageProposal
    from crmkit.lifecycle_model import Stage, StageSet
    from crmkit.schema import AggregateSpec, Schema
    from crmkit.store import Store
    from crmkit.summaries import PurchaseSummary

__all__ = ["BUILTIN_PLUGINS", "PluginHost", "PluginInfo", "plugins", "together"]

#: Internal plugins, registered before installed ones; their first-result defaults are trylast.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "crmkit.backends.memory",
    "crmkit.rules.defaults",
    "crmkit._builtin",
)

ENTRY_POINT_GROUP = "crmkit"


@attrs.frozen
class PluginInfo:
    """An installed or built-in plugin: its name, where it comes from, and the URL schemes it opens."""

    name: str
    distribution: str | None
    version: str | None
    schemes: tuple[str, ...]
    builtin: bool


class PluginHost:
    """One plugin manager and a typed method per hook; nothing else calls ``pm.hook``."""

    def __init__(self, plugins: Iterable[object] = (), block: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager("crmkit")
        self.pm.add_hookspecs(hookspecs)
        for name in block:
            self.pm.set_blocked(name)
        for module_name in BUILTIN_PLUGINS:
            if not self.pm.is_blocked(module_name):
                self.pm.register(importlib.import_module(module_name), name=module_name)
        try:
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must be named, not crash obscurely
            raise PluginError(f"loading plugins of the '{ENTRY_POINT_GROUP}' entry-point group failed: {exc}") from exc
        for plugin in plugins:
            if self.pm.is_registered(plugin):
                continue
            try:
                self.pm.register(plugin)
            except ValueError as exc:
                raise PluginError(f"plugin {plugin!r} could not be registered: {exc}") from exc
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc} (a misspelt hook name? see docs/plugin_hooks.md)") from exc
        self._stages: StageSet | None = None
        self.customer_stages()  # plugin stages become valid Stage values as soon as plugins are loaded

    # --- storage
    def open_store(self, url: str, options: Mapping[str, Any], schema: Schema | None = None) -> Store:
        scheme = url.split(":", 1)[0] if ":" in url else ""
        if schema is None:
            schema = self.schema()
        store = self.pm.hook.crmkit_open_store(url=url, options=options, schema=schema)
        if store is None:
            served = ", ".join(sorted(self.url_schemes())) or "none"
            raise PluginError(
                f"no installed plugin opens URLs of scheme '{scheme}' (schemes served: {served}); "
                "install the backend distribution, e.g. crmkit-sqlalchemy or crmkit-mongo"
            )
        return store  # type: ignore[no-any-return]

    def blob_store(self) -> object | None:
        """The blob store a plugin provides for documents' bytes (``crmkit_blob_store``), or None."""
        return self.pm.hook.crmkit_blob_store()  # type: ignore[no-any-return]

    def url_schemes(self) -> list[str]:
        return sorted({s for result in self.pm.hook.crmkit_url_schemes() for s in result})

    def purchase_summaries(
        self,
        store: Store,
        tenant: str,
        customer_ids: Sequence[uuid.UUID] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> Iterable[PurchaseSummary]:
        result = self.pm.hook.crmkit_purchase_summaries(
            store=store, tenant=tenant, customer_ids=customer_ids, since=since, until=until
        )
        if result is None:  # pragma: no cover - the built-in fallback always answers
            raise PluginError("no plugin computed purchase summaries")
        return result  # type: ignore[no-any-return]

    # --- aggregates
    def schema(self) -> Schema:
        """Every aggregate: crmkit's own and those the plugins declare (PluginError on a clash)."""
        from crmkit.schema import Schema
        from crmkit.schema._declare import spec_of

        specs: dict[int, AggregateSpec] = {}  # one class named by two plugins counts once
        for result in reversed(self.pm.hook.crmkit_aggregates()):  # registration order
            for cls in result or ():
                try:
                    spec = spec_of(cls)
                except CRMError as exc:
                    raise PluginError(f"crmkit_aggregates returned {cls!r}: {exc}") from None
                specs.setdefault(id(spec), spec)
        return Schema(specs.values())

    # --- services
    def services(self) -> dict[str, Callable[[Any], object]]:
        """The services plugins add to a connection (``crm.sales``), by attribute name."""
        found: dict[str, Callable[[Any], object]] = {}
        for result in reversed(self.pm.hook.crmkit_services()):  # registration order
            for name, factory in (result or {}).items():
                if not (isinstance(name, str) and name.isidentifier() and not name.startswith("_")):
                    raise PluginError(f"crmkit_services: {name!r} is not a public attribute name")
                if not callable(factory):
                    raise PluginError(f"crmkit_services: the factory of {name!r} is not callable")
                if name in found and found[name] is not factory:
                    raise PluginError(f"two plugins add a service named {name!r}")
                found[name] = factory
        return found

    def assignment_strategies(self) -> dict[str, Callable[[Any, Any, Any], str]]:
        """Case assignment strategies plugins add (``crm.service.route``), by name."""
        found: dict[str, Callable[[Any, Any, Any], str]] = {}
        for result in reversed(self.pm.hook.crmkit_assignment_strategies()):  # registration order
            for name, strategy in (result or {}).items():
                if not isinstance(name, str) or not callable(strategy):
                    raise PluginError(f"crmkit_assignment_strategies: {name!r} is not a name with a function")
                found[name] = strategy
        return found

    # --- vocabularies
    def channels(self) -> dict[str, ChannelType]:
        found: dict[str, ChannelType] = {}
        for result in self.pm.hook.crmkit_channels():
            for item in result:
                if not isinstance(item, ChannelType):
                    raise PluginError(f"crmkit_channels returned {item!r}, not a ChannelType")
                if item.name in found and found[item.name] != item:
                    raise PluginError(f"two plugins define channel '{item.name}' differently")
                found[item.name] = item
        return found

    def relationship_types(self) -> dict[str, RelationshipType]:
        found: dict[str, RelationshipType] = {}
        for result in self.pm.hook.crmkit_relationship_types():
            for item in result:
                if not isinstance(item, RelationshipType):
                    raise PluginError(f"crmkit_relationship_types returned {item!r}, not a RelationshipType")
                for name in {item.name, item.inverse}:
                    clash = found.get(name)
                    if clash is not None and clash != item:
                        raise PluginError(f"relationship type name '{name}' is defined twice differently")
                found[item.name] = item
                found.setdefault(item.inverse, item)
        return found

    # --- life cycle
    def customer_stages(self) -> StageSet:
        """The customer life cycle: the built-in stages, then those plugins add (registered as Stage values)."""
        from crmkit.lifecycle_model import BUILTIN_STAGES, StageDef, StageSet, register_stages
        from crmkit.state_changes import LIFECYCLE

        if self._stages is not None:
            return self._stages
        found = {s.name: s for s in BUILTIN_STAGES}
        for result in reversed(self.pm.hook.crmkit_customer_stages()):  # registration order
            for item in result or ():
                if not isinstance(item, StageDef):
                    raise PluginError(f"crmkit_customer_stages returned {item!r}, not a StageDef")
                if item.name in found and found[item.name] != item:
                    raise PluginError(f"customer stage '{item.name}' is defined twice differently")
                found[item.name] = item
        register_stages(found.values())
        self._stages = StageSet(LIFECYCLE, list(found.values()))  # the stage set its changes are stored under
        return self._stages

    def propose_stage(self, facts: CustomerFacts) -> StageProposal | None:
        return self.pm.hook.crmkit_propose_stage(facts=facts)  # type: ignore[no-any-return]

    def customer_scores(
        self, crm: CRM, customers: Sequence[Customer], now: dt.datetime
    ) -> dict[uuid.UUID, dict[str, float]]:
        merged: dict[uuid.UUID, dict[str, float]] = {}
        # pluggy returns the results last-registered first; merge oldest first so later plugins win
        for result in reversed(self.pm.hook.crmkit_customer_scores(crm=crm, customers=customers, now=now)):
            if result is None:
                continue
            for customer_id, scores in result.items():
                merged.setdefault(customer_id, {}).update({str(k): float(v) for k, v in scores.items()})
        return merged

    def guard_transition(
        self, customer: Customer, from_stage: Stage, to_stage: Stage, facts: CustomerFacts, rule: str
    ) -> tuple[str, ...]:
        reasons = self.pm.hook.crmkit_guard_transition(
            customer=customer, from_stage=from_stage, to_stage=to_stage, facts=facts, rule=rule
        )
        return tuple(str(r) for r in reasons if r)

    # --- record-level access
    @property
    def has_access_policy(self) -> bool:
        """Whether some plugin filters reads or vetoes writes (the connection then guards its store)."""
        hook = self.pm.hook
        return bool(hook.crmkit_access_filter.get_hookimpls() or hook.crmkit_access_write.get_hookimpls())

    @property
    def has_access_vetoes(self) -> bool:
        return bool(self.pm.hook.crmkit_access_write.get_hookimpls())

    def access_filters(self, actor: str | None, aggregate: Any, schema: Schema) -> list[Any]:
        return list(self.pm.hook.crmkit_access_filter(actor=actor, aggregate=aggregate, schema=schema))

    def access_vetoes(self, actor: str | None, aggregate: Any, old: Any, new: Any) -> tuple[str, ...]:
        reasons = self.pm.hook.crmkit_access_write(actor=actor, aggregate=aggregate, old=old, new=new)
        return tuple(str(r) for r in reasons if r)

    # --- events
    def wants_events(self) -> bool:
        """Whether every write needs its event: some plugin listens to all of them.

        crmkit's own ``crmkit_before_commit`` (``crmkit._builtin``) listens only to the
        aggregates ``watched_entities`` names, so it alone does not make bulk imports of
        customers build an event per record.
        """
        hook = self.pm.hook
        before = [i for i in hook.crmkit_before_commit.get_hookimpls() if i.plugin_name != "crmkit._builtin"]
        return bool(hook.crmkit_after_commit.get_hookimpls() or before)

    def watched_entities(self) -> frozenset[str]:
        """The aggregates whose writes crmkit's own ``crmkit_before_commit`` needs the events of."""
        for impl in self.pm.hook.crmkit_before_commit.get_hookimpls():
            if impl.plugin_name == "crmkit._builtin":
                watched: frozenset[str] = getattr(impl.plugin, "WATCHED", frozenset())
                return watched
        return frozenset()

    @property
    def has_before_commit(self) -> bool:
        return bool(self.pm.hook.crmkit_before_commit.get_hookimpls())

    def before_commit(self, crm: CRM, events: Sequence[Event]) -> None:
        self.pm.hook.crmkit_before_commit(crm=crm, events=events)  # the first error aborts the transaction

    def after_commit(self, crm: CRM, events: Sequence[Event]) -> None:
        """Deliver committed events to every implementation, then raise what any of them raised."""
        errors = self.deliver(crm, events)
        if errors:
            raise together(errors)

    def deliver(self, crm: CRM, events: Sequence[Event]) -> list[Exception]:
        """Call every ``crmkit_after_commit`` implementation, each even if another raised; their errors.

        pluggy stops a hook call at the first exception, so each implementation gets a call of
        its own (hook wrappers, if any, run around each), in pluggy's order: the last
        registered first.
        """
        name = "crmkit_after_commit"
        hook = self.pm.hook.crmkit_after_commit
        plugins = [impl.plugin for impl in hook.get_hookimpls() if not (impl.wrapper or impl.hookwrapper)]
        if len(plugins) <= 1:
            try:
                hook(crm=crm, events=events)
            except Exception as exc:
                return [exc]
            return []
        errors: list[Exception] = []
        for plugin in reversed(plugins):
            only = self.pm.subset_hook_caller(name, [p for p in plugins if p is not plugin])
            try:
                only(crm=crm, events=events)
            except Exception as exc:
                errors.append(exc)
        return errors

    def describe(self) -> list[PluginInfo]:
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            schemes: tuple[str, ...] = ()
            impl = getattr(plugin, "crmkit_url_schemes", None)
            if impl is not None:
                try:
                    schemes = tuple(sorted(impl()))
                except CRMError:  # pragma: no cover - a broken plugin still gets listed
                    schemes = ()
            dist = dists.get(id(plugin))
            out.append(
                PluginInfo(
                    name=name,
                    distribution=dist.project_name if dist is not None else None,
                    version=dist.version if dist is not None else None,
                    schemes=schemes,
                    builtin=name in BUILTIN_PLUGINS,
                )
            )
        return out


def together(errors: Sequence[BaseException]) -> BaseException:
    """One exception to raise for several: the first, with the others attached.

    The first keeps its type (so ``except`` clauses written for it still work); every error,
    the first included, is in its ``crmkit_errors`` attribute, and each other one is named
    in its notes, which tracebacks show from Python 3.11 on. (Python 3.10, which crmkit
    supports, has no ``ExceptionGroup``.)
    """
    first = errors[0]
    others = [e for e in errors[1:] if e is not first]
    if others:
        known = list(getattr(first, "crmkit_errors", (first,)))
        setattr(first, "crmkit_errors", (*known, *(e for e in others if e not in known)))  # noqa: B010
        notes = list(getattr(first, "__notes__", ()))
        notes += [f"crmkit: also raised: {type(e).__name__}: {e}" for e in others]
        setattr(first, "__notes__", notes)  # noqa: B010 (BaseException.add_note is Python 3.11+)
    return first


def plugins() -> list[PluginInfo]:
    """Every plugin crmkit would load (built-in and installed), with the URL schemes each opens."""
    return PluginHost().describe()
