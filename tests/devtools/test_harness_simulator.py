"""The Harness simulator behaves like the audit API as the project documents it."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest

from devtools import fake_clock
from devtools.harness_simulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_KEY,
    LIST_PATH,
    LISTV2_PATH,
    HarnessSimulator,
    RecordedRequest,
    main,
)
from devtools.sample_events import SAMPLE_EVENTS, generate_burst, generate_events

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


# -- behaviours the real API may have -----------------------------------------------------------

BURST_TS = START + 1_800_000


def ids(events: list[dict]) -> list[str]:
    return [e["auditId"] for e in events]


def list_page(client: Client, body: dict, index: int, size: int) -> dict:
    status, _, data = client.post(LIST_PATH, body, pageIndex=index, pageSize=size)
    assert status == 200, data
    return json.loads(data)["data"]


def offset_pages(client: Client, body: dict, size: int, pages: int) -> list[dict]:
    """What a pager trusting list's offsets gets from `pages` pages."""
    return [e for i in range(pages) for e in list_page(client, body, i, size)["content"]]


def test_generate_burst() -> None:
    burst = generate_burst(250, BURST_TS, seed=3)
    assert burst == generate_burst(250, BURST_TS, seed=3)
    assert ids(burst) != ids(generate_burst(250, BURST_TS, seed=4))
    assert len(set(ids(burst))) == 250 and ids(burst) == sorted(ids(burst))
    assert {e["timestamp"] for e in burst} == {BURST_TS}
    assert {e["action"] for e in burst} == {"ROLE_ASSIGNMENT_CREATED"}
    assert {e["resource"]["type"] for e in burst} == {"ROLE_ASSIGNMENT"}
    assert len({e["resource"]["identifier"] for e in burst}) == 250
    assert len({e["auditEventData"]["principal"]["identifier"] for e in burst}) == 250
    actors = {json.dumps(e["authenticationInfo"], sort_keys=True) for e in burst}
    assert len(actors) == 1
    assert all(int(e["auditId"][:8], 16) == BURST_TS // 1000 for e in burst)
    assert not set(ids(burst)) & set(ids(generate_events(5000, START, END, seed=3)))
    assert generate_burst(0, BURST_TS) == []
    with pytest.raises(ValueError):
        generate_burst(-1, BURST_TS)
    with pytest.raises(ValueError):
        generate_burst(1, -5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "random"}, "order"),
        ({"ties": "random"}, "ties"),
        ({"listv2_tokens": "cursor"}, "listv2_tokens"),
        ({"count_lag_ms": -1}, "count_lag_ms"),
        ({"throttle": (0, 10)}, "throttle"),
        ({"throttle": (10, 0)}, "throttle"),
    ],
)
def test_option_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HarnessSimulator(**kwargs)


@pytest.mark.parametrize("tokens", ["keyset", "offset"])
def test_oldest_first(clock: FakeClock, tokens: str) -> None:
    events = generate_events(300, START, END, seed=11) + generate_burst(30, BURST_TS, seed=1)
    oldest = sorted(events, key=lambda e: (e["timestamp"], e["auditId"]))
    with HarnessSimulator(
        clock_ms=clock, sleep=clock.sleep, order="oldest_first", listv2_tokens=tokens
    ) as s:
        s.add_events(events)
        c = Client(s)
        assert c.all_v2(window(), page_size=40) == oldest
        assert offset_pages(c, window(), 100, 4) == oldest
        # Filters and bounds still apply, in the same order.
        got = c.all_v2(window(BURST_TS, END, modules=["CORE"]), page_size=7)
        assert got == [e for e in oldest if e["timestamp"] >= BURST_TS and e["module"] == "CORE"]
        c.close()


def test_shuffled_ties_reorder_between_requests(clock: FakeClock) -> None:
    burst = generate_burst(60, BURST_TS, seed=2)
    others = generate_events(40, START, END, seed=12)
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, ties="shuffled", seed=1) as s:
        s.add_events(burst + others)
        c = Client(s)
        orders = set()
        for _ in range(5):
            for got in (
                list_page(c, window(), 0, 100)["content"],
                c.page(window(), pageSize=100)["data"]["content"],  # keyset listV2
            ):
                assert sorted(ids(got)) == sorted(ids(burst + others))  # the same set...
                ts = [e["timestamp"] for e in got]
                assert ts == sorted(ts, reverse=True)  # ...still newest first...
                orders.add(tuple(e["auditId"] for e in got if e["timestamp"] == BURST_TS))
        assert len(orders) == 10  # ...but the tied events in a new order every time
        c.close()
    # The same seed replays the same orders.
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, ties="shuffled", seed=1) as s:
        s.add_events(burst + others)
        c = Client(s)
        again = list_page(c, window(), 0, 100)["content"]
        c.close()
    first = [o for o in orders if o]  # set order is arbitrary: compare against all of them
    assert tuple(e["auditId"] for e in again if e["timestamp"] == BURST_TS) in first


