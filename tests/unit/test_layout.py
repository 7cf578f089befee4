"""Tests of harness_audit.layout: OUTPUT_FORMAT and the REST -> streaming mapping."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from devtools import sample_events
from harness_audit import layout
from harness_audit.layout import OutputFormat, layout_function, to_streaming

# The nine invented sample events of the project's shared notes
# (shared/harness-sample-responses.json, "events"), copied unchanged. Fictitious ids, emails and
# The nine invented sample events (fictitious ids, emails and IPs; not real Harness output).
SAMPLE_EVENTS = sample_events.SAMPLE_EVENTS


# An event with every field the mapping knows, each with a value.
FULL_EVENT: dict = {
    "auditId": "65a1b2c3d4e5f60718293a4b",
    "insertId": "f3b6c1d2-0a9e-4c55-8b7d-2e1f0a3c4b5d",
    "resourceScope": {
        "accountIdentifier": "acc123",
        "orgIdentifier": "org_a",
        "projectIdentifier": "proj_b",
    },
    "httpRequestInfo": {"requestMethod": "DELETE"},
    "requestMetadata": {"clientIP": "192.0.2.10"},
    "timestamp": 1700000000123,
    "authenticationInfo": {
        "principal": {"type": "USER", "identifier": "ann@example.org"},
        "labels": {"username": "Ann", "userId": "u1"},
    },
    "impersonatingAuthenticationInfo": {
        "principal": {"type": "USER", "identifier": "root@example.org"},
        "labels": {"username": "Root"},
    },
    "module": "CORE",
    "environment": {"type": "PreProduction", "identifier": "qa"},
    "resource": {
        "type": "SECRET",
        "identifier": "db_password",
        "labels": {"resourceName": "DB password"},
    },
    "action": "DELETE",
    "auditEventData": {"type": "SecretAuditEventData", "rotated": False, "versions": [1, 2]},
    "internalInfo": {"orphaned": "false"},
}

FULL_STREAMING: dict = {
    "auditEventId": "65a1b2c3d4e5f60718293a4b",
    "auditEventAuthor": {
        "principal": {
            "type": "USER",
            "identifier": "ann@example.org",
            "email": "ann@example.org",
        }
    },
    "auditModule": "CORE",
    "auditResource": {"type": "SECRET", "identifier": "db_password"},
    "auditResourceScope": {
        "accountIdentifier": "acc123",
        "orgIdentifier": "org_a",
        "projectIdentifier": "proj_b",
    },
    "auditAction": "DELETE",
    "auditHttpRequestInfo": {"requestMethod": "DELETE", "clientIP": "192.0.2.10"},
    "auditEventTime": "1700000000123",
    "resourceLabels": {"resourceName": "DB password"},
    "principalLabels": {"username": "Ann", "userId": "u1"},
    "auditEventData": {"type": "SecretAuditEventData", "rotated": False, "versions": [1, 2]},
    "environment": {"type": "PreProduction", "identifier": "qa"},
    "impersonatingAuthenticationInfo": {
        "principal": {"type": "USER", "identifier": "root@example.org"},
        "labels": {"username": "Root"},
    },
    "insertId": "f3b6c1d2-0a9e-4c55-8b7d-2e1f0a3c4b5d",
    "internalInfo": {"orphaned": "false"},
}

# Where each REST field lands in the streaming event, written independently of the code under
# test: the longest matching REST path prefix wins; a path with no entry lands under
# unmappedFields at the same path.
PLACES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("auditId",): ("auditEventId",),
    ("authenticationInfo", "principal", "type"): ("auditEventAuthor", "principal", "type"),
    ("authenticationInfo", "principal", "identifier"): (
        "auditEventAuthor",
        "principal",
        "identifier",
    ),
    ("authenticationInfo", "principal", "email"): ("auditEventAuthor", "principal", "email"),
    ("authenticationInfo", "labels"): ("principalLabels",),
    ("module",): ("auditModule",),
    ("resource", "type"): ("auditResource", "type"),
    ("resource", "identifier"): ("auditResource", "identifier"),
    ("resource", "labels"): ("resourceLabels",),
    ("resourceScope", "accountIdentifier"): ("auditResourceScope", "accountIdentifier"),
    ("resourceScope", "orgIdentifier"): ("auditResourceScope", "orgIdentifier"),
    ("resourceScope", "projectIdentifier"): ("auditResourceScope", "projectIdentifier"),
    ("action",): ("auditAction",),
    ("httpRequestInfo", "requestMethod"): ("auditHttpRequestInfo", "requestMethod"),
    ("requestMetadata", "clientIP"): ("auditHttpRequestInfo", "clientIP"),
    ("timestamp",): ("auditEventTime",),
    ("auditEventData",): ("auditEventData",),
    ("environment",): ("environment",),
    ("impersonatingAuthenticationInfo",): ("impersonatingAuthenticationInfo",),
    ("insertId",): ("insertId",),
    ("internalInfo",): ("internalInfo",),
}


def _leaves(value: object, path: tuple = ()) -> list[tuple[tuple, object]]:
    """(path, value) of every leaf: scalars, and empty objects or arrays."""
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list) and value:
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, (*path, index))]
    return [(path, value)]


def _leaf_multiset(value: object) -> Counter:
    # Typed, so that True and 1, or 1 and "1", are different leaves.
    return Counter((type(leaf).__name__, json.dumps(leaf)) for _, leaf in _leaves(value))


def _rest_leaf_multiset(event: dict) -> Counter:
    """The leaves of a REST event as the streaming layout writes them (auditEventTime: str)."""
    event = dict(event)
    if type(event.get("timestamp")) is int:
        event["timestamp"] = str(event["timestamp"])
    return _leaf_multiset(event)


def _streaming_path(rest_path: tuple) -> tuple:
    for length in range(len(rest_path), 0, -1):
        place = PLACES.get(rest_path[:length])
        if place is not None:
            return place + rest_path[length:]
    return ("unmappedFields", *rest_path)


def _at(value: object, path: tuple) -> object:
    for part in path:
        value = value[part]
    return value


def _has_null(value: object) -> bool:
    return any(leaf is None for _, leaf in _leaves(value))


def _map(event: dict) -> dict:
    """to_streaming, checking on the way that the input is unchanged and no null is invented."""
    before = copy.deepcopy(event)
    out = to_streaming(event)
    assert event == before, "to_streaming changed its input"
    assert out is not event
    if not _has_null(event):
        assert not _has_null(out), "to_streaming invented a null"
    return out


def _with(event: dict, path: tuple, value: object) -> dict:
    """A deep copy of ``event`` with ``value`` set at ``path`` (objects created as needed)."""
    event = copy.deepcopy(event)
    node = event
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return event


# --- every field, alone: REST field -> its streaming place ---------------------------------

FIELD_TABLE = [
    pytest.param({"auditId": "a1"}, {"auditEventId": "a1"}, id="auditId"),
    pytest.param(
        {"authenticationInfo": {"principal": {"type": "SYSTEM"}}},
        {"auditEventAuthor": {"principal": {"type": "SYSTEM"}}},
        id="authenticationInfo.principal.type",
    ),
    pytest.param(
        {"authenticationInfo": {"principal": {"identifier": "ann@example.org"}}},
        {"auditEventAuthor": {"principal": {"identifier": "ann@example.org"}}},
        id="authenticationInfo.principal.identifier",
    ),
    pytest.param(
        {"authenticationInfo": {"principal": {"email": "ann@example.org"}}},
        {"auditEventAuthor": {"principal": {"email": "ann@example.org"}}},
        id="authenticationInfo.principal.email",
    ),
    pytest.param(
        {"authenticationInfo": {"labels": {"username": "Ann", "userId": "u1"}}},
        {"principalLabels": {"username": "Ann", "userId": "u1"}},
        id="authenticationInfo.labels",
    ),
    pytest.param({"module": "CD"}, {"auditModule": "CD"}, id="module"),
    pytest.param(
        {"resource": {"type": "PIPELINE"}},
        {"auditResource": {"type": "PIPELINE"}},
        id="resource.type",
    ),
    pytest.param(
        {"resource": {"identifier": "deploy"}},
        {"auditResource": {"identifier": "deploy"}},
        id="resource.identifier",
    ),
    pytest.param(
        {"resource": {"labels": {"resourceName": "Deploy"}}},
        {"resourceLabels": {"resourceName": "Deploy"}},
        id="resource.labels",
    ),
    pytest.param(
        {"resourceScope": {"accountIdentifier": "acc"}},
        {"auditResourceScope": {"accountIdentifier": "acc"}},
        id="resourceScope.accountIdentifier",
    ),
    pytest.param(
        {"resourceScope": {"orgIdentifier": "org"}},
        {"auditResourceScope": {"orgIdentifier": "org"}},
        id="resourceScope.orgIdentifier",
    ),
    pytest.param(
        {"resourceScope": {"projectIdentifier": "proj"}},
        {"auditResourceScope": {"projectIdentifier": "proj"}},
        id="resourceScope.projectIdentifier",
    ),
    pytest.param({"action": "UPSERT"}, {"auditAction": "UPSERT"}, id="action"),
    pytest.param(
        {"httpRequestInfo": {"requestMethod": "PUT"}},
        {"auditHttpRequestInfo": {"requestMethod": "PUT"}},
        id="httpRequestInfo.requestMethod",
    ),
    pytest.param(
        {"requestMetadata": {"clientIP": "2001:db8::7"}},
        {"auditHttpRequestInfo": {"clientIP": "2001:db8::7"}},
        id="requestMetadata.clientIP",
    ),
    pytest.param(
        {"httpRequestInfo": {"requestMethod": "GET"}, "requestMetadata": {"clientIP": "192.0.2.1"}},
        {"auditHttpRequestInfo": {"requestMethod": "GET", "clientIP": "192.0.2.1"}},
        id="httpRequestInfo+requestMetadata",
    ),
    pytest.param({"timestamp": 1749564201512}, {"auditEventTime": "1749564201512"}, id="timestamp"),
    pytest.param(
        {"auditEventData": {"type": "X", "n": [1, {"a": None}]}},
        {"auditEventData": {"type": "X", "n": [1, {"a": None}]}},
        id="auditEventData",
    ),
    pytest.param(
        {"environment": {"type": "Production", "identifier": "prod"}},
        {"environment": {"type": "Production", "identifier": "prod"}},
        id="environment",
    ),
    pytest.param(
        {"impersonatingAuthenticationInfo": {"principal": {"type": "USER", "identifier": "x"}}},
        {"impersonatingAuthenticationInfo": {"principal": {"type": "USER", "identifier": "x"}}},
        id="impersonatingAuthenticationInfo",
    ),
    pytest.param({"insertId": "i-1"}, {"insertId": "i-1"}, id="insertId"),
    pytest.param({"internalInfo": {"k": "v"}}, {"internalInfo": {"k": "v"}}, id="internalInfo"),
]


@pytest.mark.parametrize(("rest", "expected"), FIELD_TABLE)
def test_each_field_lands_in_its_streaming_place(rest: dict, expected: dict) -> None:
    assert _map(rest) == expected


def test_the_field_table_covers_every_known_rest_field() -> None:
    rest_paths = {path for param in FIELD_TABLE for path, _ in _leaves(param.values[0])}
    prefixes = {path[:length] for path in rest_paths for length in range(1, len(path) + 1)}
    assert set(PLACES) <= prefixes
    # ...and every field the module knows has a place in this file's table, and no other.
    assert {tuple(path.split(".")) for path in layout._PLACES} == set(PLACES)


def test_every_field_together_in_order() -> None:
    out = _map(FULL_EVENT)
    assert out == FULL_STREAMING
    assert list(out) == list(FULL_STREAMING)
    assert list(out["auditEventAuthor"]["principal"]) == ["type", "identifier", "email"]
    assert list(out["auditResourceScope"]) == [
        "accountIdentifier",
        "orgIdentifier",
        "projectIdentifier",
    ]
    assert list(out["auditHttpRequestInfo"]) == ["requestMethod", "clientIP"]


def test_key_order_does_not_depend_on_rest_order() -> None:
    reversed_event = {key: FULL_EVENT[key] for key in reversed(FULL_EVENT)}
    reversed_event["resourceScope"] = dict(reversed(FULL_EVENT["resourceScope"].items()))
    out = _map(reversed_event)
    assert list(out) == list(FULL_STREAMING)
    assert list(out["auditResourceScope"]) == list(FULL_STREAMING["auditResourceScope"])


# --- absent and null fields -----------------------------------------------------------------


def test_empty_event_maps_to_empty_object() -> None:
    assert _map({}) == {}


def test_absent_optional_fields_produce_no_keys() -> None:
    # What Harness marks required, and nothing else.
    rest = {
        "insertId": "i-9",
        "resourceScope": {"accountIdentifier": "acc"},
        "timestamp": 1749561300020,
        "authenticationInfo": {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}},
        "module": "CHAOS",
        "resource": {"type": "CHAOS_HUB", "identifier": "hub"},
        "action": "CREATE",
    }
    assert _map(rest) == {
        "auditEventAuthor": {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}},
        "auditModule": "CHAOS",
        "auditResource": {"type": "CHAOS_HUB", "identifier": "hub"},
        "auditResourceScope": {"accountIdentifier": "acc"},
        "auditAction": "CREATE",
        "auditEventTime": "1749561300020",
        "insertId": "i-9",
    }


def _every_known_field_null() -> dict:
    return {
        "auditId": None,
        "authenticationInfo": {
            "principal": {"type": None, "identifier": None, "email": None},
            "labels": None,
        },
        "module": None,
        "resource": {"type": None, "identifier": None, "labels": None},
        "resourceScope": {
            "accountIdentifier": None,
            "orgIdentifier": None,
            "projectIdentifier": None,
        },
        "action": None,
        "httpRequestInfo": {"requestMethod": None},
        "requestMetadata": {"clientIP": None},
        "timestamp": None,
        "auditEventData": None,
        "environment": None,
        "impersonatingAuthenticationInfo": None,
        "insertId": None,
        "internalInfo": None,
        "someFutureField": None,
    }


def test_null_fields_count_as_absent() -> None:
    assert _map(_every_known_field_null()) == {}


@pytest.mark.parametrize(
    "container",
    ["authenticationInfo", "resource", "resourceScope", "httpRequestInfo", "requestMetadata"],
)
def test_null_or_empty_objects_produce_nothing(container: str) -> None:
    assert _map({container: None}) == {}
    assert _map({container: {}}) == {}


def test_empty_principal_produces_no_author() -> None:
    assert _map({"authenticationInfo": {"principal": {}}}) == {}


def test_one_field_of_an_object_is_enough_for_the_object() -> None:
    rest = {
        "resourceScope": {"accountIdentifier": "acc", "orgIdentifier": None},
        "resource": {"type": None, "identifier": "r"},
        "authenticationInfo": {"principal": {"type": None, "identifier": "SYSTEM"}},
        "httpRequestInfo": {"requestMethod": None},
        "requestMetadata": {"clientIP": "192.0.2.3"},
    }
    assert _map(rest) == {
        "auditEventAuthor": {"principal": {"identifier": "SYSTEM"}},
        "auditResource": {"identifier": "r"},
        "auditResourceScope": {"accountIdentifier": "acc"},
        "auditHttpRequestInfo": {"clientIP": "192.0.2.3"},
    }


def test_values_copied_as_they_are_keep_their_nulls() -> None:
    rest = {"auditEventData": {"type": "X", "oldValue": None}, "resource": {"labels": {"a": None}}}
    assert _map(rest) == {
        "resourceLabels": {"a": None},
        "auditEventData": {"type": "X", "oldValue": None},
    }


# --- email ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "expected_email"),
    [
        pytest.param(
            {"type": "USER", "identifier": "ann@example.org"}, "ann@example.org", id="user-email"
        ),
        pytest.param(
            {"type": "USER", "identifier": "ann.lee+audit@mail.example.co.uk"},
            "ann.lee+audit@mail.example.co.uk",
            id="user-email-subdomains",
        ),
        pytest.param({"type": "USER", "identifier": "b7QmZp3NTe2kXc9VwLr4sA"}, None, id="user-id"),
        pytest.param({"type": "USER", "identifier": "ann@localhost"}, None, id="no-dot-in-domain"),
        pytest.param({"type": "USER", "identifier": "ann@example."}, None, id="empty-tld"),
        pytest.param({"type": "USER", "identifier": "ann@.org"}, None, id="empty-domain-label"),
        pytest.param({"type": "USER", "identifier": "@example.org"}, None, id="empty-local-part"),
        pytest.param({"type": "USER", "identifier": "ann@ex@ample.org"}, None, id="two-at-signs"),
        pytest.param({"type": "USER", "identifier": "ann lee@example.org"}, None, id="space"),
        pytest.param({"type": "USER", "identifier": "ann@example.org "}, None, id="trailing-space"),
        pytest.param({"type": "USER", "identifier": "ann@example.org\n"}, None, id="newline"),
        pytest.param({"type": "USER", "identifier": 42}, None, id="identifier-not-a-string"),
        pytest.param({"type": "USER"}, None, id="no-identifier"),
        pytest.param({"identifier": "ann@example.org"}, None, id="no-type"),
        pytest.param({"type": "user", "identifier": "ann@example.org"}, None, id="type-is-exact"),
        pytest.param(
            {"type": "SERVICE_ACCOUNT", "identifier": "sa@example.org"}, None, id="service-account"
        ),
        pytest.param({"type": "API_KEY", "identifier": "key@example.org"}, None, id="api-key"),
        pytest.param({"type": "SERVICE", "identifier": "svc@example.org"}, None, id="service"),
        pytest.param({"type": "SYSTEM", "identifier": "sys@example.org"}, None, id="system"),
        pytest.param(
            {"type": "USER", "identifier": "ann@example.org", "email": "ann.lee@example.org"},
            "ann.lee@example.org",
            id="existing-email-kept",
        ),
        pytest.param(
            {"type": "USER", "identifier": "b7QmZp3NTe2kXc9VwLr4sA", "email": "ann@example.org"},
            "ann@example.org",
            id="existing-email-with-non-email-identifier",
        ),
        pytest.param(
            {"type": "SERVICE_ACCOUNT", "identifier": "sa", "email": "sa@example.org"},
            "sa@example.org",
            id="existing-email-any-type",
        ),
        pytest.param(
            {"type": "USER", "identifier": "ann", "email": "not an email"},
            "not an email",
            id="existing-email-kept-as-is",
        ),
        pytest.param(
            {"type": "USER", "identifier": "ann@example.org", "email": None},
            "ann@example.org",
            id="null-email-is-absent",
        ),
    ],
)
def test_email(principal: dict, expected_email: str | None) -> None:
    out = _map({"authenticationInfo": {"principal": principal}})
    mapped = out["auditEventAuthor"]["principal"]
    assert mapped.get("email") == expected_email
    assert ("email" in mapped) == (expected_email is not None)
    assert list(mapped) == [key for key in ("type", "identifier", "email") if key in mapped]
    assert "unmappedFields" not in out


def test_email_verdicts_stay_right_when_identifiers_repeat_and_alternate() -> None:
    # The same identifiers, again and again and interleaved, with more distinct ones than a
    # small memory of verdicts would hold: each is judged on its own every time.
    identifiers = [f"user{number}" for number in range(50)]
    identifiers += [f"user{number}@example.org" for number in range(50)]
    for round_ in range(3):
        for identifier in identifiers[round_::3] + identifiers:
            principal = {"type": "USER", "identifier": identifier}
            mapped = _map({"authenticationInfo": {"principal": principal}})
            expected = {**principal, "email": identifier} if "@" in identifier else principal
            assert mapped["auditEventAuthor"]["principal"] == expected, (round_, identifier)


# --- what the streaming schema has no place for -------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("someFutureField",), {"a": [1, 2]}, id="top-level"),
        pytest.param(("someFutureFlag",), False, id="top-level-false"),
        pytest.param(("authenticationInfo", "sessionId"), "s-1", id="authenticationInfo"),
        pytest.param(("authenticationInfo", "principal", "uniqueId"), "p-1", id="principal"),
        pytest.param(("resource", "parentIdentifier"), "parent", id="resource"),
        pytest.param(("resourceScope", "labels"), {"k": "v"}, id="resourceScope"),
        pytest.param(("httpRequestInfo", "url"), "/ng/api/secrets", id="httpRequestInfo"),
        pytest.param(("requestMetadata", "userAgent"), "curl/8.5.0", id="requestMetadata"),
        pytest.param(("requestMetadata", "forwardedFor"), 0, id="requestMetadata-zero"),
    ],
)
def test_unknown_fields_are_kept_under_unmapped_fields(path: tuple, value: object) -> None:
    out = _map(_with(FULL_EVENT, path, value))
    unmapped = out.pop("unmappedFields")
    assert unmapped == _with({}, path, value)
    assert out == FULL_STREAMING


def test_unknown_fields_from_several_objects_share_unmapped_fields() -> None:
    rest = _with(FULL_EVENT, ("requestMetadata", "userAgent"), "curl/8.5.0")
    rest = _with(rest, ("requestMetadata", "via"), "proxy")
    rest = _with(rest, ("authenticationInfo", "principal", "uniqueId"), "p-1")
    rest = _with(rest, ("zNewField",), "z")
    out = _map(rest)
    assert out["unmappedFields"] == {
        "authenticationInfo": {"principal": {"uniqueId": "p-1"}},
        "requestMetadata": {"userAgent": "curl/8.5.0", "via": "proxy"},
        "zNewField": "z",
    }
    assert list(out)[-1] == "unmappedFields"


def test_unknown_fields_without_known_ones() -> None:
    rest = {"requestMetadata": {"userAgent": "ua"}, "resource": {"parent": "p"}, "x": 1}
    assert _map(rest) == {
        "unmappedFields": {
            "resource": {"parent": "p"},
            "requestMetadata": {"userAgent": "ua"},
            "x": 1,
        }
    }


def test_a_rest_key_holding_a_dot_is_a_name_not_a_path() -> None:
    rest = {"resource.type": "x", "resource": {"type": "T", "labels.x": 1}}
    assert _map(rest) == {
        "auditResource": {"type": "T"},
        "unmappedFields": {"resource.type": "x", "resource": {"labels.x": 1}},
    }


def test_top_level_names_of_the_output_never_clash_with_rest_names() -> None:
    # A REST field named like a key of the output is unknown to the mapping: it is kept apart.
    rest = {
        "auditId": "a1",
        "auditEventId": "other",
        "resourceLabels": {"x": 1},
        "unmappedFields": {"y": 2},
    }
    assert _map(rest) == {
        "auditEventId": "a1",
        "unmappedFields": {
            "auditEventId": "other",
            "resourceLabels": {"x": 1},
            "unmappedFields": {"y": 2},
        },
    }


@pytest.mark.parametrize(
    ("path", "value", "gone"),
    [
        pytest.param(
            ("authenticationInfo",),
            "ann",
            ("auditEventAuthor", "principalLabels"),
            id="authenticationInfo",
        ),
        pytest.param(
            ("authenticationInfo", "principal"),
            ["USER", "ann"],
            ("auditEventAuthor",),
            id="principal",
        ),
        pytest.param(
            ("resource",), "db_password", ("auditResource", "resourceLabels"), id="resource"
        ),
        pytest.param(("resourceScope",), ["acc123"], ("auditResourceScope",), id="resourceScope"),
        pytest.param(("httpRequestInfo",), "DELETE", (), id="httpRequestInfo"),
        pytest.param(("requestMetadata",), 42, (), id="requestMetadata"),
    ],
)
def test_objects_that_are_not_objects_are_kept_under_unmapped_fields(
    path: tuple, value: object, gone: tuple
) -> None:
    out = _map(_with(FULL_EVENT, path, value))
    assert out.pop("unmappedFields") == _with({}, path, value)
    expected = {key: item for key, item in FULL_STREAMING.items() if key not in gone}
    if path == ("httpRequestInfo",):
        expected["auditHttpRequestInfo"] = {"clientIP": "192.0.2.10"}
    if path == ("requestMetadata",):
        expected["auditHttpRequestInfo"] = {"requestMethod": "DELETE"}
    assert out == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param(1749564201512, {"auditEventTime": "1749564201512"}, id="int"),
        pytest.param(0, {"auditEventTime": "0"}, id="zero"),
        pytest.param("1749564201512", {"auditEventTime": "1749564201512"}, id="string"),
        pytest.param(1749564201512.0, {"auditEventTime": "1749564201512"}, id="whole-float"),
        pytest.param(
            1749564201512.5, {"unmappedFields": {"timestamp": 1749564201512.5}}, id="fraction"
        ),
        pytest.param(True, {"unmappedFields": {"timestamp": True}}, id="bool"),
        pytest.param({"ms": 1}, {"unmappedFields": {"timestamp": {"ms": 1}}}, id="object"),
    ],
)
def test_timestamp(timestamp: object, expected: dict) -> None:
    assert _map({"timestamp": timestamp}) == expected


# --- the shared sample events ---------------------------------------------------------------


@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=[e["auditId"] for e in SAMPLE_EVENTS])
def test_sample_events(event: dict) -> None:
    out = _map(event)
    # Every REST leaf is in the output, as a multiset...
    missing = _rest_leaf_multiset(event) - _leaf_multiset(out)
    assert not missing, f"lost: {missing}"
    # ...at the place the mapping table gives it...
    for path, value in _leaves(event):
        expected = str(value) if path == ("timestamp",) else value
        assert _at(out, _streaming_path(path)) == expected, path
    # ...and the output holds nothing else but a derived email.
    extra = _leaf_multiset(out) - _rest_leaf_multiset(event)
    principal = event["authenticationInfo"]["principal"]
    if principal["type"] == "USER" and "@" in principal["identifier"]:
        assert out["auditEventAuthor"]["principal"]["email"] == principal["identifier"]
        assert extra == _leaf_multiset(principal["identifier"])
    else:
        assert "email" not in out["auditEventAuthor"]["principal"]
        assert not extra
    # The samples hold only fields the mapping knows, and survive JSON as they are.
    assert "unmappedFields" not in out
    assert json.loads(json.dumps(out, ensure_ascii=False)) == out
    assert list(out)[:2] == ["auditEventId", "auditEventAuthor"]


def test_full_event_and_unknowns_round_trip_by_place() -> None:
    rest = _with(FULL_EVENT, ("requestMetadata", "userAgent"), "curl/8.5.0")
    rest = _with(rest, ("someFutureField",), {"nested": [1, {"deep": True}]})
    out = _map(rest)
    assert not _rest_leaf_multiset(rest) - _leaf_multiset(out)
    for path, value in _leaves(rest):
        expected = str(value) if path == ("timestamp",) else value
        assert _at(out, _streaming_path(path)) == expected, path


def test_login_sample_in_full() -> None:
    assert _map(SAMPLE_EVENTS[0]) == {
        "auditEventId": "6667f0a98c1e4b2d5f3a9e01",
        "auditEventAuthor": {
            "principal": {
                "type": "USER",
                "identifier": "maria.lopez@example.com",
                "email": "maria.lopez@example.com",
            }
        },
        "auditModule": "CORE",
        "auditResource": {"type": "USER", "identifier": "maria.lopez@example.com"},
        "auditResourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "auditAction": "LOGIN",
        "auditHttpRequestInfo": {"requestMethod": "POST", "clientIP": "203.0.113.24"},
        "auditEventTime": "1749564201512",
        "resourceLabels": {"resourceName": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        "principalLabels": {"username": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
    }


def test_feature_flag_sample_in_full() -> None:
    assert _map(SAMPLE_EVENTS[6]) == {
        "auditEventId": "6667e9268c1e4b2d5f3a9d40",
        "auditEventAuthor": {
            "principal": {
                "type": "USER",
                "identifier": "j.chen@example.com",
                "email": "j.chen@example.com",
            }
        },
        "auditModule": "CF",
        "auditResource": {"type": "FEATURE_FLAG", "identifier": "new_checkout_flow"},
        "auditResourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_web",
        },
        "auditAction": "UPDATE",
        "auditHttpRequestInfo": {"requestMethod": "PATCH", "clientIP": "192.0.2.51"},
        "auditEventTime": "1749562278449",
        "resourceLabels": {"resourceName": "New Checkout Flow"},
        "principalLabels": {"username": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        "auditEventData": {"type": "FeatureFlagAuditEventData", "environment": "prod"},
        "environment": {"type": "Production", "identifier": "prod"},
    }


def test_system_sample_without_request_info_in_full() -> None:
    assert _map(SAMPLE_EVENTS[8]) == {
        "auditEventId": "6667e5648c1e4b2d5f3a9ce6",
        "auditEventAuthor": {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}},
        "auditModule": "CHAOS",
        "auditResource": {"type": "CHAOS_EXPERIMENT", "identifier": "pod-delete-checkout"},
        "auditResourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "default",
            "projectIdentifier": "resilience",
        },
        "auditAction": "DELETE",
        "auditEventTime": "1749561300020",
        "resourceLabels": {"resourceName": "pod-delete-checkout"},
        "auditEventData": {"type": "ChaosAuditEventData", "eventModule": "CHAOS"},
    }


# --- OUTPUT_FORMAT ----------------------------------------------------------------------------


def test_output_format_values() -> None:
    assert [member.value for member in OutputFormat] == ["api", "streaming"]
    assert OutputFormat.API == "api"
    assert str(OutputFormat.STREAMING) == "streaming"


def test_api_layout_is_the_event_itself() -> None:
    event = copy.deepcopy(SAMPLE_EVENTS[4])
    assert layout_function(OutputFormat.API)(event) is event


def test_streaming_layout_is_to_streaming() -> None:
    assert layout_function(OutputFormat.STREAMING) is to_streaming
