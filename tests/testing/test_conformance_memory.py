"""The conformance suite against memory://, taken the way a backend plugin takes it: star import."""

from crmkit.testing.conformance import *  # noqa: F403
