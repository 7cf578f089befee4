"""Structured logs: one JSON object per line on stdout, the shape Cloud Logging parses.

Each line carries ``severity`` and ``message`` plus the call's fields. Callers pass the
``logging`` module's levels (``logging.INFO``...); levels in between map to the standard
level below them.

Registered secrets are replaced by ``[REDACTED]`` before a line is written, as a last
guard: the code never logs the key. They are replaced in every form a line can carry
them in: as stored, JSON-escaped (a Harness error body logged as a field is JSON text),
with ``\\uXXXX`` escapes, with ``\\/``, URL-encoded (a request URL in an error), and
JSON-escaped twice (a JSON body inside a JSON string).

A line is at most MAX_LINE_BYTES. Cloud Logging refuses entries over 256 KB, and a
multi-megabyte Harness error message copied into one line would cost more than it tells;
the longest strings are cut, and the line says so with ``"truncated": true``.
Redaction runs on each whole string before any cut, so a cut can never leave a secret's
first characters behind un-redacted.
"""

import json
import logging
import math
import re
import sys
import threading
from urllib.parse import quote, quote_plus

LOGGER_NAME = "harness_audit"
REDACTED = "[REDACTED]"
# Including the newline. Cloud Logging's limit is 256 KB per entry; a quarter of it keeps
# a run's logs cheap and leaves room for the fields the agent adds.
MAX_LINE_BYTES = 65_536
# Cloud Logging severities for the logging module's levels, highest first.
_SEVERITIES = (
    (logging.CRITICAL, "CRITICAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARNING"),
    (logging.INFO, "INFO"),
    (logging.DEBUG, "DEBUG"),
)
# The entry's own keys: a caller's field of the same name is renamed, not allowed to
# replace the severity or the message.
_RESERVED = ("severity", "message")
# Upper bound of len('… [truncated 9999999999 bytes]'.encode()); the suffix needs no escaping.
_SUFFIX_BYTES = 32
# A cut string keeps at least this much serialized text besides the suffix; below it the
# line drops its fields instead (see _minimal_line).
_MIN_KEPT_BYTES = 16
_MIN_LEAF_BYTES = 2 + _SUFFIX_BYTES + _MIN_KEPT_BYTES
# %XX and \uXXXX escapes: other encoders write their hex digits in the other case.
_HEX_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}")


def severity_name(level: int) -> str:
    """Cloud Logging's severity for a ``logging`` level: the standard level at or below it."""
    for threshold, name in _SEVERITIES:
        if level >= threshold:
            return name
    return "DEFAULT"


def secret_forms(value: str) -> tuple[str, ...]:
    """Every spelling of ``value`` a log line can hold, longest first."""
    if not value:
        return ()
    bases = {
        value,
        repr(value)[1:-1],
        # requests and urllib3 leave '/' alone by default; form encoding uses '+'.
        quote(value, safe="/"),
        quote(value, safe=""),
        quote_plus(value, safe="/"),
        quote_plus(value),
    }
    forms = set()
    for base in bases:
        forms.add(base)
        for ensure_ascii in (False, True):
            escaped = json.dumps(base, ensure_ascii=ensure_ascii)[1:-1]
            twice = json.dumps(escaped, ensure_ascii=ensure_ascii)[1:-1]
            # Some JSON encoders (Jackson with an option, PHP) also escape '/'.
            forms.update((escaped, twice, escaped.replace("/", "\\/")))
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


def _form_pattern(form: str) -> str:
    pieces, last = [], 0
    for match in _HEX_ESCAPE.finditer(form):
        pieces.append(re.escape(form[last : match.start()]))
        pieces.append(
            "".join(
                f"[{c.lower()}{c.upper()}]" if c in "abcdefABCDEF" else re.escape(c)
                for c in match[0]
            )
        )
        last = match.end()
    pieces.append(re.escape(form[last:]))
    return "".join(pieces)


class Redactor:
    """Replaces registered secrets, in all their forms, by ``[REDACTED]``.

    The forms are computed once, at registration; ``redact`` uses one compiled pattern,
    swapped whole, so it needs no lock.
    """

    def __init__(self):
        self._forms: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern | None = None

    def add(self, value: str) -> None:
        forms = secret_forms(value)
        if not forms:
            return
        with self._lock:
            self._forms.update(forms)
            # Longest first: at a given position the whole escaped form wins over a shorter
            # form that is its beginning.
            ordered = sorted(self._forms, key=lambda form: (-len(form), form))
            self._pattern = re.compile("|".join(map(_form_pattern, ordered)))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)