def test_stable_ties_never_reorder(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events(generate_burst(60, BURST_TS, seed=2))
    pages = [list_page(client, window(), 0, 100)["content"] for _ in range(3)]
    assert pages[0] == pages[1] == pages[2]
    assert ids(pages[0]) == sorted(ids(pages[0]), reverse=True)


def _offset_pager_runs(tokens: str | None, runs: int) -> list[tuple[int, int]]:
    """(repeated, missed) for `runs` offset pagers over a 250-event burst at pageSize 100."""
    burst = generate_burst(250, BURST_TS, seed=5)
    before = [ev(BURST_TS - 1 - n, f"{n:024x}") for n in range(30)]
    truth = set(ids(burst + before))
    out = []
    with HarnessSimulator(
        ties="shuffled", seed=7, listv2_tokens=tokens or "keyset", clock_ms=lambda: NOW
    ) as s:
        s.add_events(burst + before)
        c = Client(s)
        for _ in range(runs):
            got = c.all_v2(window(), page_size=100) if tokens else offset_pages(c, window(), 100, 3)
            assert len(got) == 280
            out.append((len(got) - len(set(ids(got))), len(truth - set(ids(got)))))
        c.close()
    return out


@pytest.mark.parametrize("tokens", [None, "offset"])  # list's pageIndex; listV2 offset tokens
def test_offset_paging_over_a_shuffled_burst_skips_and_repeats(tokens: str | None) -> None:
    runs = _offset_pager_runs(tokens, 5)
    # Every run gets 280 events, yet repeats some tied ones and misses as many others.
    assert all(repeated == missed for repeated, missed in runs)
    assert all(missed > 0 for _, missed in runs)


def test_keyset_paging_over_a_shuffled_burst_is_exact(clock: FakeClock) -> None:
    burst = generate_burst(250, BURST_TS, seed=5)
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, ties="shuffled") as s:
        s.add_events(burst)
        c = Client(s)
        got = c.all_v2(window(), page_size=100)
        c.close()
    assert sorted(ids(got)) == sorted(ids(burst))


def test_offset_tokens(clock: FakeClock) -> None:
    events = generate_events(250, START, END, seed=13)
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, listv2_tokens="offset") as s:
        s.add_events(events)
        c = Client(s)
        first = c.page(window(), pageSize=100)["data"]
        token = first["pageToken"]
        assert json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"] == 100
        assert c.all_v2(window(), page_size=100) == newest_first(events)
        # The token is an offset: a record appearing at the top shifts the next page.
        s.add_events([ev(END, "f" * 24)])
        second = c.page(window(), pageSize=100, pageToken=token)["data"]
        assert second["content"][0] == first["content"][-1]
        # It is still tied to the filter, and must be one the simulator issued.
        status, _, data = c.post(LISTV2_PATH, window(START + 1), pageSize=100, pageToken=token)
        assert status == 400 and b"filter" in data
        forged = base64.urlsafe_b64encode(b'{"o":5,"f":"x"}').decode().rstrip("=")
        assert c.post(LISTV2_PATH, window(), pageSize=100, pageToken=forged)[0] == 400
        c.close()


def test_count_lag_gives_totals_lower_than_the_pages(clock: FakeClock) -> None:
    old = generate_events(120, START, END - 120_000, seed=14)
    recent = generate_events(80, END - 60_000, END, seed=15)
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, count_lag_ms=30_000) as s:
        s.add_events(old)
        s.add_events(recent, visible_at_ms=NOW - 10_000)  # visible, but not to the count yet
        c = Client(s)
        first = list_page(c, window(), 0, 50)
        assert (first["totalItems"], first["totalPages"]) == (120, 3)  # truth: 200, 4 pages
        # A pager that stops at totalPages misses the oldest 50 events.
        naive = offset_pages(c, window(), 50, first["totalPages"])
        assert len(naive) == 150
        assert list_page(c, window(), 3, 50)["pageItemCount"] == 50
        clock.now_ms = NOW + 20_000  # the count catches up
        assert list_page(c, window(), 0, 50)["totalItems"] == 200
        c.close()
    # Without a lag the count is the pages' truth.
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep) as s:
        s.add_events(recent, visible_at_ms=NOW)
        c = Client(s)
        assert list_page(c, window(), 0, 50)["totalItems"] == 80
        c.close()


