"""The services of a connection, each in its own module.

* ``records``: what every aggregate's service does (``Records`` for declared aggregates);
* ``unit_of_work``: transactions, events before and after commit, the actor;
* ``references``: reference checks on write and ``on_delete`` policies;
* ``customers``, ``activity`` (interactions, transactions), ``graph`` (relationships):
  crmkit's own aggregates;
* ``timeline``: a customer's history in time order.

``crmkit.crm.CRM`` wires them together for one tenant of one store.
"""

from crmkit.services.records import BulkResult, Page, Records
from crmkit.services.timeline import TimelineEntry

__all__ = ["BulkResult", "Page", "Records", "TimelineEntry"]
