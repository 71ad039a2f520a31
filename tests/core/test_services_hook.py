"""Plugins add services to a connection (``crm.sales``), and every aggregate is reachable by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from crmkit_subscriptions import Subscription

import crmkit
from crmkit import Customer, PluginError


class Greeter:
    built = 0

    def __init__(self, crm: Any) -> None:
        type(self).built += 1
        self.crm = crm

    def hello(self) -> str:
        return f"hello {self.crm.tenant}"


class GreeterPlugin:
    @crmkit.hookimpl
    def crmkit_services(self) -> Mapping[str, Callable[[Any], object]]:
        return {"greeter": Greeter}


def test_a_plugin_service_is_built_once_per_connection() -> None:
    Greeter.built = 0
    with crmkit.connect("memory://", tenant="acme", plugins=[GreeterPlugin()]) as crm:
        assert crm.greeter.hello() == "hello acme"
        assert crm.greeter is crm.greeter and Greeter.built == 1
    with crmkit.connect("memory://") as plain, pytest.raises(AttributeError, match="greeter"):
        plain.greeter  # noqa: B018


def test_every_aggregate_is_an_attribute_of_the_connection() -> None:
    with crmkit.connect("memory://") as crm:  # the example plugin is installed
        assert crm.subscriptions is crm.records(Subscription)
        assert crm.customers is crm.records(Customer)
        with pytest.raises(AttributeError, match="no_such_thing"):
            crm.no_such_thing  # noqa: B018


@pytest.mark.parametrize("name", ["customers", "value", "records", "subscriptions"])
def test_a_service_may_not_shadow_the_connection(name: str) -> None:
    class Shadowing:
        @crmkit.hookimpl
        def crmkit_services(self) -> Mapping[str, Callable[[Any], object]]:
            return {name: Greeter}

    with pytest.raises(PluginError, match=name):
        crmkit.connect("memory://", plugins=[Shadowing()])


def test_two_plugins_may_not_add_one_service_name() -> None:
    class Other:
        @crmkit.hookimpl
        def crmkit_services(self) -> Mapping[str, Callable[[Any], object]]:
            return {"greeter": lambda crm: object()}

    with pytest.raises(PluginError, match="greeter"):
        crmkit.connect("memory://", plugins=[GreeterPlugin(), Other()])
    with pytest.raises(PluginError, match="public attribute"):

        class Bad:
            @crmkit.hookimpl
            def crmkit_services(self) -> Mapping[str, Callable[[Any], object]]:
                return {"_hidden": Greeter}

        crmkit.connect("memory://", plugins=[Bad()])
