"""The continuation publisher: when it publishes, where, how, and within what time."""

import base64
import logging

import pytest
import requests
from google.auth.exceptions import DefaultCredentialsError, RefreshError
from google.oauth2.credentials import Credentials

from devtools.fake_clock import FakeClock
from devtools.fake_pubsub import FakePubSub
from harness_audit import continuation
from harness_audit.continuation import (
    ATTEMPT_TIMEOUT_SECONDS,
    PUBLISH_RETRY,
    PUBLISH_SECONDS,
    PUBSUB_SCOPE,
    Continuation,
    PublishFailed,
)
from harness_audit.run import RunSummary, Stopped

TOPIC = "projects/my-project/topics/harness-audit-trigger"
WINDOW = (1_749_560_400_000, 1_749_564_000_000)


class Response:
    def __init__(self, status: int, body=None, text: str = ""):
        self.status_code = status
        self._body = body
        self.text = text

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


class Session:
    """Answers each post with the next of ``answers`` (a Response or an exception)."""

    def __init__(self, *answers, clock: FakeClock | None = None):
        self.answers = list(answers)
        self.posts: list[dict] = []
        self.clock = clock

    def post(self, url, json=None, timeout=None):
        self.posts.append({"url": url, "json": json, "timeout": timeout})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if self.clock:
            self.clock.advance(timeout)  # each answer takes all of its time
        if isinstance(answer, BaseException):
            raise answer
        return answer


OK = Response(200, {"messageIds": ["4242"]})
# google-api-core's Retry sleeps for real: the tests keep its rule, not its pauses.
NO_WAIT = PUBLISH_RETRY.with_delay(initial=0.0, maximum=0.0)


def publisher(session, *, environ=None, clock=None, loader=None):
    made = {}

    def authorized(credentials):
        made["credentials"] = credentials
        return session

    def load(scopes):
        made["scopes"] = scopes
        return "the-credentials", "my-project"

    result = Continuation(
        TOPIC,
        clock or FakeClock(),
        environ=environ if environ is not None else {},
        credentials_loader=loader or load,
        authorized_session=authorized,
        plain_session=lambda: made.setdefault("plain", session),
        retry=NO_WAIT,
    )
    return result, made


def deadline(clock: FakeClock, seconds: float = 500.0) -> float:
    return clock.monotonic() + seconds


def summary(**changes) -> RunSummary:
    values = {
        "window_start_ms": WINDOW[0],
        "window_end_ms": WINDOW[1],
        "stopped": Stopped.DEADLINE,
        "position_moved": True,
        "pages": 3,
    }
    return RunSummary(**{**values, **changes})


class Recorder(Continuation):
    """A continuation whose publish records its arguments, then fails with ``error``."""

    def __init__(self, topic, clock, error: Exception | None = None):
        super().__init__(topic, clock)
        self.error = error
        self.calls = []

    def publish(self, attributes, deadline):
        self.calls.append((attributes, deadline))
        if self.error:
            raise self.error
        return "77"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),
        # Pages read without moving the saved position (a cursor that never ends).
        ({"position_moved": False}, False),
        ({"stopped": Stopped.COMPLETE}, False),
        ({"stopped": Stopped.FAILED}, False),
        ({"stopped": Stopped.SKIPPED}, False),
        ({"stopped": None}, False),
    ],
)
def test_only_a_run_stopped_by_its_deadline_after_progress_continues(changes, expected):
    status = Recorder(TOPIC, FakeClock()).after(summary(**changes), 0)
    assert status == ("published" if expected else "not needed")


