"""The Harness simulator behaves like the audit API as the project documents it."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest

from devtools.harness_simulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_KEY,
    LIST_PATH,
    LISTV2_PATH,
    HarnessSimulator,
    RecordedRequest,
)
from devtools.sample_events import SAMPLE_EVENTS, generate_events

START = 1_749_560_400_000
END = 1_749_564_000_000
NOW = 1_749_564_100_000


class FakeClock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.now_ms = now_ms
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self.now_ms

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[HarnessSimulator]:
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep) as s:
        yield s


class Client:
    """One keep-alive connection, like the collector's pool."""

    def __init__(self, sim: HarnessSimulator) -> None:
        self.sim = sim
        self.conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)

    def post(
        self,
        path: str = LISTV2_PATH,
        body: object = None,
        *,
        key: str | None = DEFAULT_API_KEY,
        raw_body: bytes | None = None,
        method: str = "POST",
        **query: object,
    ) -> tuple[int, dict[str, str], bytes]:
        query.setdefault("accountIdentifier", DEFAULT_ACCOUNT_ID)
        query = {k: v for k, v in query.items() if v is not None}
        if raw_body is None:
            raw_body = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["x-api-key"] = key
        url = f"{path}?{urlencode(query)}" if query else path
        self.conn.request(method, url, body=raw_body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def page(self, body: dict, **query: object) -> dict:
        status, _, data = self.post(LISTV2_PATH, body, **query)
        assert status == 200, data
        return json.loads(data)

    def all_v2(self, body: dict, page_size: int = 100) -> list[dict]:
        events: list[dict] = []
        token = None
        while True:
            data = self.page(body, pageSize=page_size, pageToken=token)["data"]
            events.extend(data["content"])
            if not data["hasNext"]:
                assert data["pageToken"] is None
                return events
            token = data["pageToken"]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client(sim: HarnessSimulator) -> Iterator[Client]:
    c = Client(sim)
    yield c
    c.close()


def window(start: int = START, end: int = END, **extra: object) -> dict:
    return {"filterType": "Audit", "startTime": start, "endTime": end, **extra}


def newest_first(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: (e["timestamp"], e["auditId"]), reverse=True)


def ev(ts: int, audit_id: str, **fields: object) -> dict:
    event = {
        "auditId": audit_id,
        "resourceScope": {"accountIdentifier": DEFAULT_ACCOUNT_ID},
        "timestamp": ts,
        "authenticationInfo": {"principal": {"type": "USER", "identifier": "a@example.com"}},
        "module": "CORE",
        "resource": {"type": "USER", "identifier": "a@example.com"},
        "action": "UPDATE",
    }
    event.update(fields)
    return event


# -- sample events -----------------------------------------------------------------------------


def test_generate_events_shape_and_determinism() -> None:
    events = generate_events(3000, START, END, seed=7)
    assert events == generate_events(3000, START, END, seed=7)
    assert events != generate_events(3000, START, END, seed=8)
    ids = [e["auditId"] for e in events]
    assert len(set(ids)) == len(ids)
    for e in events:
        assert len(e["auditId"]) == 24
        assert int(e["auditId"][:8], 16) == e["timestamp"] // 1000
        assert START <= e["timestamp"] <= END
        assert None not in e.values()
        assert e["resourceScope"]["accountIdentifier"] == DEFAULT_ACCOUNT_ID
    assert min(e["timestamp"] for e in events) == START
    assert max(e["timestamp"] for e in events) == END
    assert {"CORE", "PMS", "CD", "CI", "CF", "CHAOS"} <= {e["module"] for e in events}
    actions = {e["action"] for e in events}
    assert {"CREATE", "UPDATE", "DELETE", "LOGIN", "UNSUCCESSFUL_LOGIN", "START"} <= actions
    assert "CREATE_TOKEN" in actions
    principals = {e["authenticationInfo"]["principal"]["type"] for e in events}
    assert principals == {"USER", "SERVICE_ACCOUNT", "SYSTEM"}
    users = [e for e in events if e["authenticationInfo"]["principal"]["type"] == "USER"]
    assert all("@" in u["authenticationInfo"]["principal"]["identifier"] for u in users)
    assert all("labels" in u["authenticationInfo"] for u in users)
    assert any("httpRequestInfo" in e for e in events)
    assert any("httpRequestInfo" not in e for e in events)
    assert any("projectIdentifier" in e["resourceScope"] for e in events)
    assert any(set(e["resourceScope"]) == {"accountIdentifier"} for e in events)
    assert any("auditEventData" in e for e in events)
    assert any("environment" in e for e in events)
    assert generate_events(0, START, END) == []
    with pytest.raises(ValueError):
        generate_events(1, END, START)


def test_sample_events_constant() -> None:
    assert len(SAMPLE_EVENTS) == 9
    assert SAMPLE_EVENTS[0]["auditId"] == "6667f0a98c1e4b2d5f3a9e01"
    assert [e["timestamp"] for e in SAMPLE_EVENTS] == sorted(
        (e["timestamp"] for e in SAMPLE_EVENTS), reverse=True
    )


# -- listV2 ------------------------------------------------------------------------------------


def test_listv2_pages_every_event_once_newest_first(sim: HarnessSimulator, client: Client) -> None:
    events = generate_events(1000, START, END, seed=1)
    # Ties on the timestamp are ordered by auditId, descending.
    tied = [ev(START + 500, f"{(START + 500) // 1000:08x}{n:016x}") for n in range(5)]
    sim.add_events(events + tied)
    got = client.all_v2(window(), page_size=37)
    assert got == newest_first(events + tied)
    requests = sim.listv2_requests()
    assert len(requests) == -(-1005 // 37)
    assert "pageToken" not in requests[0].query
    assert all("pageToken" in r.query for r in requests[1:])


def test_listv2_envelope_matches_the_sample(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(SAMPLE_EVENTS)
    body = client.page(window(1749560400000, 1749564300000), pageSize=3)
    assert list(body) == ["status", "data", "metaData", "correlationId"]
    assert body["status"] == "SUCCESS" and body["metaData"] is None
    assert len(body["correlationId"]) == 36
    data = body["data"]
    assert list(data) == [
        "content",
        "pageSize",
        "hasNext",
        "pageToken",
        "pageIndex",
        "pageItemCount",
    ]
    assert data["content"] == SAMPLE_EVENTS[:3]
    assert (data["pageSize"], data["hasNext"], data["pageIndex"], data["pageItemCount"]) == (
        3,
        True,
        0,
        3,
    )
    token = json.loads(base64.urlsafe_b64decode(data["pageToken"] + "=="))
    assert token["ts"] == SAMPLE_EVENTS[2]["timestamp"]
    assert token["id"] == SAMPLE_EVENTS[2]["auditId"]
    assert isinstance(token["f"], str)
    # Events go out byte for byte as stored.
    _, _, raw = client.post(LISTV2_PATH, window(1749560400000, 1749564300000), pageSize=1)
    assert raw.startswith(
        b'{"status":"SUCCESS","data":{"content":[{"auditId":"6667f0a98c1e4b2d5f3a9e01",'
    )


def test_empty_result(client: Client) -> None:
    data = client.page(window())["data"]
    assert data["content"] == [] and data["hasNext"] is False and data["pageToken"] is None
    assert data["pageSize"] == 50  # the default


def test_time_bounds_are_inclusive(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(
        [
            ev(999, "a" * 24),
            ev(1000, "b" * 24),
            ev(1500, "c" * 24),
            ev(2000, "d" * 24),
            ev(2001, "e" * 24),
        ]
    )
    got = [e["auditId"][0] for e in client.all_v2(window(1000, 2000))]
    assert got == ["d", "c", "b"]
    assert [e["auditId"][0] for e in client.all_v2(window(2000, 2000))] == ["d"]
    assert [e["auditId"][0] for e in client.all_v2({"filterType": "Audit"})] == list("edcba")


def test_filters(sim: HarnessSimulator, client: Client) -> None:
    events = generate_events(600, START, END, seed=3)
    sim.add_events(events)

    def expect(pred: Callable[[dict], bool]) -> list[dict]:
        return newest_first([e for e in events if pred(e)])

    got = client.all_v2(window(modules=["CF", "CHAOS"]), page_size=20)
    assert got == expect(lambda e: e["module"] in ("CF", "CHAOS")) and got
    got = client.all_v2(window(actions=["LOGIN", "DELETE"]))
    assert got == expect(lambda e: e["action"] in ("LOGIN", "DELETE")) and got
    got = client.all_v2(window(staticFilter="EXCLUDE_LOGIN_EVENTS"))
    assert got == expect(lambda e: e["action"] not in ("LOGIN", "LOGIN2FA", "UNSUCCESSFUL_LOGIN"))
    got = client.all_v2(window(staticFilter="EXCLUDE_SYSTEM_EVENTS"))
    assert got == expect(lambda e: e["authenticationInfo"]["principal"]["type"] != "SYSTEM")
    got = client.all_v2(window(modules=["CORE"], actions=["LOGIN"]))
    assert got == expect(lambda e: e["module"] == "CORE" and e["action"] == "LOGIN")
    assert client.all_v2(window(modules=[])) == newest_first(events)  # empty list: no filter


def test_late_visibility(sim: HarnessSimulator, client: Client, clock: FakeClock) -> None:
    sim.add_events([ev(1000, "a" * 24), ev(3000, "c" * 24)])
    sim.add_events([ev(2000, "b" * 24)], visible_at_ms=NOW + 60_000)
    assert [e["auditId"][0] for e in client.all_v2(window(0, 5000))] == ["c", "a"]
    clock.now_ms = NOW + 59_999
    assert [e["auditId"][0] for e in client.all_v2(window(0, 5000))] == ["c", "a"]
    clock.now_ms = NOW + 60_000
    assert [e["auditId"][0] for e in client.all_v2(window(0, 5000))] == ["c", "b", "a"]


def test_late_record_appears_on_a_later_keyset_page(
    sim: HarnessSimulator, client: Client, clock: FakeClock
) -> None:
    sim.add_events([ev(4000, "d" * 24), ev(3000, "c" * 24), ev(1000, "a" * 24)])
    sim.add_events([ev(2000, "b" * 24)], visible_at_ms=NOW + 1)
    first = client.page(window(0, 5000), pageSize=1)["data"]
    clock.now_ms = NOW + 1  # becomes visible mid-paging, older than the cursor
    rest = client.all_v2(window(0, 5000))  # a fresh run sees it
    second = client.page(window(0, 5000), pageSize=5, pageToken=first["pageToken"])["data"]
    assert [e["auditId"][0] for e in first["content"]] == ["d"]
    assert [e["auditId"][0] for e in second["content"]] == ["c", "b", "a"]
    assert len(rest) == 4


def test_page_token_must_match_the_filter(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(generate_events(10, START, END, seed=2))
    token = client.page(window(), pageSize=3)["data"]["pageToken"]
    status, _, data = client.post(LISTV2_PATH, window(end=END + 1), pageSize=3, pageToken=token)
    assert status == 400
    err = json.loads(data)
    assert err["code"] == "INVALID_REQUEST"
    assert "pageToken does not match the request filter" in err["message"]
    # The same filter with another page size is fine.
    assert client.page(window(), pageSize=7, pageToken=token)["data"]["pageItemCount"] == 7


@pytest.mark.parametrize(
    "token",
    [
        "not-base64!",
        base64.urlsafe_b64encode(b'{"ts":1,"id":"x"}').decode(),
        "eyJ0cyI6MTc0OTU2MzkyNDkzMCwiaWQiOiI2NjY3ZWY5NDhjMWU0YjJkNWYzYTlkZTIifQ",
    ],
)
def test_unknown_page_token(sim: HarnessSimulator, client: Client, token: str) -> None:
    sim.add_events(generate_events(5, START, END))
    status, _, data = client.post(LISTV2_PATH, window(), pageToken=token)
    assert status == 400
    assert json.loads(data)["message"] == "Invalid request: pageToken is not valid"


def test_paging_5k_events_over_one_connection(sim: HarnessSimulator, client: Client) -> None:
    events = generate_events(5_000, START, END, seed=5)
    sim.add_events(events)
    got = client.all_v2(window())
    assert len(got) == 5_000
    assert len({e["auditId"] for e in got}) == 5_000
    assert [e["auditId"] for e in got] == [e["auditId"] for e in newest_first(events)]


# -- list (offset pages) ------------------------------------------------------------------------


def test_list_offset_pages(sim: HarnessSimulator, client: Client, clock: FakeClock) -> None:
    events = generate_events(25, START, END, seed=4)
    sim.add_events(events)
    pages = []
    for index in range(3):
        status, _, data = client.post(LIST_PATH, window(), pageIndex=index, pageSize=10)
        assert status == 200
        pages.append(json.loads(data))
    first = pages[0]
    assert list(first) == ["status", "data", "metaData", "correlationId"]
    assert list(first["data"]) == [
        "totalPages",
        "totalItems",
        "pageItemCount",
        "pageSize",
        "content",
        "pageIndex",
        "empty",
        "pageToken",
    ]
    assert [p["data"]["pageItemCount"] for p in pages] == [10, 10, 5]
    assert all(p["data"]["totalItems"] == 25 and p["data"]["totalPages"] == 3 for p in pages)
    assert [e for p in pages for e in p["data"]["content"]] == newest_first(events)
    status, _, data = client.post(LIST_PATH, window(), pageIndex=3, pageSize=10)
    page = json.loads(data)["data"]
    assert page["empty"] is True and page["content"] == [] and page["pageToken"] is None

    # A record becoming visible between pages shifts the offsets, as on the real service.
    newest = ev(END, "f" * 24)
    sim.add_events([newest], visible_at_ms=NOW + 10)
    clock.now_ms = NOW + 10
    _, _, data = client.post(LIST_PATH, window(), pageIndex=1, pageSize=10)
    page = json.loads(data)["data"]
    assert page["totalItems"] == 26
    assert page["content"][0] == pages[0]["data"]["content"][-1]


# -- auth and validation ------------------------------------------------------------------------


def _error(data: bytes) -> dict:
    err = json.loads(data)
    assert list(err) == [
        "status",
        "code",
        "message",
        "correlationId",
        "detailedMessage",
        "responseMessages",
        "metadata",
    ]
    assert err["status"] == "ERROR"
    return err


def test_auth_errors(sim: HarnessSimulator, client: Client) -> None:
    for key in (None, "", "sat.simAccount0000000000001.simtoken.wrong"):
        status, _, data = client.post(LISTV2_PATH, window(), key=key)
        assert status == 401
        err = _error(data)
        assert (err["code"], err["message"]) == ("INVALID_TOKEN", "Token is not valid.")
        assert err["responseMessages"][0]["code"] == "INVALID_TOKEN"

    status, _, data = client.post(LISTV2_PATH, window(), accountIdentifier=None)
    assert status == 400
    assert _error(data)["message"] == (
        "Invalid request: Account detail is not present in the request"
    )

    status, _, data = client.post(LISTV2_PATH, window(), accountIdentifier="otherAccount")
    assert status == 403
    err = _error(data)
    assert err["code"] == "ACCESS_DENIED"
    assert err["message"] == (
        "User not authorized: You need core_audit_view permission on ACCOUNT with "
        "identifier: otherAccount to perform this action"
    )
    assert [r.api_key_ok for r in sim.requests] == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("body", "query", "message"),
    [
        (window(), {"pageSize": 0}, "pageSize must be between 1 and 100"),
        (window(), {"pageSize": 101}, "pageSize must be between 1 and 100"),
        (window(), {"pageSize": "ten"}, "pageSize must be an integer"),
        (None, {}, "JSON"),
        ({"startTime": START, "endTime": END}, {}, "filterType"),
        ({**window(), "filterType": "Other"}, {}, "filterType"),
        (
            window(1749564300000, 1749560400000),
            {},
            "Invalid request: Invalid time filter with start time 1749564300000 after end "
            "time 1749560400000.",
        ),
        (window(start="yesterday"), {}, "startTime"),
        (window(modules="CD"), {}, "modules"),
        (window(staticFilter="EXCLUDE_EVERYTHING"), {}, "staticFilter"),
    ],
)
def test_validation(client: Client, body: object, query: dict, message: str) -> None:
    status, headers, data = client.post(LISTV2_PATH, body, **query)
    assert status == 400
    assert headers["content-type"] == "application/json"
    err = _error(data)
    assert err["code"] == "INVALID_REQUEST"
    assert message in err["message"]


def test_non_json_body(client: Client) -> None:
    status, _, data = client.post(LISTV2_PATH, raw_body=b"startTime=1")
    assert status == 400 and _error(data)["code"] == "INVALID_REQUEST"


def test_query_values_are_url_decoded() -> None:
    odd = "acc/with+plus=and&amp"
    with HarnessSimulator(account_id=odd) as other:
        c = Client(other)
        status, _, _ = c.post(LISTV2_PATH, window(), accountIdentifier=odd)
        c.close()
    assert status == 200
    assert other.requests[0].query["accountIdentifier"] == odd


def test_unknown_paths_and_methods(sim: HarnessSimulator, client: Client) -> None:
    status, _, data = client.post("/audit/api/audits/listV3", window())
    assert status == 404 and b"<html>" in data
    status, _, _ = client.post("/gateway" + LISTV2_PATH, window())
    assert status == 404
    status, headers, _ = client.post(LISTV2_PATH, method="GET")
    assert status == 405 and headers["allow"] == "POST"


def test_listv2_disabled() -> None:
    with HarnessSimulator(listv2_enabled=False) as s:
        s.add_events(generate_events(3, START, END))
        c = Client(s)
        status, headers, _ = c.post(LISTV2_PATH, window())
        assert status == 404 and headers["content-type"].startswith("text/html")
        status, _, data = c.post(LIST_PATH, window())
        assert status == 200 and json.loads(data)["data"]["totalItems"] == 3
        c.close()


# -- faults -------------------------------------------------------------------------------------


def test_status_faults(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(generate_events(3, START, END))
    sim.inject("429", "429_retry_after:7", "502_html", "503_html", "500_json")
    sim.inject("401", "403", "400")
    assert sim.pending_faults() == 8

    status, headers, data = client.post(LISTV2_PATH, window())
    assert status == 429 and "retry-after" not in headers
    with pytest.raises(ValueError):
        json.loads(data)
    status, headers, _ = client.post(LISTV2_PATH, window())
    assert status == 429 and headers["retry-after"] == "7"
    for code in (502, 503):
        status, headers, data = client.post(LISTV2_PATH, window())
        assert status == code and headers["content-type"].startswith("text/html")
        assert data.lstrip().startswith(b"<html>")
    status, _, data = client.post(LISTV2_PATH, window())
    assert status == 500
    err = _error(data)
    assert err["code"] == "UNKNOWN_ERROR" and err["responseMessages"] == []
    status, _, data = client.post(LISTV2_PATH, window())
    assert status == 401 and _error(data)["message"] == "Token is not valid."
    status, _, data = client.post(LISTV2_PATH, window())
    assert status == 403 and DEFAULT_ACCOUNT_ID in _error(data)["message"]
    status, _, data = client.post(LISTV2_PATH, window())
    assert status == 400 and _error(data)["code"] == "INVALID_REQUEST"

    assert sim.pending_faults() == 0
    assert client.page(window())["data"]["pageItemCount"] == 3
    assert [r.fault for r in sim.requests] == [
        "429",
        "429_retry_after:7",
        "502_html",
        "503_html",
        "500_json",
        "401",
        "403",
        "400",
        None,
    ]
    assert [r.status for r in sim.requests] == [429, 429, 502, 503, 500, 401, 403, 400, 200]


def test_truncated_200(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(generate_events(5, START, END))
    sim.inject("truncated_200")
    status, headers, data = client.post(LISTV2_PATH, window())
    assert status == 200
    assert int(headers["content-length"]) == len(data)
    with pytest.raises(ValueError):
        json.loads(data)
    assert client.page(window())["data"]["pageItemCount"] == 5  # the connection still works


def test_cut_connection(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(generate_events(5, START, END))
    sim.inject("cut")
    client.conn.request(
        "POST",
        f"{LISTV2_PATH}?accountIdentifier={DEFAULT_ACCOUNT_ID}",
        body=json.dumps(window()),
        headers={"x-api-key": DEFAULT_API_KEY},
    )
    resp = client.conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    client.conn.close()
    assert client.page(window())["data"]["pageItemCount"] == 5


def test_reset_connection(sim: HarnessSimulator, client: Client) -> None:
    sim.inject("reset")
    with pytest.raises(ConnectionError):
        client.post(LISTV2_PATH, window())
    client.conn.close()
    assert client.page(window())["status"] == "SUCCESS"
    assert [r.status for r in sim.requests] == [0, 200]


def test_latency(clock: FakeClock) -> None:
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, latency_s=0.25) as s:
        s.inject("latency:3.5")
        c = Client(s)
        assert c.post(LISTV2_PATH, window())[0] == 200
        assert c.post(LISTV2_PATH, window())[0] == 200
        c.close()
    # The injected latency fault first, then the base latency, for each request.
    assert clock.slept == [3.5, 0.25, 0.25]


def test_inject_rejects_unknown_faults(sim: HarnessSimulator) -> None:
    for bad in ("418", "latency:soon", "429_retry_after:", "reset "):
        with pytest.raises(ValueError):
            sim.inject("429", bad)
    assert sim.pending_faults() == 0


# -- records, lifecycle -------------------------------------------------------------------------


def test_recorded_requests_never_hold_the_key(sim: HarnessSimulator, client: Client) -> None:
    client.post(LISTV2_PATH, window(note=DEFAULT_API_KEY), apiKey=DEFAULT_API_KEY)
    client.post(LISTV2_PATH, window(), key="pat.wrong.key.value")
    assert len(sim.requests) == 2
    text = repr(sim.requests)
    assert DEFAULT_API_KEY not in text and "simsecret" not in text
    assert "pat.wrong.key.value" not in text
    first = sim.requests[0]
    assert isinstance(first, RecordedRequest)
    assert first.path == LISTV2_PATH
    assert first.query["apiKey"] == "<redacted>"
    assert first.body is not None and first.body["note"] == "<redacted>"
    assert first.body["startTime"] == START
    assert (first.status, first.api_key_ok) == (200, True)
    assert (sim.requests[1].status, sim.requests[1].api_key_ok) == (401, False)
    with pytest.raises(AttributeError):
        first.status = 500  # type: ignore[misc]


def test_add_events_rejects_bad_events(sim: HarnessSimulator) -> None:
    sim.add_events([ev(1, "a" * 24)])
    with pytest.raises(ValueError):
        sim.add_events([ev(2, "a" * 24)])
    with pytest.raises(ValueError):
        sim.add_events([ev(2, "b" * 24), ev(3, "b" * 24)])
    with pytest.raises(ValueError):
        sim.add_events([{"auditId": "x"}])
    assert sim.event_count() == 1


def test_stop_closes_keep_alive_connections() -> None:
    s = HarnessSimulator()
    url = s.start()
    assert url == f"http://127.0.0.1:{s.port}"
    c = Client(s)
    assert c.post(LISTV2_PATH, window())[0] == 200
    s.stop()
    s.stop()  # idempotent
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        c.post(LISTV2_PATH, window())
    c.close()
    with pytest.raises(RuntimeError):
        _ = s.url
