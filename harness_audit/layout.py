"""How each event is laid out in GCS (``OUTPUT_FORMAT``): ``api``, as Harness's REST API returned
it (the default, as Google's guide for the ``HARNESS_IO`` feed writes), or ``streaming``,
Harness's audit streaming payload, for a parser that knows only its names. Nothing is lost (a
REST value with no place lands at its REST path in ``unmappedFields``), no null is invented."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable


class OutputFormat(enum.StrEnum):
    """How each event is laid out in the JSONL objects written to GCS."""

    API = "api"  # each event exactly as Harness's audit REST API returned it (the default)
    STREAMING = "streaming"  # Harness's audit streaming layout


def parse_output_format(value: str) -> OutputFormat:
    """A configured ``OUTPUT_FORMAT``, case and surrounding spaces ignored; ValueError naming
    the valid values for anything else, the empty string included."""
    valid = ", ".join(repr(member.value) for member in OutputFormat)
    try:
        return OutputFormat(value.strip().lower())
    except ValueError:
        raise ValueError(f"invalid output format {value!r}: expected one of {valid}") from None


def layout_function(output_format: OutputFormat) -> Callable[[dict], dict]:
    """What lays out one decoded REST event: ``api`` returns the event itself (no copy)."""
    return to_streaming if output_format == OutputFormat.STREAMING else lambda event: event


# One "@", a domain with at least one dot and no empty label, no whitespace anywhere.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def _looks_like_email(identifier: str) -> bool:
    return _EMAIL.fullmatch(identifier) is not None


# REST fields copied as they are to a top-level key of the streaming event, in output order.
_VERBATIM_EXTRAS = ("auditEventData", "environment", "impersonatingAuthenticationInfo")
_VERBATIM_EXTRAS += ("insertId", "internalInfo")
# The REST fields the mapping knows, per object it reads. Anything else goes to unmappedFields.
_EVENT_KEYS = frozenset(("auditId", "authenticationInfo", "module", "resource", "resourceScope"))
_EVENT_KEYS |= {"action", "httpRequestInfo", "requestMetadata", "timestamp", *_VERBATIM_EXTRAS}
_AUTHENTICATION_KEYS = frozenset({"principal", "labels"})
_PRINCIPAL_KEYS = frozenset({"type", "identifier", "email"})
_RESOURCE_KEYS = frozenset({"type", "identifier", "labels"})
_SCOPE_KEYS = frozenset({"accountIdentifier", "orgIdentifier", "projectIdentifier"})
_HTTP_KEYS = frozenset({"requestMethod"})
_METADATA_KEYS = frozenset({"clientIP"})


def _keep(unmapped: dict, path: tuple[str, ...], value: object) -> None:
    """Store ``value`` in ``unmapped`` at its REST ``path``."""
    for part in path[:-1]:
        unmapped = unmapped.setdefault(part, {})
    unmapped[path[-1]] = value


def _part(value: object, path: tuple[str, ...], known: frozenset[str], unmapped: dict) -> dict:
    """``value`` when it is an object, its unknown fields kept in ``unmapped``; {} when it is
    absent; anything else is kept whole in ``unmapped``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _keep(unmapped, path, value)
        return {}
    for key, item in value.items():
        if key not in known and item is not None:
            _keep(unmapped, (*path, key), item)
    return value


def _present(source: dict, names: tuple[str, ...]) -> dict:
    """The fields of ``source`` named, in that order, those with a value."""
    return {name: source[name] for name in names if source.get(name) is not None}


def _author(principal: dict) -> dict:
    """The principal's type, identifier and email; a USER's email-like identifier is its email
    when it has none (the REST principal carries none, as far as public sources show)."""
    author = _present(principal, ("type", "identifier", "email"))
    identifier = author.get("identifier")
    user = author.get("type") == "USER" and type(identifier) is str
    if "email" not in author and user and _looks_like_email(identifier):
        author["email"] = identifier
    return author


def to_streaming(event: dict) -> dict:
    """Map one REST audit event to Harness's streaming layout. Key order: the schema's fields,
    then resourceLabels, principalLabels, the verbatim extras, unmappedFields."""
    get, unmapped = event.get, {}
    authentication = get("authenticationInfo")
    inner = authentication.get("principal") if isinstance(authentication, dict) else None
    principal = _part(inner, ("authenticationInfo", "principal"), _PRINCIPAL_KEYS, unmapped)
    authentication = _part(authentication, ("authenticationInfo",), _AUTHENTICATION_KEYS, unmapped)
    resource = _part(get("resource"), ("resource",), _RESOURCE_KEYS, unmapped)
    scope = _part(get("resourceScope"), ("resourceScope",), _SCOPE_KEYS, unmapped)
    http_request = _part(get("httpRequestInfo"), ("httpRequestInfo",), _HTTP_KEYS, unmapped)
    metadata = _part(get("requestMetadata"), ("requestMetadata",), _METADATA_KEYS, unmapped)

    timestamp, time = get("timestamp"), None
    if type(timestamp) is int or (type(timestamp) is float and timestamp.is_integer()):
        time = str(int(timestamp))
    elif type(timestamp) is str:
        time = timestamp
    elif timestamp is not None:  # a bool, a fraction of a millisecond...: not epoch ms
        _keep(unmapped, ("timestamp",), timestamp)
    author = _author(principal)
    scope = _present(scope, ("accountIdentifier", "orgIdentifier", "projectIdentifier"))
    request = _present(http_request, ("requestMethod",)) | _present(metadata, ("clientIP",))
    fields = {
        "auditEventId": get("auditId"),
        "auditEventAuthor": {"principal": author} if author else None,
        "auditModule": get("module"),
        "auditResource": _present(resource, ("type", "identifier")) or None,
        "auditResourceScope": scope or None,
        "auditAction": get("action"),
        "auditHttpRequestInfo": request or None,
        "auditEventTime": time,
        "resourceLabels": resource.get("labels"),
        "principalLabels": authentication.get("labels"),
        **{key: get(key) for key in _VERBATIM_EXTRAS},
    }
    out = {key: value for key, value in fields.items() if value is not None}
    for key, value in event.items():
        if key not in _EVENT_KEYS and value is not None:
            _keep(unmapped, (key,), value)
    if unmapped:
        out["unmappedFields"] = unmapped
    return out


def encode_line(event: dict) -> bytes:
    """Compact JSON, one line. NaN and Infinity are not JSON: ValueError."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
        return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
