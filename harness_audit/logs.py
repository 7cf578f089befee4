"""Structured logs: one JSON object per line on stdout, with ``severity`` and ``message``,
the shape Cloud Logging parses.

Two rules keep a line safe. The registered key is replaced by ``[REDACTED]`` in every
string, as it stands and as JSON escapes it (config limits the key to printable ASCII, so
those are its only spellings in a Harness body). Every string is cut at MAX_FIELD_CHARS,
and a line still over MAX_LINE_BYTES keeps only its severity and message: a rule, not a
search, and redaction comes before any cut.
"""

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
_SEVERITIES = ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG"))
_RESERVED = ("severity", "message")
_secrets: set[str] = set()


def severity_name(level: int) -> str:
    """Cloud Logging's severity for a ``logging`` level: the standard level at or below it."""
    return next((name for floor, name in _SEVERITIES if level >= floor), "DEFAULT")


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line, whoever logs it."""
    if value:
        _secrets.update((value, json.dumps(value)[1:-1]))


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def clean(value, cuts: list | None = None):
    """A JSON-ready copy of ``value``: strings redacted, then cut at MAX_FIELD_CHARS (noted
    in ``cuts``); anything else made text first."""
    if isinstance(value, str):
        text = redact(value)
        if len(text) <= MAX_FIELD_CHARS:
            return text
        if cuts is not None:
            cuts.append(len(text) - MAX_FIELD_CHARS)
        return f"{text[:MAX_FIELD_CHARS]}… [truncated {len(text) - MAX_FIELD_CHARS} chars]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):  # NaN and Infinity are not JSON
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {clean(str(key), cuts): clean(item, cuts) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(item, cuts) for item in value]
    return clean(str(value), cuts)


def fit_line(entry: dict) -> str:
    """``entry`` (severity and message first) as one ASCII JSON line under MAX_LINE_BYTES."""
    cuts: list[int] = []
    entry = clean(entry, cuts)
    if cuts:
        entry["truncated"] = True
    line = json.dumps(entry)
    if len(line) < MAX_LINE_BYTES:
        return line
    kept = {"severity": entry["severity"], "message": entry["message"], "truncated": True}
    return json.dumps({**kept, "dropped_fields": len(entry) - 2 - ("truncated" in entry)})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": severity_name(record.levelno), "message": record.getMessage()}
        for key, value in getattr(record, "fields", {}).items():
            entry[f"{key}_field" if key in _RESERVED else key] = value
        if record.name != LOGGER_NAME:
            entry["logger"] = record.name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return fit_line(entry)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (pytest and runtimes swap it)."""

    stream = property(lambda self: sys.stdout, lambda self, _value: None)


def configure_logging() -> logging.Logger:
    """This package's logs (and urllib3's errors, not its retry warnings) as JSON on stdout.
    Idempotent."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        for name, level in ((LOGGER_NAME, logging.INFO), ("urllib3", logging.ERROR)):
            target = logging.getLogger(name)
            target.addHandler(handler)
            target.setLevel(level)
            target.propagate = False
    return logger


def log(severity: int, message: str, /, **fields) -> None:
    """Log ``message`` at ``severity`` with ``fields``; positional-only so a field may be
    called ``severity`` or ``message`` too."""
    logging.getLogger(LOGGER_NAME).log(severity, message, extra={"fields": fields})
