"""The hostile Harness stand-in sends what each mode promises, boundedly, and stops fast."""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from devtools.harness_simulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_KEY,
    LIST_PATH,
    LISTV2_PATH,
    HarnessSimulator,
)
from devtools.hostile_harness import KINDS, HostileHarness
from devtools.sample_events import generate_events

START = 1_749_560_400_000
END = 1_749_564_000_000
WINDOW = {"filterType": "Audit", "startTime": START, "endTime": END}
EVENTS = generate_events(30, START, END, seed=21)


@pytest.fixture
def sim() -> HarnessSimulator:
    s = HarnessSimulator(clock_ms=lambda: END + 60_000)
    s.add_events(EVENTS)
    return s


def request(
    harness: HostileHarness,
    path: str = LISTV2_PATH,
    body: dict | None = None,
    timeout: float = 5,
    **query: object,
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=timeout)
    query = {"accountIdentifier": DEFAULT_ACCOUNT_ID, "pageSize": 100, **query}
    conn.request(
        "POST",
        f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}",
        body=json.dumps(body or WINDOW),
        headers={"x-api-key": DEFAULT_API_KEY, "Content-Type": "application/json"},
    )
    return conn, conn.getresponse()


def fetch(harness: HostileHarness, path: str = LISTV2_PATH, **query: object) -> tuple[int, bytes]:
    conn, resp = request(harness, path, **query)
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.fixture
def stopped_fast() -> Iterator[list[HostileHarness]]:
    """Harnesses appended here are stopped at the end and must stop within 2 s."""
    started: list[HostileHarness] = []
    yield started
    for harness in started:
        port = harness.port
        t0 = time.monotonic()
        harness.stop()
        assert time.monotonic() - t0 < 2
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5)
    alive = [t for t in threading.enumerate() if t.name.startswith("hostile-harness")]
    assert not alive
    assert all(t.daemon for t in threading.enumerate() if t is not threading.main_thread())


def hostile(stopped: list[HostileHarness], kind: str, **kwargs: object) -> HostileHarness:
    harness = HostileHarness(kind, **kwargs)
    harness.start()
    stopped.append(harness)
    return harness


def test_rejects_unknown_kinds_and_parameters() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        HostileHarness("teapot")
    with pytest.raises(ValueError, match="takes"):
        HostileHarness("silent", size=3)
    with pytest.raises(ValueError):
        HostileHarness("deep_nesting", status=404)
    assert set(KINDS) >= {"gzip_bomb", "huge_page", "endless_chunked", "trickle", "silent"}


def test_listens_on_loopback_only(stopped_fast: list[HostileHarness]) -> None:
    harness = hostile(stopped_fast, "silent")
    assert harness.url == f"http://127.0.0.1:{harness.port}"
    assert harness._server is not None
    assert harness._server.server_address[0] == "127.0.0.1"


def test_gzip_bomb(stopped_fast: list[HostileHarness]) -> None:
    size = 500_000_000
    t0 = time.monotonic()
    harness = hostile(stopped_fast, "gzip_bomb", size=size)
    assert time.monotonic() - t0 < 3
    conn, resp = request(harness)
    assert resp.status == 200
    assert resp.getheader("Content-Encoding") == "gzip"
    compressed = int(resp.getheader("Content-Length"))
    assert compressed < 1_000_000  # what crosses the wire is small...
    inflate = zlib.decompressobj(31)
    head = inflate.decompress(resp.read(65536), 4096)  # ...a bounded prefix of it
    assert head.startswith(b'{"status":"SUCCESS","data":{"content":["AAAA')
    conn.close()


def test_gzip_bomb_inflates_to_exactly_size_and_is_valid_json(
    stopped_fast: list[HostileHarness],
) -> None:
    harness = hostile(stopped_fast, "gzip_bomb", size=3_000_000)
    status, data = fetch(harness)
    assert status == 200
    text = zlib.decompress(data, 31)  # checks the CRC and length too
    assert len(text) == 3_000_000
    page = json.loads(text)
    assert page["status"] == "SUCCESS" and len(page["data"]["content"][0]) > 2_999_000
    # The big one is exact too, counted chunk by chunk, never held.
    harness = hostile(stopped_fast, "gzip_bomb", size=200_000_000 + 7)
    status, data = fetch(harness)
    inflate, total = zlib.decompressobj(31), 0
    chunk = inflate.decompress(data, 1 << 20)
    while chunk:
        total += len(chunk)
        chunk = inflate.decompress(inflate.unconsumed_tail, 1 << 20)
    assert inflate.eof and total == 200_000_007


