"""The whole conformance suite, for ``pytest --pyargs crmkit.testing.conformance --crmkit-url=URL``."""

from crmkit.testing.conformance import *  # noqa: F403