def test_publishes_to_pubsub_with_google_credentials():
    clock = FakeClock()
    session = Session(OK)
    pub, made = publisher(session, clock=clock)
    assert pub.url == f"https://pubsub.googleapis.com/v1/{TOPIC}:publish"
    message_id = pub.publish({"reason": "continue"}, deadline(clock))
    assert message_id == "4242"
    assert made["scopes"] == [PUBSUB_SCOPE]
    assert made["credentials"] == "the-credentials"
    assert "plain" not in made
    [post] = session.posts
    assert post["url"] == pub.url
    assert post["timeout"] == ATTEMPT_TIMEOUT_SECONDS
    assert post["json"] == {"messages": [{"data": "e30=", "attributes": {"reason": "continue"}}]}
    assert base64.b64decode(post["json"]["messages"][0]["data"]) == b"{}"


def test_the_emulator_is_plain_http_without_credentials():
    session = Session(OK)

    def no_credentials(scopes):
        raise AssertionError("credentials loaded for the emulator")

    pub, made = publisher(
        session, environ={"PUBSUB_EMULATOR_HOST": "localhost:8085"}, loader=no_credentials
    )
    assert pub.url == f"http://localhost:8085/v1/{TOPIC}:publish"
    assert pub.publish({}, deadline(FakeClock())) == "4242"
    assert made["plain"] is session and "credentials" not in made


def test_the_session_is_made_once_and_reused():
    session = Session(OK, OK)
    calls = []
    pub, _ = publisher(session, loader=lambda scopes: calls.append(scopes) or ("c", "p"))
    clock = FakeClock()
    pub.publish({}, deadline(clock))
    pub.publish({}, deadline(clock))
    assert len(calls) == 1 and len(session.posts) == 2


def test_bearer_token_reaches_the_endpoint_through_authorized_session(monkeypatch):
    """The real AuthorizedSession, against a local endpoint standing in for Pub/Sub."""
    with FakePubSub() as fake:
        monkeypatch.setattr(continuation, "PUBSUB_API", f"http://{fake.host}")
        pub = Continuation(
            TOPIC,
            FakeClock(),
            environ={},
            credentials_loader=lambda scopes: (Credentials(token="t0ken"), "my-project"),
        )
        message_id = pub.publish({"reason": "continue"}, deadline(FakeClock()))
        [message] = fake.published
    assert message.message_id == message_id
    assert message.authorization == "Bearer t0ken"
    assert message.attributes == {"reason": "continue"} and message.data == b"{}"


TRANSIENT = [
    Response(500, text="internal"),
    Response(503, text="unavailable"),
    Response(429, text="resource exhausted"),
    requests.ConnectionError("refused"),
    requests.Timeout("read timed out"),
]


@pytest.mark.parametrize("failure", TRANSIENT)
def test_transient_failures_are_retried_until_one_succeeds(failure):
    session = Session(failure, failure, OK)
    pub, _ = publisher(session)
    assert pub.publish({}, deadline(FakeClock())) == "4242"
    assert len(session.posts) == 3


@pytest.mark.parametrize("failure", TRANSIENT)
def test_transient_failures_are_tried_three_times_at_most(failure):
    session = Session(failure)  # fails forever
    pub, _ = publisher(session)
    with pytest.raises(PublishFailed, match=r"after 3 attempt\(s\)"):
        pub.publish({}, deadline(FakeClock()))
    assert len(session.posts) == 3


@pytest.mark.parametrize(("seconds", "timeouts"), [(15.0, [10.0, 5.0]), (500.0, [10.0] * 3)])
def test_attempts_stop_at_the_deadline_and_the_publish_bound(seconds, timeouts):
    clock = FakeClock()
    session = Session(requests.Timeout("slow"), clock=clock)  # each attempt takes its timeout
    pub, _ = publisher(session, clock=clock)
    started = clock.monotonic()
    with pytest.raises(PublishFailed, match=rf"after {len(timeouts)} attempt\(s\)"):
        pub.publish({}, deadline(clock, seconds))
    assert clock.monotonic() - started <= min(seconds, PUBLISH_SECONDS)
    assert [post["timeout"] for post in session.posts] == timeouts


def test_retried_answers_are_named_in_the_failure():
    clock = FakeClock()
    pub, _ = publisher(Session(Response(503, text="unavailable"), clock=clock), clock=clock)
    with pytest.raises(PublishFailed, match=r"HTTP 503 from http.*: unavailable \(after 3"):
        pub.publish({}, deadline(clock))


