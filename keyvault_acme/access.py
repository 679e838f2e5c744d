"""Azure role assignments take minutes to take effect: a 403 just after one is a wait, not a failure.

Azure documents that a new role assignment can take up to 10 minutes to reach Key Vault and ARM. A first
deployment creates the vault's grants and then issues at once, so its first Key Vault call can be refused
though nothing is wrong. Whoever made the grants knows when (the component passes the assignments'
``createdOn``); within the window a 403 is retried, after it the 403 is the answer. Without that time a
403 is never waited for: a missing role must not cost ten minutes to find out.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Optional

from .errors import DnsForbidden, KeyVaultForbidden
from .retry import Backoff

RBAC_PROPAGATION = timedelta(minutes=10)
ACCESS_BACKOFF = Backoff(initial=2.0, factor=1.5, cap=30.0)  # typical propagation is one to two minutes
ACCESS_ERRORS = (KeyVaultForbidden, DnsForbidden)


def settles_at(granted_at: datetime) -> datetime:
    """When role assignments made at ``granted_at`` have surely taken effect."""
    return granted_at + RBAC_PROPAGATION


def may_still_settle(error: BaseException, granted_at: Optional[datetime], now: datetime) -> bool:
    """Whether ``error`` may be a role assignment made at ``granted_at`` not having taken effect yet."""
    return isinstance(error, ACCESS_ERRORS) and granted_at is not None and now < settles_at(granted_at)


def azure_time(value: Any) -> Optional[datetime]:
    """A time as Azure writes them (ISO 8601 with a UTC offset or ``Z``, up to seven fractional digits, e.g. a
    role assignment's ``createdOn``); None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
