"""Open stores for the conformance suite: one per URL per test session, a fresh tenant per test."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import crmkit
from crmkit._host import PluginHost
from crmkit.crm import CRM
from crmkit.lifecycle import LifecyclePolicy
from crmkit.store import Capabilities, Store

__all__ = ["Backend", "BackendPool", "new_tenant"]


def new_tenant(prefix: str = "conformance") -> str:
    """A tenant name nobody used before, so tests on a shared server never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


class Backend:
    """One open store under test; hands out CRMs for fresh tenants that share it."""

    def __init__(self, url: str, options: Mapping[str, Any], plugins: Iterable[object] = ()) -> None:
        self.url = url
        self.options = dict(options)
        self.plugins = tuple(plugins)
        self._root = crmkit.connect(url, tenant=new_tenant("setup"), plugins=self.plugins, **self.options)

    @property
    def store(self) -> Store:
        return self._root.store

    @property
    def capabilities(self) -> Capabilities:
        return self.store.capabilities

    def crm(
        self,
        *,
        tenant: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        policy: LifecyclePolicy | None = None,
        plugins: Iterable[object] = (),
        actor: str | None = None,
    ) -> CRM:
        """A CRM on the shared store for ``tenant`` (a fresh one by default); never close it.

        ``plugins`` are registered on top of the backend's own (event recorders, hooks under
        test) without opening the store again.
        """
        host = self._root._host
        if plugins:
            host = PluginHost(plugins=(*self.plugins, *plugins))
        return CRM(self.store, host, tenant or new_tenant(), clock=clock, policy=policy, actor=actor)

    def connect(
        self,
        *,
        tenant: str | None = None,
        plugins: Iterable[object] = (),
        block: Iterable[str] = (),
        clock: Callable[[], dt.datetime] | None = None,
        policy: LifecyclePolicy | None = None,
    ) -> CRM:
        """A separate ``crmkit.connect`` to the URL with extra (or blocked) plugins; the caller closes it."""
        return crmkit.connect(
            self.url,
            tenant=tenant or new_tenant(),
            plugins=(*self.plugins, *plugins),
            block=block,
            clock=clock,
            policy=policy,
            **self.options,
        )

    def close(self) -> None:
        self._root.close()


class BackendPool:
    """Backends by URL and options, opened on first use and closed at the end of the session."""

    def __init__(self) -> None:
        self._open: dict[str, Backend] = {}

    def get(self, url: str, options: Mapping[str, Any] | None = None, plugins: Iterable[object] = ()) -> Backend:
        if not isinstance(url, str):
            raise TypeError(f"the crmkit_url fixture must return a URL string, not {url!r}")
        options = dict(options or {})
        plugins = tuple(plugins)
        key = f"{url}\n{sorted(options.items())!r}\n{[id(p) for p in plugins]}"
        if key not in self._open:
            self._open[key] = Backend(url, options, plugins)
        return self._open[key]

    def close(self) -> None:
        backends, self._open = list(self._open.values()), {}
        for backend in backends:
            backend.close()
