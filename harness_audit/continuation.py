"""Continuation: a run that stopped at its deadline starts the next one at once.

When ``needed()``, the run publishes one message (``reason=continue`` and the window's
bounds) to its own TRIGGER_TOPIC after its checkpoint is saved and its lease released, so the
run it starts resumes from the checkpoint. Publishing is one ``POST /v1/{topic}:publish``
through google-auth's AuthorizedSession (plain HTTP to ``PUBSUB_EMULATOR_HOST`` when set),
retried by google-api-core's Retry on 408/429/5xx and connection errors: at most
MAX_ATTEMPTS, within PUBLISH_SECONDS and the function's timeout. A failure is a warning; the
next scheduled trigger continues the window.
"""

import base64
import logging
import os
from collections.abc import Callable, Mapping

import google.auth
import requests
from google.api_core.exceptions import RetryError
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import AuthorizedSession

from harness_audit.clock import Clock, iso
from harness_audit.config import FUNCTION_TIMEOUT_LIMIT
from harness_audit.logs import log
from harness_audit.run import Stopped

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
PUBSUB_API = "https://pubsub.googleapis.com"
EMULATOR_HOST = "PUBSUB_EMULATOR_HOST"
ATTEMPT_TIMEOUT_SECONDS = 10.0
# Left of the function's timeout after the last attempt could end.
TIMEOUT_MARGIN_SECONDS = 5.0
MIN_ATTEMPT_SECONDS = 1.0  # an attempt with less time than this is not started
PUBLISH_SECONDS = 30.0  # all attempts together: an outage is the next trigger's to absorb
MAX_ATTEMPTS = 3
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

PUBLISHED = "published"  # the summary's ``continuation`` field
NOT_NEEDED, FAILED, NOT_CONFIGURED = "not needed", "failed", "not configured"
REASON = "continue"


class PublishFailed(Exception):
    """The continuation message could not be published; the message says why."""


class _Transient(Exception):  # a retryable answer from Pub/Sub
    pass


# Pub/Sub's own clients back off from 0.1 s, four times longer each time.
PUBLISH_RETRY = Retry(
    predicate=if_exception_type(_Transient, requests.ConnectionError, requests.Timeout),
    initial=0.1,
    maximum=4.0,
    multiplier=4.0,
)


def needed(summary) -> bool:
    """Only a run stopped by its deadline whose saved position moved continues: pages read
    are not progress (a cursor that never ends reads pages forever)."""
    return summary.stopped is Stopped.DEADLINE and summary.position_moved


def next_run_text(status: str) -> str:
    """How an unfinished window goes on, for the run's final log line."""
    return {
        PUBLISHED: "the window continues in a run started now",
        NOT_CONFIGURED: "the window continues at the next trigger (TRIGGER_TOPIC is not set)",
        FAILED: "the window continues at the next trigger (the continuation was not published)",
    }.get(status, "the window continues at the next trigger")


class Continuation:
    """Decides whether a finished run continues, and publishes the message if so."""

    def __init__(self, topic: str | None, clock: Clock, publisher=None):
        """``publisher``: anything with PubSubPublisher's ``publish``."""
        self.topic = topic
        if publisher is None and topic is not None:
            publisher = PubSubPublisher(topic, clock)
        self._publisher = publisher

    def after(self, summary, started: float) -> str:
        """Publish if ``summary`` calls for it, before the function's timeout counted from
        ``started`` (the clock's monotonic scale); the summary's ``continuation``. Never raises."""
        if not needed(summary):
            return NOT_NEEDED
        if self._publisher is None:
            return NOT_CONFIGURED
        deadline = started + FUNCTION_TIMEOUT_LIMIT - TIMEOUT_MARGIN_SECONDS
        window = {"window_start": summary.window_start_ms, "window_end": summary.window_end_ms}
        attributes = {"reason": REASON} | {name: iso(ms) for name, ms in window.items()}
        try:
            message_id = self._publisher.publish(attributes, deadline)
        except Exception as failure:  # a defect here must not fail a run that succeeded
            cause = failure if isinstance(failure, PublishFailed) else repr(failure)[:300]
            log(
                logging.WARNING,
                f"could not publish the continuation: {cause}. The run succeeded; the next "
                "scheduled trigger continues the window",
                topic=self.topic,
            )
            return FAILED
        log(logging.INFO, "published a continuation", topic=self.topic, message_id=message_id)
        return PUBLISHED


