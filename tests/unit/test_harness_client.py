"""Tests of harness_audit.harness_client against real local HTTP servers, on a fake clock."""

import contextlib
import gzip
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections import Counter, deque
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from devtools.fake_clock import FakeClock
from devtools.harness_simulator import DEFAULT_ACCOUNT_ID, DEFAULT_API_KEY, HarnessSimulator
from harness_audit import harness_client
from harness_audit.clock import Deadline
from harness_audit.config import load_config
from harness_audit.errors import DeadlineReached, HarnessRejected, HarnessUnavailable
from harness_audit.harness_client import (
    BACKOFF_MAX_SECONDS,
    RETRY_AFTER_MAX_SECONDS,
    EndpointChoice,
    HarnessClient,
    Pacer,
)
from harness_audit.listing import FIRST_PAGE, LIST, LIST_V2, AuditQuery, PageCursor

T0 = 1_749_564_000_000
PAGE_SIZE = 10
QUERY = AuditQuery(T0 - 3_600_000, T0)


@pytest.fixture
def clock():
    return FakeClock(start_ms=T0)


@pytest.fixture
def sim(clock):
    simulator = HarnessSimulator(clock_ms=clock.now_ms)
    simulator.add_events(
        {"auditId": f"id{n:03d}", "timestamp": T0 - 1_000 * n, "module": "CORE"} for n in range(25)
    )
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def logged(monkeypatch):
    lines: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(
        harness_client,
        "log",
        lambda level, message, **fields: lines.append((level, message, fields)),
    )
    return lines


def make_client(url, clock, **overrides) -> HarnessClient:
    """As a run builds it; pacer and endpoint choice as an instance keeps them."""
    config = {"account_id": DEFAULT_ACCOUNT_ID, "api_key": DEFAULT_API_KEY}
    config |= {"api_base": url, "page_size": PAGE_SIZE, "max_retries": 5}
    config |= {name: overrides.pop(name) for name in list(overrides) if name in config}
    defaults = load_config({"HARNESS_ACCOUNT_ID": "a", "HARNESS_API_KEY": "k", "GCS_BUCKET": "bkt"})
    instance = {"clock": clock, "pacer": Pacer(0, clock), "endpoint": EndpointChoice()}
    return HarnessClient(
        replace(defaults, **config), **instance | {"jitter": lambda: 0.0} | overrides
    )


def deadline(clock, seconds=450.0) -> Deadline:
    return Deadline(clock, seconds, 0)


# --- the request ------------------------------------------------------------------------------


def test_the_request_carries_the_query_and_the_cursor(sim, clock):
    client = make_client(sim.url, clock)
    query = AuditQuery(
        T0 - 60_000,
        T0,
        modules=("CD", "CORE"),
        actions=("CREATE",),
        static_filter="EXCLUDE_LOGIN_EVENTS",
    )
    page = client.fetch(query, FIRST_PAGE, deadline(clock))
    assert page.items == []
    (request,) = sim.requests
    assert request.path == "/audit/api/audits/listV2"
    assert request.query == {"accountIdentifier": DEFAULT_ACCOUNT_ID, "pageSize": str(PAGE_SIZE)}
    assert request.body == {
        "filterType": "Audit",
        "startTime": T0 - 60_000,
        "endTime": T0,
        "modules": ["CD", "CORE"],
        "actions": ["CREATE"],
        "staticFilter": "EXCLUDE_LOGIN_EVENTS",
    }
    assert request.api_key_ok


def test_list_v2_pages_follow_the_page_token(sim, clock):
    client = make_client(sim.url, clock)
    first = client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert [e["auditId"] for e in first.items] == [f"id{n:03d}" for n in range(10)]
    assert first.has_more and first.next_cursor.token
    second = client.fetch(QUERY, first.next_cursor, deadline(clock))
    assert [e["auditId"] for e in second.items] == [f"id{n:03d}" for n in range(10, 20)]
    assert sim.requests[1].query["pageToken"] == first.next_cursor.token
    assert sim.requests[1].body == {
        "filterType": "Audit",
        "startTime": QUERY.start_ms,
        "endTime": T0,
    }
    assert client.requests == 2 and not client.retries


