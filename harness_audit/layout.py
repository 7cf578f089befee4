"""The layout of each event written to GCS: ``OUTPUT_FORMAT`` = ``api`` or ``streaming``.

Why two layouts
---------------
Google's guide for the SecOps ``HARNESS_IO`` feed writes the events of Harness's audit REST API
(``POST /audit/api/audits/listV2``) unchanged, so ``api`` is the default: every event is written
exactly as the API returned it. But the change log of the ``HARNESS_IO`` parser (2025-04-16)
names the fields of Harness's own *audit streaming* payload (``auditModule``,
``auditResource.type``, ``auditResourceScope.accountIdentifier``, ``auditAction``,
``auditHttpRequestInfo.requestMethod`` / ``.clientIP``, ...), not the REST names. ``streaming``
writes each event in that layout, so a parser that only knows the streaming names still finds
its fields. Which one a given parser version reads is for the operator to check: both are kept.

The streaming layout, field by field
------------------------------------
Harness's documented streaming payload ("Audit streaming", payload schema) and where each of its
fields comes from in the REST event::

    auditEventId                                  <- auditId
    auditEventAuthor.principal.type               <- authenticationInfo.principal.type
    auditEventAuthor.principal.identifier         <- authenticationInfo.principal.identifier
    auditEventAuthor.principal.email              <- authenticationInfo.principal.email, or
                                                     the identifier (see below)
    auditModule                                   <- module
    auditResource.type                            <- resource.type
    auditResource.identifier                      <- resource.identifier
    auditResourceScope.accountIdentifier          <- resourceScope.accountIdentifier
    auditResourceScope.orgIdentifier              <- resourceScope.orgIdentifier
    auditResourceScope.projectIdentifier          <- resourceScope.projectIdentifier
    auditAction                                   <- action
    auditHttpRequestInfo.requestMethod            <- httpRequestInfo.requestMethod
    auditHttpRequestInfo.clientIP                 <- requestMetadata.clientIP
    auditEventTime                                <- timestamp, as a string of epoch milliseconds

``email``: the REST principal has none (as far as public sources show), so for a principal of
type ``USER`` whose identifier looks like an email address (one ``@``, a dot in the domain, no
spaces) the identifier is copied to ``email``. If the REST principal does carry an ``email``, it
is kept as it is, whatever the principal's type.

The streaming objects hold exactly the schema's fields, nothing else. What the schema has no
place for is kept, not dropped, at the top level after the schema's fields, under these keys
(none of them is part of Harness's streaming schema):

    resourceLabels                   <- resource.labels (e.g. resourceName), copied as is
    principalLabels                  <- authenticationInfo.labels (e.g. username, userId)
    auditEventData                   <- auditEventData (free-form, typed by its ``type``)
    environment                      <- environment {type, identifier}
    impersonatingAuthenticationInfo  <- impersonatingAuthenticationInfo
    insertId                         <- insertId
    internalInfo                     <- internalInfo
    unmappedFields                   <- everything else: see below

Extras that have a REST name of their own keep it; the two ``labels`` objects are renamed
because there are two of them. ``unmappedFields`` is a sparse copy of the REST event, nested like
it, holding every field the mapping does not know: a top-level field added by a later API version
(``{"unmappedFields": {"newField": ...}}``) as well as an unknown field inside an object the
mapping reads (``requestMetadata.userAgent`` becomes
``{"unmappedFields": {"requestMetadata": {"userAgent": ...}}}``; nested rather than under a
dotted key, which parsers would read as a path). A mapped field whose value is not of the
expected kind goes there too, under its REST path: ``resource``, ``resourceScope``,
``authenticationInfo`` (or its ``principal``), ``httpRequestInfo`` or ``requestMetadata`` when it
is not an object, and a ``timestamp`` that is not epoch milliseconds (an integer, or a float with
no fraction; a string is passed through as it is). So nothing of the REST event is lost: each
value lands in the schema, in a named extra or in ``unmappedFields``.

Absent fields: a key is written only when the REST event has a value for it, and an object only
when it has at least one field; no null is invented. A REST field whose value is null counts as
absent (Harness omits null fields anyway); values copied as they are (labels, auditEventData,
...) keep whatever they contain.

``to_streaming`` is pure: it never changes its input. It makes no deep copies either: the values
it copies (labels, auditEventData, ...) are the input's own objects, shared with the output.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable

__all__ = ["OutputFormat", "layout_function", "parse_output_format", "to_streaming"]


class OutputFormat(enum.StrEnum):
    """How each event is laid out in the JSONL objects written to GCS."""

    API = "api"
    """Each event exactly as Harness's audit REST API returned it (the default)."""
    STREAMING = "streaming"
    """Each event in Harness's audit streaming layout (see the module docstring)."""


