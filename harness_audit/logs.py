"""Structured logs: one JSON object per line on stdout, the shape Cloud Logging parses.

Each line carries ``severity`` and ``message`` plus the call's fields. Registered secrets
are replaced before a line is written, as a last guard: the code never logs the key.
"""

import json
import logging
import sys
import threading

LOGGER_NAME = "harness_audit"
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line, whoever logs it."""
    if value:
        with _secrets_lock:
            _secrets.add(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.name != LOGGER_NAME:
            entry["logger"] = record.name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, ensure_ascii=False, default=str)
        for secret in _secrets:
            line = line.replace(secret, "[REDACTED]")
        return line


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (pytest and runtimes swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def configure_logging() -> logging.Logger:
    """Send this package's logs (and urllib3's errors) to stdout as JSON. Idempotent.

    urllib3's own retry warnings are left out: the client logs each retry with its cause.
    """
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


def log(severity: int, message: str, **fields) -> None:
    logging.getLogger(LOGGER_NAME).log(severity, message, extra={"fields": fields})