class PubSubPublisher:
    """``POST /v1/{topic}:publish`` through google-auth, or plainly to an emulator."""

    def __init__(
        self,
        topic: str,
        clock: Clock,
        *,
        environ: Mapping[str, str] = os.environ,
        credentials_loader: Callable = google.auth.default,
        authorized_session: Callable = AuthorizedSession,
        plain_session: Callable = requests.Session,
        retry: Retry = PUBLISH_RETRY,
    ):
        self.topic = topic
        self._clock = clock
        self.emulator = environ.get(EMULATOR_HOST, "").strip() or None
        base = f"http://{self.emulator}" if self.emulator else PUBSUB_API
        self.url = f"{base}/v1/{topic}:publish"
        self._credentials_loader = credentials_loader
        self._authorized_session = authorized_session
        self._plain_session = plain_session
        self._retry = retry
        self._session = None

    def _get_session(self):
        if self._session is None and self.emulator:
            self._session = self._plain_session()
        elif self._session is None:
            try:
                credentials, _ = self._credentials_loader(scopes=[PUBSUB_SCOPE])
            except GoogleAuthError as exc:
                raise PublishFailed(f"no Google credentials for Pub/Sub ({exc})") from None
            self._session = self._authorized_session(credentials)
        return self._session

    def publish(self, attributes: Mapping[str, str], deadline: float) -> str:
        """The message's id; PublishFailed when it cannot be published by ``deadline`` (on
        the clock's monotonic scale)."""
        session = self._get_session()
        data = base64.b64encode(b"{}").decode()
        body = {"messages": [{"data": data, "attributes": dict(attributes)}]}
        tried: list[str] = []  # each attempt's failure
        deadline = min(deadline, self._clock.monotonic() + PUBLISH_SECONDS)

        def attempt() -> str:
            remaining = deadline - self._clock.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS or len(tried) == MAX_ATTEMPTS:
                last = tried[-1] if tried else "no time was left before the function's timeout"
                raise PublishFailed(f"{last} (after {len(tried)} attempt(s))")
            tried.append(f"no answer from {self.url}")
            try:
                response = session.post(
                    self.url, json=body, timeout=min(ATTEMPT_TIMEOUT_SECONDS, remaining)
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                tried[-1] = f"{type(exc).__name__} from {self.url}"
                raise
            except GoogleAuthError as exc:  # token refresh failed
                raise PublishFailed(f"Google credentials were refused ({exc})") from None
            return _message_id(response, self.url, tried)

        retry = self._retry.with_timeout(max(0.0, deadline - self._clock.monotonic()))
        try:
            return retry(attempt)()
        except RetryError:
            raise PublishFailed(f"{tried[-1]} (after {len(tried)} attempt(s))") from None


def _message_id(response, url: str, tried: list[str]) -> str:
    """The published message's id; _Transient or PublishFailed for any other answer."""
    if response.status_code == 200:
        try:
            return response.json()["messageIds"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PublishFailed(
                f"Pub/Sub answered 200 without a message id: {response.text[:200]}"
            ) from None
    tried[-1] = f"HTTP {response.status_code} from {url}: {response.text[:300]}"
    if response.status_code in RETRYABLE_STATUS:
        raise _Transient(tried[-1])
    hint = {
        403: ". Grant the function's service account roles/pubsub.publisher on TRIGGER_TOPIC",
        404: ". TRIGGER_TOPIC names a topic that does not exist",
    }
    raise PublishFailed(tried[-1] + hint.get(response.status_code, ""))