def test_list_pages_by_page_index(clock, logged):
    with HarnessSimulator(clock_ms=clock.now_ms, listv2_enabled=False) as sim:
        sim.add_events({"auditId": f"a{n}", "timestamp": T0 - n} for n in range(25))
        client = make_client(sim.url, clock)
        page = client.fetch(QUERY, PageCursor(index=2), deadline(clock))
        assert [e["auditId"] for e in page.items] == [f"a{n}" for n in range(20, 25)]
        assert sim.requests[-1].query["pageIndex"] == "2"
        assert "pageToken" not in sim.requests[-1].query


# --- listV2 missing -------------------------------------------------------------------------


def test_list_v2_404_falls_back_to_list_once_and_stays_there(clock, logged):
    endpoint = EndpointChoice()
    with HarnessSimulator(clock_ms=clock.now_ms, listv2_enabled=False) as sim:
        sim.add_events([{"auditId": "a", "timestamp": T0 - 5}])
        for _ in range(3):  # three runs of one instance
            client = make_client(sim.url, clock, endpoint=endpoint)
            page = client.fetch(QUERY, FIRST_PAGE, deadline(clock))
            assert [e["auditId"] for e in page.items] == ["a"]
            assert not client.retries
        paths = [request.path for request in sim.requests]
    assert paths == ["/audit/api/audits/listV2"] + ["/audit/api/audits/list"] * 3
    assert sim.requests[1].query["pageIndex"] == "0"
    assert endpoint.current == LIST
    warnings = [line for line in logged if line[0] == logging.WARNING]
    assert len(warnings) == 1 and "listV2 is missing" in warnings[0][1]
    infos = [line for line in logged if line[0] == logging.INFO]
    assert len(infos) == 1 and infos[0][2]["endpoint"] == LIST


def test_a_404_after_list_v2_worked_is_a_rejection(sim, clock, logged):
    endpoint = EndpointChoice()
    client = make_client(sim.url, clock, endpoint=endpoint)
    client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    sim.listv2_enabled = False
    with pytest.raises(HarnessRejected) as raised:
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert raised.value.status == 404
    assert "Neither listV2 nor list exists" in str(raised.value)
    assert endpoint.current == LIST_V2
    assert not [line for line in logged if line[0] == logging.WARNING]


def test_list_404_after_falling_back_is_a_rejection(clock):
    server = TinyServer(clock)
    server.queue((404, {}, b"<html>404</html>"), (404, {}, b"<html>404</html>"))
    with server:
        client = make_client(server.url, clock)
        with pytest.raises(HarnessRejected) as raised:
            client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert raised.value.status == 404
    assert [urlsplit(r.path).path for r in server.requests] == [
        "/audit/api/audits/listV2",
        "/audit/api/audits/list",
    ]


# --- retries ----------------------------------------------------------------------------------


def test_each_failure_is_retried_and_counted_by_cause(sim, clock):
    sim.inject("429", "503_html", "truncated_200", "cut", "reset", "500_json")
    client = make_client(sim.url, clock, max_retries=6)
    page = client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert len(page.items) == PAGE_SIZE
    assert client.retries == Counter(http_429=1, http_5xx=2, malformed_body=1, connection=2)
    assert client.requests == 7
    assert client.last_failure.startswith("http_5xx: HTTP 500 (UNKNOWN_ERROR: ")


def test_backoff_is_full_jitter_under_exponential_ceilings_capped_at_30_s(sim, clock):
    sim.inject(*["429"] * 9)
    client = make_client(sim.url, clock, max_retries=9, jitter=lambda: 1.0)
    client.fetch(QUERY, FIRST_PAGE, deadline(clock, 10_000))
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert max(clock.slept) == BACKOFF_MAX_SECONDS


def test_backoff_is_the_jitter_times_the_ceiling(sim, clock):
    draws = iter([0.0, 0.25, 0.999])
    sim.inject("503_html", "503_html", "503_html")
    client = make_client(sim.url, clock, jitter=lambda: next(draws))
    client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert clock.slept == pytest.approx([0.0, 0.25, 0.999 * 2.0])


