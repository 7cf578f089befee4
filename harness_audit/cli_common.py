"""What the operator commands share, apart from ``cli``, which imports them."""

from datetime import UTC, datetime

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class UsageError(Exception):
    """A bad command line: exit 2 with this message."""


def parse_time(text: str, name: str) -> int:
    """Epoch milliseconds of an ISO 8601 time, UTC unless it names an offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{name} {text!r} is not an ISO 8601 time: write it like 2026-11-01T00:00:00Z, "
            "2026-11-01T00:00Z or 2026-11-01 (UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)
