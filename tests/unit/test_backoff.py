import json

import pytest
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import RequestHistory

from harness_audit.harness_client import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    JitteredRetry,
    retry_cause,
)
from harness_audit.listing import LIST, LIST_V2, AuditQuery, Cursor, MalformedPage, parse_page


def retry_after_failures(failures: int, jitter: float) -> JitteredRetry:
    history = tuple(RequestHistory("POST", "/", None, 503, None) for _ in range(failures))
    return JitteredRetry(
        total=20,
        backoff_factor=BACKOFF_BASE_SECONDS,
        backoff_max=BACKOFF_MAX_SECONDS,
        history=history,
        jitter=lambda: jitter,
    )


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, 30.0), (12, 30.0)],
)
def test_full_jitter_exponential_schedule(failures, ceiling):
    assert retry_after_failures(failures, 1.0).get_backoff_time() == ceiling
    assert retry_after_failures(failures, 0.5).get_backoff_time() == ceiling / 2
    assert retry_after_failures(failures, 0.0).get_backoff_time() == 0.0


def test_pause_observer_and_jitter_survive_new():
    paused, seen = [], []
    retry = JitteredRetry(
        total=3,
        status_forcelist={503},
        allowed_methods={"POST"},
        backoff_factor=1.0,
        pause=paused.append,
        jitter=lambda: 1.0,
        observe=seen.append,
    )
    retry = retry.increment("POST", "/", error=MalformedPage("bad"))
    retry.sleep()
    retry = retry.increment("POST", "/", error=MalformedPage("bad"))
    retry.sleep()
    assert paused == [1.0, 2.0]
    assert seen == ["malformed_body", "malformed_body"]
    retry = retry.increment("POST", "/", error=MalformedPage("bad"))
    with pytest.raises(MaxRetryError):
        retry.increment("POST", "/", error=MalformedPage("bad"))


def test_retry_after_is_honoured_and_capped():
    paused = []

    class Response:
        def __init__(self):
            self.status = 429
            self.headers = {"Retry-After": "3600"}

    retry = JitteredRetry(total=3, retry_after_max=60, pause=paused.append)
    retry.sleep(Response())
    assert paused == [60]


def test_cause_labels():
    class Response:
        def __init__(self, status):
            self.status = status

    assert retry_cause(Response(429), None) == "http_429"
    assert retry_cause(Response(503), None) == "http_5xx"
    assert retry_cause(None, MalformedPage("x")) == "malformed_body"


def test_query_body_is_fixed_and_carries_filters():
    query = AuditQuery(1, 2, ("CD",), ("CREATE", "DELETE"), "EXCLUDE_LOGIN_EVENTS")
    assert json.loads(query.body) == {
        "filterType": "Audit",
        "startTime": 1,
        "endTime": 2,
        "modules": ["CD"],
        "actions": ["CREATE", "DELETE"],
        "staticFilter": "EXCLUDE_LOGIN_EVENTS",
    }
    assert query.body == query.body
    assert json.loads(AuditQuery(1, 2).body) == {
        "filterType": "Audit",
        "startTime": 1,
        "endTime": 2,
    }


def page(data: dict) -> bytes:
    return json.dumps({"status": "SUCCESS", "data": data}).encode()


def test_parse_listv2_pages():
    last = parse_page(
        page({"content": [{"a": 1}], "hasNext": False, "pageToken": None}), Cursor(), 100
    )
    assert last.next_cursor is None and last.events == [{"a": 1}]
    more = parse_page(page({"content": [], "hasNext": True, "pageToken": "t2"}), Cursor(), 100)
    assert more.next_cursor == Cursor(endpoint=LIST_V2, token="t2")


def test_parse_list_pages_by_total_pages():
    first = parse_page(page({"content": [{}] * 2, "totalPages": 3}), Cursor(endpoint=LIST), 2)
    assert first.next_cursor == Cursor(endpoint=LIST, index=1)
    last = parse_page(page({"content": [{}], "totalPages": 3}), Cursor(endpoint=LIST, index=2), 2)
    assert last.next_cursor is None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502</html>",
        b'{"status":"SUCCESS","data":{"content":[{"a"',
        b'{"status":"ERROR"}',
        b'{"status":"SUCCESS","data":{}}',
        b'{"status":"SUCCESS","data":{"content":[],"hasNext":true}}',
    ],
)
def test_malformed_bodies_are_retryable(body):
    with pytest.raises(MalformedPage):
        parse_page(body, Cursor(), 100)
