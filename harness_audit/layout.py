"""How each event is laid out in GCS (``OUTPUT_FORMAT``); ``streaming`` is for a parser that
knows only the streaming payload's names. Nothing is lost (a REST value with no place lands at
its REST path in ``unmappedFields``), no null is invented."""

import enum
import json
import re
from collections.abc import Callable


class OutputFormat(enum.StrEnum):
    API = "api"  # as Harness's REST API returned it: the default, as Google's HARNESS_IO guide
    STREAMING = "streaming"  # Harness's audit streaming layout


def layout_function(output_format: OutputFormat) -> Callable[[dict], dict]:
    """What lays out one decoded REST event: ``api`` returns the event itself (no copy)."""
    return to_streaming if output_format == OutputFormat.STREAMING else lambda event: event


# One "@", a domain with at least one dot and no empty label, no whitespace anywhere.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_VERBATIM = ("auditEventData", "environment", "impersonatingAuthenticationInfo", "insertId")
# REST path: streaming path, in the streaming event's key order. The rest goes to unmappedFields.
_PLACES = {
    "auditId": "auditEventId",
    "authenticationInfo.principal.type": "auditEventAuthor.principal.type",
    "authenticationInfo.principal.identifier": "auditEventAuthor.principal.identifier",
    "authenticationInfo.principal.email": "auditEventAuthor.principal.email",
    "module": "auditModule",
    "resource.type": "auditResource.type",
    "resource.identifier": "auditResource.identifier",
    "resourceScope.accountIdentifier": "auditResourceScope.accountIdentifier",
    "resourceScope.orgIdentifier": "auditResourceScope.orgIdentifier",
    "resourceScope.projectIdentifier": "auditResourceScope.projectIdentifier",
    "action": "auditAction",
    "httpRequestInfo.requestMethod": "auditHttpRequestInfo.requestMethod",
    "requestMetadata.clientIP": "auditHttpRequestInfo.clientIP",
    "timestamp": "auditEventTime",
    "resource.labels": "resourceLabels",
    "authenticationInfo.labels": "principalLabels",
    **{name: name for name in (*_VERBATIM, "internalInfo")},  # copied as they are
}
_ROUTES = {tuple(rest.split(".")): place.split(".") for rest, place in _PLACES.items()}
# The REST objects the table reads into (a non-object there is kept whole). Paths are tuples,
# so that a REST key holding a "." is never taken for a path.
_OBJECTS = {rest[:length] for rest in _ROUTES for length in range(1, len(rest))}


def _time(timestamp: object) -> str | None:
    """Epoch milliseconds as a string; None for what is not (a bool, a fraction of a ms...)."""
    if type(timestamp) is int or (type(timestamp) is float and timestamp.is_integer()):
        return str(int(timestamp))
    return timestamp if type(timestamp) is str else None


def _sort(source: dict, path: tuple, placed: dict) -> dict:
    """Put each value of ``source`` (at REST ``path``) the table has a place for in ``placed``;
    return the others, at their REST paths, for unmappedFields."""
    kept = {}
    for key, value in source.items():
        name = (*path, key)
        if name in _OBJECTS and isinstance(value, dict):
            value = _sort(value, name, placed) or None
        elif name in _ROUTES:
            placed[name] = _time(value) if name == ("timestamp",) else value
            if placed[name] is not None:
                continue  # it has its place
        if value is not None:
            kept[key] = value
    return kept


def to_streaming(event: dict) -> dict:
    """Map one REST audit event to Harness's streaming layout, in ``_PLACES``' key order, then
    unmappedFields. A USER's email-like identifier is its email when it has none (the REST
    principal carries none, as far as public sources show)."""
    placed: dict = {}
    unmapped = _sort(event, (), placed)
    out: dict = {}
    for rest, place in _ROUTES.items():
        if placed.get(rest) is not None:
            node = out
            for key in place[:-1]:
                node = node.setdefault(key, {})
            node[place[-1]] = placed[rest]
    principal = out.get("auditEventAuthor", {}).get("principal", {})
    identifier = principal.get("identifier")
    user = principal.get("type") == "USER" and isinstance(identifier, str)
    if user and "email" not in principal and _EMAIL.fullmatch(identifier):
        principal["email"] = identifier
    return out | {"unmappedFields": unmapped} if unmapped else out


def encode_line(event: dict) -> bytes:
    """Compact JSON, one line. NaN and Infinity are not JSON: ValueError."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
        return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