def parse_output_format(value: str) -> OutputFormat:
    """Parse a configured ``OUTPUT_FORMAT``: case-insensitive, surrounding spaces ignored.

    Raises ``ValueError`` naming the valid values for anything else, the empty string included
    (whether an unset variable means ``api`` is for the configuration to decide).
    """
    valid = ", ".join(repr(member.value) for member in OutputFormat)
    if not isinstance(value, str):
        raise ValueError(f"invalid output format {value!r}: expected one of {valid}")
    try:
        return OutputFormat(value.strip().lower())
    except ValueError:
        raise ValueError(f"invalid output format {value!r}: expected one of {valid}") from None


def _as_received(event: dict) -> dict:
    """The ``api`` layout: the event itself, not a copy."""
    return event


def layout_function(output_format: OutputFormat) -> Callable[[dict], dict]:
    """The function that lays out one decoded REST event for ``output_format``.

    ``api`` returns the event object itself (no copy); ``streaming`` is ``to_streaming``.
    Encoding the result is left to the caller.
    """
    if output_format == OutputFormat.API:
        return _as_received
    if output_format == OutputFormat.STREAMING:
        return to_streaming
    raise ValueError(f"unknown output format: {output_format!r}")


# One "@", a domain with at least one dot and no empty label, no whitespace anywhere.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


# The regex costs about as much as the rest of the mapping, and a collector sees the same few
# users over and over: verdicts are remembered, the least recently used forgotten first.
@functools.lru_cache(maxsize=10_000)
def _looks_like_email(identifier: str) -> bool:
    return _EMAIL.fullmatch(identifier) is not None


# The REST fields the mapping knows, per object it reads. Anything else goes to unmappedFields.
_EVENT_KEYS = frozenset(
    {
        "auditId",
        "authenticationInfo",
        "module",
        "resource",
        "resourceScope",
        "action",
        "httpRequestInfo",
        "requestMetadata",
        "timestamp",
        "auditEventData",
        "environment",
        "impersonatingAuthenticationInfo",
        "insertId",
        "internalInfo",
    }
)
_AUTHENTICATION_KEYS = frozenset({"principal", "labels"})
_PRINCIPAL_KEYS = frozenset({"type", "identifier", "email"})
_RESOURCE_KEYS = frozenset({"type", "identifier", "labels"})
_SCOPE_KEYS = frozenset({"accountIdentifier", "orgIdentifier", "projectIdentifier"})
_HTTP_REQUEST_KEYS = frozenset({"requestMethod"})
_REQUEST_METADATA_KEYS = frozenset({"clientIP"})

# REST fields copied as they are to a top-level key of the streaming event, in output order.
_VERBATIM_EXTRAS = (
    "auditEventData",
    "environment",
    "impersonatingAuthenticationInfo",
    "insertId",
    "internalInfo",
)


def _keep(unmapped: dict | None, path: tuple[str, ...], value: object) -> dict:
    """Store ``value`` in ``unmapped`` (created on first use) at its REST ``path``."""
    if unmapped is None:
        unmapped = {}
    node = unmapped
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return unmapped


def _keep_unknown(
    unmapped: dict | None, source: dict, known: frozenset[str], path: tuple[str, ...]
) -> dict | None:
    """Store every non-null field of ``source`` not in ``known`` in ``unmapped``."""
    for key, value in source.items():
        if key not in known and value is not None:
            unmapped = _keep(unmapped, (*path, key), value)
    return unmapped


