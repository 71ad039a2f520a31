"""crmkit: a CRM domain library with plugin storage backends."""

from crmkit._errors import (
    BackendError,
    ConflictError,
    CRMError,
    NotFound,
    PluginError,
    TransitionVetoed,
    ValidationError,
)

__all__ = [
    "BackendError",
    "CRMError",
    "ConflictError",
    "NotFound",
    "PluginError",
    "TransitionVetoed",
    "ValidationError",
]