_REDACTOR = Redactor()


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line, whoever logs it."""
    _REDACTOR.add(value)


def clean(value, redact=None):
    """A JSON-ready copy of ``value``: strings redacted, anything else made text first.

    Redacting each string (rather than the serialized line) cannot break the line's JSON,
    and it happens before fit_line cuts anything. ``redact`` defaults to the registered
    secrets'.
    """
    redact = redact or _REDACTOR.redact
    if isinstance(value, str):
        text = redact(value)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # Lone surrogates (bytes that were not UTF-8) would make the write fail.
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        # NaN and Infinity are not JSON; Cloud Logging would keep the line as plain text.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {clean(str(key), redact): clean(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(item, redact) for item in value]
    return clean(str(value), redact)


def _dumps(entry: dict) -> str:
    return json.dumps(entry, ensure_ascii=False)


def _json_bytes(text: str) -> int:
    """Bytes ``text`` takes in the line, quotes included."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def fit_line(entry: dict, limit: int = MAX_LINE_BYTES - 1) -> str:
    """``entry`` as one JSON line of at most ``limit`` bytes of UTF-8.

    Over the limit, string values are cut to a common length, largest first: when one
    field (usually the message) is the culprit only that field is cut, and each keeps its
    beginning. ``entry`` must come from clean(); it is changed in place.
    """
    line = _dumps(entry)
    if len(line.encode("utf-8")) <= limit:
        return line
    entry["truncated"] = True
    leaves = [
        (parent, key)
        for parent, key in _string_leaves(entry)
        if not (parent is entry and key == "severity")
    ]
    sizes = [_json_bytes(parent[key]) for parent, key in leaves]
    fixed = len(_dumps(entry).encode("utf-8")) - sum(sizes)
    cap = _water_level(sizes, limit - fixed)
    if cap is not None and cap >= _MIN_LEAF_BYTES:
        for (parent, key), size in zip(leaves, sizes, strict=True):
            if size > cap:
                parent[key] = _cut(parent[key], cap)
        line = _dumps(entry)
        if len(line.encode("utf-8")) <= limit:
            return line
    return _minimal_line(entry, limit)


def _string_leaves(node):
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, str):
            yield node, key
        elif isinstance(value, dict | list):
            yield from _string_leaves(value)


def _water_level(sizes: list[int], room: int) -> int | None:
    """The largest cap with sum(min(size, cap)) <= room, or None when even 0 is too much."""
    if room < 0:
        return None
    low, high = 0, max(sizes, default=0)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(size, middle) for size in sizes) <= room:
            low = middle
        else:
            high = middle - 1
    return low


def _cut(text: str, max_bytes: int) -> str:
    """The longest beginning of ``text`` that, with the suffix saying how much was cut,
    takes at most ``max_bytes`` in the line."""
    budget = max_bytes - 2 - _SUFFIX_BYTES
    # Each character takes at least one byte, so the answer is at most ``budget`` long.
    low, high = 0, min(len(text), max(budget, 0))
    while low < high:
        middle = (low + high + 1) // 2
        if _json_bytes(text[:middle]) - 2 <= budget:
            low = middle
        else:
            high = middle - 1
    removed = len(text[low:].encode("utf-8"))
    return f"{text[:low]}… [truncated {removed} bytes]"


def _minimal_line(entry: dict, limit: int) -> str:
    """Severity and the message's beginning, for entries whose other fields cannot fit
    even cut short (thousands of fields, huge keys or numbers)."""
    dropped = [key for key in entry if key not in ("severity", "message", "truncated")]
    minimal = {"severity": entry["severity"], "message": "", "truncated": True}
    minimal["dropped_fields"] = len(dropped)
    room = limit - len(_dumps(minimal).encode("utf-8")) + _json_bytes("")
    message = entry["message"]
    minimal["message"] = message if _json_bytes(message) <= room else _cut(message, room)
    return _dumps(minimal)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": severity_name(record.levelno), "message": record.getMessage()}
        for key, value in getattr(record, "fields", {}).items():
            entry[f"{key}_field" if key in _RESERVED else key] = value
        if record.name != LOGGER_NAME:
            entry["logger"] = record.name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Redact first, then fit: see the module docstring.
        return fit_line(clean(entry))


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


def log(severity: int, message: str, /, **fields) -> None:
    """Log ``message`` at ``severity`` (``logging.INFO``...) with ``fields`` in the line.

    Positional-only, so that a field may be called ``severity`` or ``message`` too.
    """
    logging.getLogger(LOGGER_NAME).log(severity, message, extra={"fields": fields})
