"""Service: cases, business calendars, SLA clocks that pause, assignment, hand-over and escalation."""

from crmkit.service.calendar import BusinessCalendar, Holiday

__all__ = ["BusinessCalendar", "Holiday"]