@pytest.mark.parametrize(
    ("header", "slept"),
    [
        pytest.param("5", 5.0, id="honoured"),
        pytest.param("0.5", 0.5, id="fraction"),
        pytest.param("600", RETRY_AFTER_MAX_SECONDS, id="capped"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.5, id="date-ignored"),
        pytest.param("soon", 0.5, id="junk-ignored"),
        pytest.param("-3", 0.5, id="negative-ignored"),
    ],
)
def test_retry_after_is_honoured_up_to_a_minute(sim, clock, header, slept):
    sim.inject(f"429_retry_after:{header}")
    client = make_client(sim.url, clock, jitter=lambda: 1.0)
    client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert clock.slept == [slept]
    assert client.retries == Counter(http_429=1)


@pytest.mark.parametrize(
    ("fault", "cause", "named"),
    [
        ("503_html", "http_5xx", "HTTP 503 (body is not a Harness error envelope)"),
        ("429", "http_429", "HTTP 429"),
        ("500_json", "http_5xx", "UNKNOWN_ERROR: Simulated failure"),
        ("truncated_200", "malformed_body", "HTTP 200 with a bad body: invalid JSON"),
        ("reset", "connection", ""),
    ],
)
def test_exhausted_retries_raise_unavailable_naming_the_cause(sim, clock, fault, cause, named):
    sim.inject(*[fault] * 3)
    client = make_client(sim.url, clock, max_retries=2)
    with pytest.raises(HarnessUnavailable) as raised:
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    message = str(raised.value)
    assert "through 2 retries" in message and named in message
    assert client.retries == Counter({cause: 3})
    assert client.requests == 3
    assert client.last_failure.startswith(cause)


def test_a_backoff_that_would_pass_the_deadline_stops_paging(sim, clock):
    sim.inject("429_retry_after:30", "429")
    client = make_client(sim.url, clock)
    with pytest.raises(DeadlineReached, match=r"30\.0 s backoff after http_429"):
        client.fetch(QUERY, FIRST_PAGE, deadline(clock, 20))
    assert clock.slept == []
    assert client.requests == 1


def test_no_request_once_the_deadline_has_passed(sim, clock):
    client = make_client(sim.url, clock)
    limit = deadline(clock, 5)
    clock.advance(5)
    with pytest.raises(DeadlineReached):
        client.fetch(QUERY, FIRST_PAGE, limit)
    assert sim.requests == [] and client.requests == 0


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "message", "hint"),
    [
        ("401", 401, "INVALID_TOKEN", "Token is not valid.", "Check HARNESS_API_KEY"),
        ("403", 403, "ACCESS_DENIED", "User not authorized", "core_audit_view permission"),
        ("400", 400, "INVALID_REQUEST", "Invalid request: simulated fault", "HARNESS_ACCOUNT_ID"),
    ],
)
def test_rejections_are_not_retried_and_say_what_to_fix(
    sim, clock, fault, status, code, message, hint
):
    sim.inject(fault)
    client = make_client(sim.url, clock)
    with pytest.raises(HarnessRejected) as raised:
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    rejected = raised.value
    assert (rejected.status, rejected.code) == (status, code)
    assert rejected.harness_message.startswith(message)
    assert rejected.correlation_id
    text = str(rejected)
    assert text.startswith(f"Harness answered HTTP {status} {code}: {message.rstrip('.')}")
    assert hint in text and hint in rejected.hint
    assert ".." not in text
    assert client.requests == 1 and not client.retries and clock.slept == []


def test_a_wrong_key_and_a_wrong_account_are_rejected(sim, clock):
    with pytest.raises(HarnessRejected) as raised:
        make_client(sim.url, clock, api_key="pat.x.y.z").fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert raised.value.status == 401 and raised.value.code == "INVALID_TOKEN"
    with pytest.raises(HarnessRejected) as raised:
        make_client(sim.url, clock, account_id="other").fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert raised.value.status == 403 and "account other" in str(raised.value)


