"""The conformance suite against memory://, taken the way a backend plugin takes it: star import.

The example plugin's ``Subscription`` runs the generic contract next to the probe (listed
here for a checkout where the example is not installed; installed, its entry point declares it).
"""

from crmkit_subscriptions import Subscription

from crmkit.testing.conformance import *  # noqa: F403

CRMKIT_AGGREGATES = (Subscription,)