def test_huge_page_is_streamed(stopped_fast: list[HostileHarness]) -> None:
    harness = hostile(stopped_fast, "huge_page")  # 200 MB
    t0 = time.monotonic()
    conn, resp = request(harness)
    assert resp.status == 200
    assert int(resp.getheader("Content-Length")) == 200_000_000
    prefix = resp.read(1 << 20)
    assert time.monotonic() - t0 < 1  # nothing was built up front
    assert prefix.startswith(b'{"status":"SUCCESS","data":{"content":[{"auditId":')
    conn.close()


def test_huge_page_is_a_valid_page_of_its_size(stopped_fast: list[HostileHarness]) -> None:
    harness = hostile(stopped_fast, "huge_page", size=2_000_003)
    status, data = fetch(harness)
    assert status == 200 and len(data) == 2_000_003
    content = json.loads(data)["data"]["content"]
    assert len(content) > 5_000
    assert len({e["auditId"] for e in content}) == len(content)
    assert all(START <= e["timestamp"] <= END for e in content)


def test_endless_chunked(stopped_fast: list[HostileHarness]) -> None:
    harness = hostile(stopped_fast, "endless_chunked")
    conn, resp = request(harness)
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Length") is None
    data = resp.read(3 << 20)  # it keeps coming
    assert len(data) == 3 << 20 and data.startswith(b'{"status":"SUCCESS"')
    conn.close()
    # A second client, still reading when the harness stops, sees the end at once.
    conn, resp = request(harness)
    resp.read(1000)
    stopped_fast.remove(harness)
    t0 = time.monotonic()
    harness.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        while True:
            if not resp.read(1 << 16):
                raise http.client.IncompleteRead(b"")
    assert time.monotonic() - t0 < 2
    conn.close()


def test_trickle(stopped_fast: list[HostileHarness], sim: HarnessSimulator) -> None:
    harness = hostile(stopped_fast, "trickle", delegate=sim, interval_s=0.05)
    sock = socket.create_connection(("127.0.0.1", harness.port), timeout=2)
    body = json.dumps(WINDOW).encode()
    sock.sendall(
        b"POST %s?accountIdentifier=%s HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (
            LISTV2_PATH.encode(),
            DEFAULT_ACCOUNT_ID.encode(),
            DEFAULT_API_KEY.encode(),
            len(body),
            body,
        )
    )
    t0 = time.monotonic()
    got = b""
    while len(got) < 8:
        got += sock.recv(100)
    elapsed = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1")
    assert 0.3 <= elapsed < 2  # 8 bytes, one every 50 ms
    sock.close()


def test_trickle_head_first(stopped_fast: list[HostileHarness], sim: HarnessSimulator) -> None:
    harness = hostile(
        stopped_fast, "trickle", delegate=sim, interval_s=1.0, head_first=True, at_requests={2}
    )
    assert fetch(harness)[0] == 200  # request 1 is normal
    conn, resp = request(harness, timeout=0.3)  # the head comes at once
    assert resp.status == 200 and int(resp.getheader("Content-Length")) > 1000
    with pytest.raises(TimeoutError):
        resp.read()  # the body does not: its first byte, then nothing for a second
    conn.close()


def test_silent(stopped_fast: list[HostileHarness]) -> None:
    harness = hostile(stopped_fast, "silent")
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=0.3)
    conn.request("POST", LISTV2_PATH, body=b"{}")
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()
    assert len(harness.requests) == 1 and harness.requests[0].hostile


@pytest.mark.parametrize("status", [200, 401, 503])
def test_deep_nesting(stopped_fast: list[HostileHarness], status: int) -> None:
    harness = hostile(stopped_fast, "deep_nesting", depth=5000, status=status)
    got, data = fetch(harness)
    assert got == status
    assert data.count(b'{"a":') == 5000
    assert data.count(b"{") == data.count(b"}")
    with pytest.raises(RecursionError):
        json.loads(data)
    shallow = hostile(stopped_fast, "deep_nesting", depth=10, status=status)
    page = json.loads(fetch(shallow)[1])
    if status == 200:
        assert page["status"] == "SUCCESS" and page["data"]["content"][0]["auditEventData"]
    else:
        assert page["status"] == "ERROR" and page["detailedMessage"]["a"]


def test_status_error_200(stopped_fast: list[HostileHarness]) -> None:
    harness = hostile(stopped_fast, "status_error_200", code="DEFAULT_ERROR_CODE", message="nope")
    status, data = fetch(harness, LIST_PATH)
    assert status == 200
    page = json.loads(data)
    assert (page["status"], page["code"], page["message"]) == (
        "ERROR",
        "DEFAULT_ERROR_CODE",
        "nope",
    )