# --- bodies the simulator cannot send ---------------------------------------------------------


class Recorded:
    def __init__(self, path, headers, body, at, port):
        self.path, self.headers, self.body, self.at, self.port = path, headers, body, at, port


class TinyServer:
    """Answers POSTs from a queue of (status, headers, body), then with an empty page;
    records each request with the fake clock's time when it arrived."""

    EMPTY_PAGE = json.dumps(
        {"status": "SUCCESS", "data": {"content": [], "hasNext": False, "pageToken": None}}
    ).encode()

    def __init__(self, clock):
        self.clock = clock
        self.answers: deque = deque()
        self.requests: list[Recorded] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(
                    Recorded(
                        self.path,
                        dict(self.headers),
                        body,
                        outer.clock.monotonic(),
                        self.client_address[1],
                    )
                )
                status, headers, data = (
                    outer.answers.popleft() if outer.answers else (200, {}, outer.EMPTY_PAGE)
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def queue(self, *answers):
        self.answers.extend(answers)

    def __enter__(self):
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def tiny(clock):
    with TinyServer(clock) as server:
        yield server


def test_accept_encoding_identity_and_the_key_are_sent(tiny, clock):
    make_client(tiny.url, clock).fetch(QUERY, FIRST_PAGE, deadline(clock))
    (request,) = tiny.requests
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["accept-encoding"] == "identity"
    assert headers["x-api-key"] == DEFAULT_API_KEY
    assert headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "filterType": "Audit",
        "startTime": QUERY.start_ms,
        "endTime": T0,
    }


def test_a_success_status_with_an_error_envelope_is_retried_and_named(tiny, clock):
    error = {"status": "ERROR", "code": "UNKNOWN_ERROR", "message": "Oops, something went wrong"}
    tiny.queue(*[(200, {}, json.dumps(error).encode())] * 3)
    client = make_client(tiny.url, clock, max_retries=2)
    with pytest.raises(HarnessUnavailable) as raised:
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert "status is 'ERROR', not SUCCESS (UNKNOWN_ERROR: Oops, something went wrong)" in str(
        raised.value
    )
    assert client.retries == Counter(malformed_body=3)


def test_a_success_status_with_an_error_envelope_then_a_page(tiny, clock):
    error = {"status": "FAILURE", "code": "INVALID_REQUEST", "message": "x"}
    tiny.queue((200, {}, json.dumps(error).encode()))
    client = make_client(tiny.url, clock)
    assert client.fetch(QUERY, FIRST_PAGE, deadline(clock)).items == []
    assert client.retries == Counter(malformed_body=1)


def test_a_body_over_the_cap_is_retried_then_fails_naming_the_cap(sim, clock, monkeypatch):
    monkeypatch.setattr(harness_client, "MAX_PAGE_BYTES", 300)
    client = make_client(sim.url, clock, max_retries=2)
    with pytest.raises(HarnessUnavailable, match="larger than 300 bytes"):
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert client.retries == Counter(body_too_large=3)
    # The same page within the cap is fine.
    monkeypatch.setattr(harness_client, "MAX_PAGE_BYTES", 100_000)
    assert make_client(sim.url, clock).fetch(QUERY, FIRST_PAGE, deadline(clock)).items


def test_an_unrequested_content_encoding_is_retried(tiny, clock):
    page = {"status": "SUCCESS", "data": {"content": [{"auditId": "a", "timestamp": 1}]}}
    data = json.dumps(page).encode()
    tiny.queue((200, {"Content-Encoding": "gzip"}, gzip.compress(data)), (200, {}, data))
    client = make_client(tiny.url, clock)
    fetched = client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert fetched.items == page["data"]["content"]
    assert client.retries == Counter(malformed_body=1)
    assert "Content-Encoding 'gzip'" in client.last_failure


# --- pacing -----------------------------------------------------------------------------------


