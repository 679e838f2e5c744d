"""One way to write a moment for people, everywhere they read one: the engine's messages and logs, the CLI's
tables, the HTML report. Machine-read values (tags, JSON, state) keep ISO 8601 with their own code."""
from __future__ import annotations

from datetime import datetime, timezone

DATE_FORMAT = "%Y-%m-%d %H:%M:%SZ"


def when(value: datetime | None) -> str:
    """``value`` in UTC as :data:`DATE_FORMAT`; "-" for no value."""
    return value.astimezone(timezone.utc).strftime(DATE_FORMAT) if value is not None else "-"
