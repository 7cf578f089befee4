"""Continuation: a run that stopped at its deadline starts the next one at once.

A backlog longer than one run (a first run with a long START_MINUTES_BACK, an outage, a
burst) would otherwise drain at one run per scheduled trigger. When a run stops at its
deadline with its window unfinished after reading at least one page, it publishes one
message to its own trigger topic (TRIGGER_TOPIC), and the run that message starts resumes
from the checkpoint seconds later.

It is published last, after the checkpoint is written and the lease released, so the run
it starts never finds the lease held. A run that completes its window, fails, finds the
lease held or read no page publishes nothing: every message is paid for by progress, so
no loop can form. The message carries ``reason=continue`` and the window's bounds as
attributes, for people reading logs; the checkpoint, not the message, says where to resume.

Publishing uses the Pub/Sub REST API (no extra client library), bounded: ten seconds per
attempt, at most three attempts, never past the function's timeout. When it fails, the
run still succeeds and the next scheduled trigger continues the window.
``PUBSUB_EMULATOR_HOST`` (``host:port``) sends it, unauthenticated, to a local emulator,
as Google's client libraries do.
"""

import base64
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

import google.auth
import requests
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
MAX_ATTEMPTS = 3  # one try and two retries
BACKOFF_SECONDS = 0.5  # before the second attempt; doubled before the third
# Left of the function's timeout after the last attempt could end.
TIMEOUT_MARGIN_SECONDS = 5.0
# An attempt with less time than this is not started.
MIN_ATTEMPT_SECONDS = 1.0
# Pub/Sub's retryable answers: RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED...
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# The summary's ``continuation`` field.
PUBLISHED = "published"
NOT_NEEDED = "not needed"
FAILED = "failed"
NOT_CONFIGURED = "not configured"

REASON = "continue"


class PublishFailed(Exception):
    """The continuation message could not be published; the message says why."""


class Publisher(Protocol):
    def publish(self, attributes: Mapping[str, str], deadline: float) -> str:
        """Publish one message; return its id. ``deadline`` is on the clock's monotonic
        scale. PublishFailed when it cannot be done by then."""


def needed(summary) -> bool:
    """Only a run stopped by its deadline whose saved position moved continues: pages read
    are not progress (a cursor that never ends reads pages forever)."""
    return summary.stopped is Stopped.DEADLINE and summary.position_moved


def attributes_for(summary) -> dict[str, str]:
    return {
        "reason": REASON,
        "window_start": iso(summary.window_start_ms),
        "window_end": iso(summary.window_end_ms),
    }


def next_run_text(status: str) -> str:
    """How an unfinished window goes on, for the run's final log line."""
    if status == PUBLISHED:
        return "the window continues in a run started now"
    if status == NOT_CONFIGURED:
        return "the window continues at the next trigger (TRIGGER_TOPIC is not set)"
    if status == FAILED:
        return "the window continues at the next trigger (the continuation was not published)"
    return "the window continues at the next trigger"


class Continuation:
    """Decides whether a finished run continues, and publishes the message if so."""

    def __init__(self, topic: str | None, clock: Clock, publisher: Publisher | None = None):
        self.topic = topic
        self._clock = clock
        if publisher is None and topic is not None:
            publisher = PubSubPublisher(topic, clock)
        self._publisher = publisher

    def after(self, summary, started: float) -> str:
        """Publish if ``summary`` calls for it; return the summary's ``continuation`` value.

        ``started`` is the invocation's start on the clock's monotonic scale: publishing
        ends before the function's timeout counted from it. Never raises.
        """
        if not needed(summary):
            return NOT_NEEDED
        if self._publisher is None:
            return NOT_CONFIGURED
        deadline = started + FUNCTION_TIMEOUT_LIMIT - TIMEOUT_MARGIN_SECONDS
        try:
            message_id = self._publisher.publish(attributes_for(summary), deadline)
        except PublishFailed as failure:
            log(
                logging.WARNING,
                f"could not publish the continuation: {failure}. The run succeeded; the next "
                "scheduled trigger continues the window",
                topic=self.topic,
            )
            return FAILED
        except Exception as unexpected:  # a defect here must not fail a run that succeeded
            log(
                logging.WARNING,
                f"could not publish the continuation: unexpected {type(unexpected).__name__}: "
                f"{str(unexpected)[:300]}. The run succeeded; the next scheduled trigger "
                "continues the window",
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
    ):
        self.topic = topic
        self._clock = clock
        emulator = environ.get(EMULATOR_HOST, "").strip()
        self.emulator = emulator or None
        base = f"http://{emulator}" if emulator else PUBSUB_API
        self.url = f"{base}/v1/{topic}:publish"
        self._credentials_loader = credentials_loader
        self._authorized_session = authorized_session
        self._plain_session = plain_session
        self._session = None
        self._lock = threading.Lock()

    def _get_session(self):
        with self._lock:
            if self._session is None:
                if self.emulator:
                    self._session = self._plain_session()
                else:
                    try:
                        credentials, _ = self._credentials_loader(scopes=[PUBSUB_SCOPE])
                    except GoogleAuthError as exc:
                        raise PublishFailed(f"no Google credentials for Pub/Sub ({exc})") from None
                    self._session = self._authorized_session(credentials)
            return self._session

    @staticmethod
    def body(attributes: Mapping[str, str]) -> dict:
        data = base64.b64encode(b"{}").decode()
        return {"messages": [{"data": data, "attributes": dict(attributes)}]}

    def publish(self, attributes: Mapping[str, str], deadline: float) -> str:
        session = self._get_session()
        body = self.body(attributes)
        last = "no time was left before the function's timeout"
        attempts = 0
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                pause = BACKOFF_SECONDS * 2 ** (attempt - 1)
                if self._remaining(deadline) < pause + MIN_ATTEMPT_SECONDS:
                    break
                self._clock.sleep(pause)
            remaining = self._remaining(deadline)
            if remaining < MIN_ATTEMPT_SECONDS:
                break
            attempts += 1
            try:
                response = session.post(
                    self.url, json=body, timeout=min(ATTEMPT_TIMEOUT_SECONDS, remaining)
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__} from {self.url}"
                continue
            except GoogleAuthError as exc:  # token refresh failed
                raise PublishFailed(f"Google credentials were refused ({exc})") from None
            if response.status_code == 200:
                try:
                    return response.json()["messageIds"][0]
                except (ValueError, KeyError, IndexError, TypeError):
                    raise PublishFailed(
                        f"Pub/Sub answered 200 without a message id: {response.text[:200]}"
                    ) from None
            last = f"HTTP {response.status_code} from {self.url}: {response.text[:300]}"
            if response.status_code not in RETRYABLE_STATUS:
                raise PublishFailed(last + _hint(response.status_code))
        raise PublishFailed(f"{last} (after {attempts} attempt(s))" if attempts else last)

    def _remaining(self, deadline: float) -> float:
        return deadline - self._clock.monotonic()


def _hint(status: int) -> str:
    if status == 403:
        return ". Grant the function's service account roles/pubsub.publisher on TRIGGER_TOPIC"
    if status == 404:
        return ". TRIGGER_TOPIC names a topic that does not exist"
    return ""
