"""One JSON object a line on stdout, with ``severity`` and ``message``, as Cloud Logging reads
it. Registered secrets become [REDACTED] (as they stand and JSON-escaped) before strings are
cut at MAX_FIELD_CHARS; a line still over MAX_LINE_BYTES keeps its severity and message."""

import json
import logging
import math
import sys

LOGGER_NAME = "harness_audit"
REDACTED = "[REDACTED]"
# Cloud Logging refuses entries over 256 KB; a quarter of that keeps logs cheap.
MAX_LINE_BYTES = 65_536
# ASCII JSON spends at most 12 bytes a character, so a message this long always fits.
MAX_FIELD_CHARS = 4_096
_secrets: set[str] = set()


def severity_name(level: int) -> str:
    """Cloud Logging's severity for a ``logging`` level: the standard level at or below it."""
    names = ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG"))
    return next((name for floor, name in names if level >= floor), "DEFAULT")


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line, whoever logs it."""
    _secrets.update({value, json.dumps(value)[1:-1]} - {""})


def clean(value, cuts: list | None = None):
    """A JSON-ready copy of ``value``: strings redacted, then cut (noted in ``cuts``)."""
    if isinstance(value, dict):
        return {clean(str(key), cuts): clean(item, cuts) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(item, cuts) for item in value]
    finite = isinstance(value, float) and math.isfinite(value)  # NaN and Infinity become text
    if value is None or isinstance(value, int) or finite:  # bool is an int
        return value
    value = str(value)
    for secret in sorted(_secrets, key=len, reverse=True):  # the escaped form first
        value = value.replace(secret, REDACTED)
    if (over := len(value) - MAX_FIELD_CHARS) <= 0:
        return value
    (cuts if cuts is not None else []).append(over)
    return f"{value[:MAX_FIELD_CHARS]}… [truncated {over} chars]"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        """One ASCII JSON line under MAX_LINE_BYTES, severity and message first."""
        entry = {"severity": severity_name(record.levelno), "message": record.getMessage()}
        for key, value in getattr(record, "fields", {}).items():
            entry[f"{key}_field" if key in ("severity", "message") else key] = value
        entry |= {"logger": record.name} if record.name != LOGGER_NAME else {}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        cuts: list[int] = []
        entry = clean(entry, cuts) | ({"truncated": True} if cuts else {})
        if len(line := json.dumps(entry)) < MAX_LINE_BYTES:
            return line
        kept = {"severity": entry["severity"], "message": entry["message"], "truncated": True}
        return json.dumps(kept | {"dropped_fields": len(entry) - 2 - ("truncated" in entry)})


class _StdoutHandler(logging.StreamHandler):  # whatever sys.stdout is now: pytest swaps it
    stream = property(lambda self: sys.stdout, lambda self, _value: None)


def configure_logging() -> None:
    """This package's logs, and urllib3's errors (not its retry warnings), as JSON on stdout."""
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter())
    for name, level in ((LOGGER_NAME, logging.INFO), ("urllib3", logging.ERROR)):
        target = logging.getLogger(name)
        # Replaced, not added: main.py is loaded again by each test's function instance.
        target.handlers, target.propagate = [handler], False
        target.setLevel(level)


def log(severity: int, message: str, /, **fields) -> None:
    """Log ``message`` with ``fields`` (positional-only: a field may be called ``message``)."""
    logging.getLogger(LOGGER_NAME).log(severity, message, extra={"fields": fields})