@pytest.mark.parametrize("path", [LISTV2_PATH, LIST_PATH])
def test_non_object_items(
    stopped_fast: list[HostileHarness], sim: HarnessSimulator, path: str
) -> None:
    harness = hostile(stopped_fast, "non_object_items", delegate=sim)
    status, data = fetch(harness, path, pageSize=10)
    assert status == 200
    content = json.loads(data)["data"]["content"]
    events = [item for item in content if isinstance(item, dict)]
    others = [item for item in content if not isinstance(item, dict)]
    newest = sorted(EVENTS, key=lambda e: (e["timestamp"], e["auditId"]), reverse=True)
    assert events == newest[:10]
    assert {type(x) for x in others} >= {str, int, float, type(None), bool, list}
    assert not isinstance(content[0], dict)
    # The events' bytes are the simulator's own.
    assert json.dumps(newest[0], separators=(",", ":")).encode() in data
    assert sim.requests == []  # pages built for hostile answers are not recorded there


def test_huge_error_message(stopped_fast: list[HostileHarness]) -> None:
    for status, kind in ((500, "ERROR"), (400, "FAILURE")):
        harness = hostile(stopped_fast, "huge_error_message", status=status)
        got, data = fetch(harness)
        assert got == status
        envelope = json.loads(data)
        assert envelope["status"] == kind
        assert len(envelope["message"]) == 5_000_000


def test_out_of_window(stopped_fast: list[HostileHarness], sim: HarnessSimulator) -> None:
    harness = hostile(stopped_fast, "out_of_window", delegate=sim)
    content = json.loads(fetch(harness)[1])["data"]["content"]
    stamps = [e["timestamp"] for e in content]
    assert any(ts < 0 for ts in stamps)
    assert START - 1 in stamps and END + 1 in stamps
    assert any(ts > END + 10 * 365 * 86_400_000 for ts in stamps)
    assert sum(START <= ts <= END for ts in stamps) >= 2
    ids = [e["auditId"] for e in content]
    assert len(ids) == len(set(ids)) + 1  # one auditId twice
    # With nothing in the window, it invents in-window events of its own.
    empty = hostile(stopped_fast, "out_of_window")
    content = json.loads(fetch(empty)[1])["data"]["content"]
    assert sum(START <= e["timestamp"] <= END for e in content) >= 2


def test_nan(stopped_fast: list[HostileHarness], sim: HarnessSimulator) -> None:
    harness = hostile(stopped_fast, "nan", delegate=sim)
    status, data = fetch(harness)
    assert status == 200
    assert b"NaN" in data and b"Infinity" in data and b"1e400" in data

    def strict(token: str) -> float:
        raise ValueError(token)

    with pytest.raises(ValueError):
        json.loads(data, parse_constant=strict)
    odd = json.loads(data)["data"]["content"][0]["auditEventData"]
    assert math.isnan(odd["ratio"]) and odd["limit"] == math.inf and odd["big"] == math.inf


def test_only_the_chosen_requests_are_hostile(
    stopped_fast: list[HostileHarness], sim: HarnessSimulator
) -> None:
    harness = hostile(stopped_fast, "status_error_200", delegate=sim, at_requests={2})
    first = json.loads(fetch(harness, pageSize=10)[1])["data"]
    assert json.loads(fetch(harness, pageSize=10)[1])["status"] == "ERROR"
    # The delegate's paging goes on where it left off, tokens and all.
    second = json.loads(fetch(harness, pageSize=10, pageToken=first["pageToken"])[1])["data"]
    assert len(first["content"]) == len(second["content"]) == 10
    assert first["content"][-1]["timestamp"] >= second["content"][0]["timestamp"]
    assert fetch(harness, "/elsewhere")[0] == 404  # other paths: the delegate, uncounted
    assert [r.hostile for r in harness.requests] == [False, True, False, False]
    assert [r.n for r in harness.requests] == [1, 2, 3, 0]
    assert harness.hostile_count == 1
    assert [r.status for r in sim.requests] == [200, 200, 404]


def test_stop_ends_every_kind_of_answer_in_progress(stopped_fast: list[HostileHarness]) -> None:
    harnesses = [
        hostile(stopped_fast, "silent"),
        hostile(stopped_fast, "trickle", interval_s=30),
        hostile(stopped_fast, "endless_chunked", interval_s=30),
        hostile(stopped_fast, "huge_page"),
    ]
    conns = []
    for harness in harnesses:
        conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=5)
        conn.request("POST", LISTV2_PATH, body=json.dumps(WINDOW))
        conns.append(conn)
    time.sleep(0.2)  # all four are mid-answer (or mid-silence) now
    for conn in conns:
        conn.close()
    # stopped_fast stops them, each within 2 s, and checks no server thread is left.