def test_a_retry_that_succeeds_publishes():
    session = Session(Response(502), requests.ConnectionError("reset"), OK)
    pub, _ = publisher(session)
    assert pub.publish({}, deadline(FakeClock())) == "4242"
    assert len(session.posts) == 3


@pytest.mark.parametrize(
    ("status", "hint"),
    [(403, "roles/pubsub.publisher"), (404, "does not exist"), (400, "HTTP 400")],
)
def test_a_refusal_is_not_retried(status, hint):
    session = Session(Response(status, text="no"))
    pub, _ = publisher(session)
    with pytest.raises(PublishFailed, match=hint):
        pub.publish({}, deadline(FakeClock()))
    assert len(session.posts) == 1


def test_a_200_without_a_message_id_fails():
    pub, _ = publisher(Session(Response(200, {"nothing": []}, text="{}")))
    with pytest.raises(PublishFailed, match="without a message id"):
        pub.publish({}, deadline(FakeClock()))


def test_missing_or_refused_credentials_fail_the_publish_only():
    def missing(scopes):
        raise DefaultCredentialsError("none")

    pub, _ = publisher(Session(), loader=missing)
    with pytest.raises(PublishFailed, match="no Google credentials"):
        pub.publish({}, deadline(FakeClock()))
    pub, _ = publisher(Session(RefreshError("invalid_grant")))
    with pytest.raises(PublishFailed, match="refused"):
        pub.publish({}, deadline(FakeClock()))


def test_attempts_never_run_past_the_deadline():
    clock = FakeClock()
    session = Session(requests.Timeout("slow"), OK, clock=clock)
    pub, _ = publisher(session, clock=clock)
    # 4 s left: the first attempt gets 4 s, not 10; no time is left for a second one.
    with pytest.raises(PublishFailed, match=r"Timeout from .* \(after 1 attempt"):
        pub.publish({}, deadline(clock, 4.0))
    assert session.posts[0]["timeout"] == 4.0
    assert len(session.posts) == 1


def test_no_time_left_means_no_attempt():
    clock = FakeClock()
    session = Session()
    pub, _ = publisher(session, clock=clock)
    with pytest.raises(PublishFailed, match="no time was left"):
        pub.publish({}, deadline(clock, 0.5))
    assert session.posts == []


def test_continuation_publishes_the_window_bounds_within_the_function_timeout():
    clock = FakeClock()
    recorder = Recorder(TOPIC, clock)
    started = clock.monotonic()
    clock.advance(60)
    assert recorder.after(summary(), started) == "published"
    [(attributes, until)] = recorder.calls
    assert attributes == {
        "reason": "continue",
        "window_start": "2025-06-10T13:00:00.000Z",
        "window_end": "2025-06-10T14:00:00.000Z",
    }
    assert until == started + 540 - 5


def test_continuation_statuses():
    clock = FakeClock()
    recorder = Recorder(TOPIC, clock)
    assert recorder.after(summary(position_moved=False), 0) == "not needed"
    assert Recorder(None, clock).after(summary(), 0) == "not configured"
    assert recorder.calls == []
    failing = Recorder(TOPIC, clock, PublishFailed("HTTP 503"))
    assert failing.after(summary(), clock.monotonic()) == "failed"
    broken = Recorder(TOPIC, clock, RuntimeError("a defect"))
    assert broken.after(summary(), clock.monotonic()) == "failed"


def test_a_failed_publish_logs_a_warning(caplog):
    clock = FakeClock()
    failing = Recorder(TOPIC, clock, PublishFailed("HTTP 503 from x"))
    with caplog.at_level(logging.INFO, logger="harness_audit"):
        failing.after(summary(), clock.monotonic())
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "HTTP 503 from x" in record.getMessage()
    assert "next scheduled trigger" in record.getMessage()