def test_the_pacer_spaces_requests_evenly_retries_included(tiny, clock):
    tiny.queue((429, {}, b"Too Many Requests"), (503, {}, b"<html></html>"))
    client = make_client(tiny.url, clock, pacer=Pacer(600, clock))
    for _ in range(3):
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    times = [request.at - tiny.requests[0].at for request in tiny.requests]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert client.retries == Counter(http_429=1, http_5xx=1)


def test_the_pacer_keeps_its_spacing_across_runs_of_an_instance(tiny, clock):
    pacer = Pacer(600, clock)
    for _ in range(2):  # two runs, one instance
        make_client(tiny.url, clock, pacer=pacer).fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert tiny.requests[1].at - tiny.requests[0].at == pytest.approx(0.1)


def test_a_pace_wait_past_the_deadline_stops_paging(tiny, clock):
    client = make_client(tiny.url, clock, pacer=Pacer(1, clock))  # one request a minute
    limit = deadline(clock, 30)
    client.fetch(QUERY, FIRST_PAGE, limit)
    with pytest.raises(DeadlineReached, match=r"slot is 60\.00 s away"):
        client.fetch(QUERY, FIRST_PAGE, limit)
    assert len(tiny.requests) == 1 and clock.slept == []


def test_pacing_zero_never_sleeps(tiny, clock):
    client = make_client(tiny.url, clock, pacer=Pacer(0, clock))
    for _ in range(5):
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert clock.slept == []
    assert len(tiny.requests) == 5 and len({request.at for request in tiny.requests}) == 1


# --- the connection ---------------------------------------------------------------------------


def test_one_connection_is_kept_alive_across_pages_until_closed(tiny, clock):
    client = make_client(tiny.url, clock)
    for _ in range(3):
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    client.close()
    client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    ports = [request.port for request in tiny.requests]
    assert ports[0] == ports[1] == ports[2] != ports[3]


def test_the_deadline_cuts_an_answer_whose_status_line_trickles_in(clock):
    """Each byte arrives well within the read timeout, so only the deadline can end the
    request: it is cut mid-status-line, and not retried."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    status_lines = b"HTTP/1.1 200 OK\r\n" * 100
    sent = []

    def trickle():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in status_lines:
                if stop.wait(0.05):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                sent.append(byte)

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    client = make_client(f"http://127.0.0.1:{listener.getsockname()[1]}", clock)
    try:
        with pytest.raises(DeadlineReached, match="passed while Harness was answering"):
            client.fetch(QUERY, FIRST_PAGE, Deadline(clock, 0.5, 0))
    finally:
        stop.set()
        server.join(5)
        listener.close()
    assert 0 < len(sent) < len(status_lines)
    assert client.requests == 1 and client.retries == Counter()


def test_a_refused_connection_is_reported_as_refused(clock):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    client = make_client(f"http://127.0.0.1:{port}", clock, max_retries=1)
    with pytest.raises(HarnessUnavailable) as raised:
        client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    assert "Connection refused" in str(raised.value)
    assert "in time" not in str(raised.value)
    assert client.retries == Counter(connection=2)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_an_untrusted_certificate_is_refused(tmp_path, clock):
    """The client keeps its own connection: it must verify TLS as urllib3's pool does."""
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with contextlib.suppress(OSError, ssl.SSLError):
                context.wrap_socket(connection, server_side=True).recv(1)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = make_client(f"https://127.0.0.1:{listener.getsockname()[1]}", clock, max_retries=0)
    try:
        with pytest.raises(HarnessUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            client.fetch(QUERY, FIRST_PAGE, deadline(clock))
    finally:
        listener.close()
        server.join(5)


def test_an_answer_completed_past_the_deadline_is_not_used(clock):
    with HarnessSimulator(clock_ms=clock.now_ms, sleep=clock.sleep, latency_s=8.0) as slow:
        slow.add_events([{"auditId": "a", "timestamp": T0 - 1}])
        client = make_client(slow.url, clock)
        with pytest.raises(DeadlineReached, match="answer arrived"):
            client.fetch(QUERY, FIRST_PAGE, deadline(clock, 5))
        assert client.retries == Counter() and len(slow.requests) == 1