def test_throttle_answers_429_without_retry_after_and_recovers() -> None:
    fake = fake_clock.FakeClock(NOW)
    with HarnessSimulator(clock_ms=fake.now_ms, sleep=fake.sleep, throttle=(5, 10)) as s:
        s.add_events(generate_events(10, START, END, seed=16))
        c = Client(s)
        assert [c.post(LISTV2_PATH, window())[0] for _ in range(3)] == [200] * 3
        fake.advance(6)
        assert [c.post(LIST_PATH, window())[0] for _ in range(2)] == [200] * 2
        status, headers, data = c.post(LISTV2_PATH, window())  # the 6th within 10 s
        assert status == 429
        assert "retry-after" not in headers
        assert headers["content-type"].startswith("text/html")
        with pytest.raises(ValueError):
            json.loads(data)
        assert c.post("/elsewhere", window())[0] == 429  # the edge counts every path
        assert s.throttled == 2
        assert [r.fault for r in s.requests[-2:]] == ["throttle", "throttle"]
        assert s.requests[-2].status == 429 and s.requests[-2].body == window()
        # Sliding window: 10 s after the first three, three more fit, not four.
        fake.advance(4)
        assert [c.post(LISTV2_PATH, window())[0] for _ in range(4)] == [200, 200, 200, 429]
        fake.advance(10)
        assert c.post(LISTV2_PATH, window())[0] == 200
        assert s.throttled == 3
        c.close()


def test_throttled_requests_leave_injected_faults_queued() -> None:
    with HarnessSimulator(clock_ms=lambda: NOW, throttle=(1, 1)) as s:
        c = Client(s)
        assert c.post(LISTV2_PATH, window())[0] == 200
        s.inject("503_html")
        assert c.post(LISTV2_PATH, window())[0] == 429
        assert s.pending_faults() == 1
        c.close()


def test_visible_after_requests(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events([ev(1000, "a" * 24)])
    sim.add_events(generate_burst(3, 2000, seed=1), visible_after_requests=2)
    assert sim.event_count() == 4
    assert len(client.page(window(0, 5000))["data"]["content"]) == 1  # request 1
    assert client.post("/elsewhere", window())[0] == 404  # not a listing path: not counted
    assert list_page(client, window(0, 5000), 0, 10)["totalItems"] == 1  # request 2
    assert len(client.page(window(0, 5000))["data"]["content"]) == 4  # request 3
    assert sim.listing_requests == 3
    # Already past: visible at once.
    sim.add_events([ev(3000, "c" * 24)], visible_after_requests=1)
    assert len(client.page(window(0, 5000))["data"]["content"]) == 5
    with pytest.raises(ValueError):  # ids are claimed when added, not when released
        sim.add_events([ev(4000, "d" * 24)], visible_after_requests=10)
        sim.add_events([ev(4000, "d" * 24)])


def test_visible_after_requests_mid_keyset_paging(sim: HarnessSimulator, client: Client) -> None:
    sim.add_events([ev(4000, "d" * 24), ev(3000, "c" * 24), ev(1000, "a" * 24)])
    sim.add_events([ev(2000, "b" * 24), ev(5000, "e" * 24)], visible_after_requests=1)
    first = client.page(window(0, 9000), pageSize=2)["data"]
    second = client.page(window(0, 9000), pageSize=5, pageToken=first["pageToken"])["data"]
    assert [e["auditId"][0] for e in first["content"]] == ["d", "c"]
    assert [e["auditId"][0] for e in second["content"]] == ["b", "a"]  # e is behind the cursor


def test_throttled_requests_count_towards_visible_after_requests() -> None:
    with HarnessSimulator(clock_ms=lambda: NOW, throttle=(1, 60)) as s:
        s.add_events([ev(1000, "a" * 24)], visible_after_requests=1)
        c = Client(s)
        assert c.page(window(0, 5000))["data"]["content"] == []
        assert c.post(LISTV2_PATH, window(0, 5000))[0] == 429
        assert s.listing_requests == 2 and s.event_count() == 1
        c.close()


def test_on_request_hook(clock: FakeClock) -> None:
    seen: list[int] = []

    def hook(n: int) -> None:
        seen.append(n)
        if n == 2:
            sim.add_events([ev(2000 + n, f"{n:024x}")])
            sim.add_events([ev(3000, "c" * 24)], visible_after_requests=3)

    sim = HarnessSimulator(clock_ms=clock, sleep=clock.sleep, on_request=hook)
    with sim:
        c = Client(sim)
        counts = [len(c.page(window(0, 5000))["data"]["content"]) for _ in range(4)]
        c.close()
    assert seen == [1, 2, 3, 4]
    assert counts == [0, 1, 1, 2]


def test_requests_record_the_window_asked_for(sim: HarnessSimulator, client: Client) -> None:
    client.page(window(START, START + 10), pageSize=100)
    list_page(client, window(START + 5, START + 10), 2, 100)
    assert [(r.path, r.body["startTime"], r.body["endTime"]) for r in sim.requests] == [
        (LISTV2_PATH, START, START + 10),
        (LIST_PATH, START + 5, START + 10),
    ]
    assert sim.requests[1].query["pageIndex"] == "2"


def test_concurrent_requests_with_held_back_events() -> None:
    with HarnessSimulator(clock_ms=lambda: NOW, ties="shuffled") as s:
        for k in range(20):
            s.add_events([ev(1000 + k, f"{k:024x}")], visible_after_requests=k)
        results: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            c = Client(s)
            for _ in range(5):
                n = len(c.page(window(0, 5000), pageSize=100)["data"]["content"])
                with lock:
                    results.append(n)
            c.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.listing_requests == 20 and len(results) == 20
        assert max(results) == 20 and min(results) >= 1


def test_cli_rejects_bad_options() -> None:
    for argv in (["--throttle", "100"], ["--throttle", "0/10"], ["--ties", "x"]):
        with pytest.raises(SystemExit):
            main(argv)


def test_events_released_by_request_reach_the_lagging_count_later(clock: FakeClock) -> None:
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, count_lag_ms=5_000) as s:
        s.add_events([ev(1000, "a" * 24)])
        s.add_events([ev(2000, "b" * 24)], visible_after_requests=1)
        c = Client(s)
        assert list_page(c, window(0, 5000), 0, 10)["totalItems"] == 1
        page = list_page(c, window(0, 5000), 0, 10)  # released now: in the pages, not the count
        assert (page["pageItemCount"], page["totalItems"]) == (2, 1)
        clock.now_ms = NOW + 5_000
        assert list_page(c, window(0, 5000), 0, 10)["totalItems"] == 2
        c.close()