def to_streaming(event: dict) -> dict:
    """Map one REST audit event to Harness's streaming layout; see the module docstring.

    Pure: ``event`` is not changed. Key order: the schema's fields (auditEventId,
    auditEventAuthor, auditModule, auditResource, auditResourceScope, auditAction,
    auditHttpRequestInfo, auditEventTime), then resourceLabels, principalLabels, auditEventData,
    environment, impersonatingAuthenticationInfo, insertId, internalInfo, unmappedFields.
    """
    # Written for speed, as it runs once per event: plain local code on the common path, dict
    # displays where the usual fields are all there, and an object is searched for fields the
    # mapping does not know only when it has more keys than the known, non-null fields read
    # from it (``seen``, ``known``). Extras are looked up only when the event has more keys
    # than the mapped fields found.
    get = event.get
    out: dict = {}
    unmapped: dict | None = None
    seen = 0  # known top-level fields that have a value

    value = get("auditId")
    if value is not None:
        seen = 1
        out["auditEventId"] = value

    principal_labels = None
    authentication = get("authenticationInfo")
    if authentication is not None:
        seen += 1
        if isinstance(authentication, dict):
            principal = authentication.get("principal")
            principal_labels = authentication.get("labels")
            if principal is not None:
                if isinstance(principal, dict):
                    principal_type = principal.get("type")
                    identifier = principal.get("identifier")
                    email = principal.get("email")
                    if principal_type is not None and identifier is not None:
                        author = {"type": principal_type, "identifier": identifier}
                    else:
                        author = {}
                        if principal_type is not None:
                            author["type"] = principal_type
                        if identifier is not None:
                            author["identifier"] = identifier
                    known = len(author)
                    if email is not None:
                        known += 1
                        author["email"] = email
                    elif (
                        principal_type == "USER"
                        and type(identifier) is str
                        and _looks_like_email(identifier)
                    ):
                        author["email"] = identifier
                    if author:
                        out["auditEventAuthor"] = {"principal": author}
                    if len(principal) > known:
                        unmapped = _keep_unknown(
                            unmapped,
                            principal,
                            _PRINCIPAL_KEYS,
                            ("authenticationInfo", "principal"),
                        )
                else:
                    unmapped = _keep(unmapped, ("authenticationInfo", "principal"), principal)
            if len(authentication) > (principal is not None) + (principal_labels is not None):
                unmapped = _keep_unknown(
                    unmapped, authentication, _AUTHENTICATION_KEYS, ("authenticationInfo",)
                )
        else:
            unmapped = _keep(unmapped, ("authenticationInfo",), authentication)

    value = get("module")
    if value is not None:
        seen += 1
        out["auditModule"] = value

    resource_labels = None
    resource = get("resource")
    if resource is not None:
        seen += 1
        if isinstance(resource, dict):
            resource_type = resource.get("type")
            identifier = resource.get("identifier")
            resource_labels = resource.get("labels")
            if resource_type is not None and identifier is not None:
                out["auditResource"] = {"type": resource_type, "identifier": identifier}
                known = 2
            elif resource_type is not None:
                out["auditResource"] = {"type": resource_type}
                known = 1
            elif identifier is not None:
                out["auditResource"] = {"identifier": identifier}
                known = 1
            else:
                known = 0
            if resource_labels is not None:
                known += 1
            if len(resource) > known:
                unmapped = _keep_unknown(unmapped, resource, _RESOURCE_KEYS, ("resource",))
        else:
            unmapped = _keep(unmapped, ("resource",), resource)

    scope = get("resourceScope")
    if scope is not None:
        seen += 1
        if isinstance(scope, dict):
            account = scope.get("accountIdentifier")
            org = scope.get("orgIdentifier")
            project = scope.get("projectIdentifier")
            if account is not None and org is not None and project is not None:
                mapped = {
                    "accountIdentifier": account,
                    "orgIdentifier": org,
                    "projectIdentifier": project,
                }
            else:
                mapped = {}
                if account is not None:
                    mapped["accountIdentifier"] = account
                if org is not None:
                    mapped["orgIdentifier"] = org
                if project is not None:
                    mapped["projectIdentifier"] = project
            if mapped:
                out["auditResourceScope"] = mapped
            if len(scope) > len(mapped):
                unmapped = _keep_unknown(unmapped, scope, _SCOPE_KEYS, ("resourceScope",))
        else:
            unmapped = _keep(unmapped, ("resourceScope",), scope)

    value = get("action")
    if value is not None:
        seen += 1
        out["auditAction"] = value

    method = client_ip = None
    http_request = get("httpRequestInfo")
    if http_request is not None:
        seen += 1
        if isinstance(http_request, dict):
            method = http_request.get("requestMethod")
            if len(http_request) > (method is not None):
                unmapped = _keep_unknown(
                    unmapped, http_request, _HTTP_REQUEST_KEYS, ("httpRequestInfo",)
                )
        else:
            unmapped = _keep(unmapped, ("httpRequestInfo",), http_request)
    metadata = get("requestMetadata")
    if metadata is not None:
        seen += 1
        if isinstance(metadata, dict):
            client_ip = metadata.get("clientIP")
            if len(metadata) > (client_ip is not None):
                unmapped = _keep_unknown(
                    unmapped, metadata, _REQUEST_METADATA_KEYS, ("requestMetadata",)
                )
        else:
            unmapped = _keep(unmapped, ("requestMetadata",), metadata)
    if method is not None:
        if client_ip is not None:
            out["auditHttpRequestInfo"] = {"requestMethod": method, "clientIP": client_ip}
        else:
            out["auditHttpRequestInfo"] = {"requestMethod": method}
    elif client_ip is not None:
        out["auditHttpRequestInfo"] = {"clientIP": client_ip}

    timestamp = get("timestamp")
    if timestamp is not None:
        seen += 1
        if type(timestamp) is int:
            out["auditEventTime"] = str(timestamp)
        elif type(timestamp) is str:
            out["auditEventTime"] = timestamp
        elif type(timestamp) is float and timestamp.is_integer():
            out["auditEventTime"] = str(int(timestamp))
        else:  # a bool, a fraction of a millisecond, an object...: not epoch milliseconds
            unmapped = _keep(unmapped, ("timestamp",), timestamp)

    if resource_labels is not None:
        out["resourceLabels"] = resource_labels
    if principal_labels is not None:
        out["principalLabels"] = principal_labels
    if len(event) > seen:
        for key in _VERBATIM_EXTRAS:
            value = get(key)
            if value is not None:
                seen += 1
                out[key] = value
        if len(event) > seen:
            unmapped = _keep_unknown(unmapped, event, _EVENT_KEYS, ())
    if unmapped is not None:
        out["unmappedFields"] = unmapped
    return out


def encode_line(event: dict) -> bytes:
    """Compact JSON, one line. NaN and Infinity are not JSON: ValueError."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
        return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
