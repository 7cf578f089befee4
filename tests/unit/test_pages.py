"""The pager: pages in order, each once, whatever the fetcher guessed or Harness garbled."""

import json

import pytest

from devtools.fake_clock import FakeClock
from harness_audit.clock import Deadline
from harness_audit.errors import DeadlineReached, HarnessUnavailable
from harness_audit.harness_client import HarnessClient
from harness_audit.listing import AuditQuery, Cursor, decode_with_sources, guess_next_cursor
from harness_audit.pages import PrefetchingPages

QUERY = AuditQuery(0, 1)


def page(ids, token=None, *, envelope_first=False) -> bytes:
    content = ",".join(
        json.dumps(i, separators=(",", ":"))
        if isinstance(i, dict)
        else f'{{"auditId":"{i}","timestamp":1}}'
        for i in ids
    )
    tail = f'"hasNext":{json.dumps(token is not None)},"pageToken":{json.dumps(token)}'
    if envelope_first:
        return f'{{"status":"SUCCESS","data":{{{tail},"content":[{content}]}}}}'.encode()
    return f'{{"status":"SUCCESS","data":{{"content":[{content}],{tail}}}}}'.encode()


class ScriptedHarness(HarnessClient):
    """The real client's parsing and retry counting over scripted bodies (no network)."""

    def __init__(self, bodies: dict, clock: FakeClock):
        super().__init__(
            api_base="http://127.0.0.1:1",
            account_id="a",
            api_key="k",
            page_size=100,
            max_retries=2,
            clock=clock,
            jitter=lambda: 0.5,
        )
        self.bodies = {
            key: list(value) if isinstance(value, list) else [value]
            for key, value in bodies.items()
        }
        self.fetched: list = []

    def fetch_raw(self, query, cursor, deadline, retry=None, on_sent=None):
        if on_sent:
            on_sent()
        self.fetched.append(cursor.token)
        answers = self.bodies[cursor.token]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return cursor, answer


def collect(harness, clock, budget=60.0):
    pages = PrefetchingPages(harness, QUERY, Cursor(), Deadline(clock, budget, 0))
    try:
        return [
            (fetched.cursor.token, [e["auditId"] for e in fetched.page.events]) for fetched in pages
        ]
    finally:
        pages.close()


def test_pages_in_order():
    clock = FakeClock()
    harness = ScriptedHarness(
        {None: page(["a", "b"], "t2"), "t2": page(["c"], "t3"), "t3": page(["d"])}, clock
    )
    assert collect(harness, clock) == [(None, ["a", "b"]), ("t2", ["c"]), ("t3", ["d"])]
    assert harness.fetched == [None, "t2", "t3"]


def test_a_wrong_guess_is_dropped_and_paging_follows_the_decoded_token():
    clock = FakeClock()
    trap = {
        "auditId": "x",
        "timestamp": 1,
        "auditEventData": {"hasNext": True, "pageToken": "evil"},
    }
    first = page(["a", trap], "t2", envelope_first=True)
    assert guess_next_cursor(first, Cursor()) == Cursor(token="evil")  # fooled...
    harness = ScriptedHarness({None: first, "evil": page(["WRONG"]), "t2": page(["c"])}, clock)
    # ...but the decoded page wins: "evil" is never yielded, "t2" is.
    assert collect(harness, clock) == [(None, ["a", "x"]), ("t2", ["c"])]
    assert "t2" in harness.fetched


def test_a_malformed_page_is_fetched_again_and_counted():
    clock = FakeClock()
    good = page(["b"], None)
    harness = ScriptedHarness({None: page(["a"], "t2"), "t2": [good[:20], good]}, clock)
    assert collect(harness, clock) == [(None, ["a"]), ("t2", ["b"])]
    assert harness.retries["malformed_body"] == 1
    assert clock.slept == [0.25]  # full jitter: half of the first 0.5 s ceiling


def test_malformed_through_every_retry_fails_the_run():
    clock = FakeClock()
    harness = ScriptedHarness({None: b"<html>oops</html>"}, clock)
    with pytest.raises(HarnessUnavailable, match="not the expected JSON"):
        collect(harness, clock)


def test_fetch_errors_surface_after_the_pages_before_them():
    clock = FakeClock()
    harness = ScriptedHarness({None: page(["a"], "t2"), "t2": HarnessUnavailable("down")}, clock)
    pages = PrefetchingPages(harness, QUERY, Cursor(), Deadline(clock, 60, 0))
    seen = []
    with pytest.raises(HarnessUnavailable):
        for fetched in pages:
            seen.append(fetched.cursor.token)
    assert seen == [None]


def test_no_time_left_stops_before_a_request():
    clock = FakeClock()
    harness = ScriptedHarness({None: page(["a"])}, clock)
    with pytest.raises(DeadlineReached):
        collect(harness, clock, budget=0)
    assert harness.fetched == []


@pytest.mark.parametrize(
    ("body", "sources"),
    [
        (
            b'{"status":"SUCCESS","data":{"content":[{"a":1},{"b":"x\\ny"}]}}',
            ['{"a":1}', '{"b":"x\\ny"}'],
        ),
        # Harness's own spacing is kept: these are its bytes, not a re-encoding.
        (
            b'{"data" : {"content" : [ {"a": 1} , {"c":[1,2]} ] }, "status":"SUCCESS"}',
            ['{"a": 1}', '{"c":[1,2]}'],
        ),
        # An element spread over lines cannot be a JSONL line: None (re-encoded).
        (b'{"data":{"content":[{"a":1},\n{"b":\n2}]}}', ['{"a":1}', None]),
        ('{"data":{"content":[{"n":"Łódź €"}]}}'.encode(), ['{"n":"Łódź €"}']),
        (b'{"data":{"content":[]}}', []),
        (b'{"data":null}', []),
    ],
)
def test_decode_with_sources(body, sources):
    value, found = decode_with_sources(body)
    assert value == json.loads(body)
    assert found == sources


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":{"content":[{"a":1}',
        b'{"data":{"content":[1,]}}',
        b'{"a":1} x',
        b"",
        b'{"a" 1}',
        b'{"data":{"content":[{"a":1} {"b":2}]}}',
        b"\xff",
    ],
)
def test_decode_with_sources_rejects_what_is_not_one_document(body):
    with pytest.raises(ValueError):
        decode_with_sources(body)