# --- modes for what the real API may do (issue 19) ------------------------------------------------


def serve(**mode: object) -> Iterator[tuple[HarnessSimulator, Client]]:
    clock = FakeClock()
    with HarnessSimulator(clock_ms=clock, sleep=clock.sleep, **mode) as sim:
        client = Client(sim)
        yield sim, client
        client.close()


def test_a_page_cap_serves_fewer_than_asked_and_list_skips_by_the_size_asked() -> None:
    for sim, client in serve(page_cap=3):
        events = [ev(START + n, f"e{n:02}") for n in range(10)]
        sim.add_events(events)
        data = client.page(window(), pageSize=5)["data"]
        assert len(data["content"]) == 3 and data["hasNext"] is True
        assert [e["auditId"] for e in client.all_v2(window(), 5)] == [
            e["auditId"] for e in newest_first(events)
        ]
        pages = []
        for index in range(2):
            _, _, body = client.post(LIST_PATH, window(), pageSize=5, pageIndex=index)
            pages.append([e["auditId"] for e in json.loads(body)["data"]["content"]])
        assert pages == [["e09", "e08", "e07"], ["e04", "e03", "e02"]]  # e06, e05 skipped


def test_the_cursor_under_another_field() -> None:
    for sim, client in serve(cursor_field="nextPageToken"):
        sim.add_events([ev(START + n, f"e{n}") for n in range(5)])
        data = client.page(window(), pageSize=2)["data"]
        assert data["hasNext"] is True and "pageToken" not in data
        later = client.page(window(), pageSize=2, pageToken=data["nextPageToken"])["data"]
        assert [e["auditId"] for e in later["content"]] == ["e2", "e1"]


def test_timestamps_as_strings_floats_or_in_turn() -> None:
    for mode, kinds in [("string", {str}), ("float", {float}), ("mixed", {int, str, float})]:
        for sim, client in serve(timestamps=mode):
            sim.add_events([ev(START + n, f"e{n}") for n in range(6)])
            content = client.page(window(), pageSize=10)["data"]["content"]
            assert {type(e["timestamp"]) for e in content} == kinds
            assert sorted(int(float(e["timestamp"])) for e in content) == [
                START + n for n in range(6)
            ]


def test_an_endless_cursor_answers_the_same_token_for_ever() -> None:
    for sim, client in serve(endless_cursor=True):
        sim.add_events(generate_burst(5, START, seed=1))
        token, seen = None, []
        for _ in range(4):
            data = client.page(window(), pageSize=2, pageToken=token)["data"]
            assert data["hasNext"] is True
            seen.append(data["pageToken"])
            token = data["pageToken"]
        assert len(set(seen)) == 1


def test_one_audit_id_at_two_timestamps() -> None:
    for sim, client in serve(unique_ids=False):
        sim.add_events([ev(START, "twice"), ev(START + 5, "twice"), ev(START + 2, "once")])
        content = client.page(window(), pageSize=10)["data"]["content"]
        assert [(e["auditId"], e["timestamp"]) for e in content] == [
            ("twice", START + 5),
            ("once", START + 2),
            ("twice", START),
        ]
    sim = HarnessSimulator()
    sim.add_events([ev(START, "twice")])
    with pytest.raises(ValueError, match="already stored"):
        sim.add_events([ev(START + 5, "twice")])
