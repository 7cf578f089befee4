"""A run stopped by its deadline publishes one message to TRIGGER_TOPIC, after its checkpoint
is saved and its lease released, so that the next run starts at once. A failed publish is a
warning: the next scheduled trigger continues the window."""

import contextlib
import logging
import os
from collections.abc import Callable, Mapping

import google.auth
import requests
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import AuthorizedSession

from harness_audit.clock import Clock, iso
from harness_audit.config import FUNCTION_TIMEOUT_LIMIT
from harness_audit.logs import log
from harness_audit.run import Stopped

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
PUBSUB_API = "https://pubsub.googleapis.com"
ATTEMPT_TIMEOUT_SECONDS = 10.0
TIMEOUT_MARGIN_SECONDS = 5.0  # left of the function's timeout after the last attempt could end
MIN_ATTEMPT_SECONDS = 1.0  # an attempt with less time than this is not started
PUBLISH_SECONDS = 30.0  # all attempts together: an outage is the next trigger's to absorb
MAX_ATTEMPTS = 3
NO_TIME_LEFT = "no time was left before the function's timeout"
_HINTS = {
    403: ". Grant the function's service account roles/pubsub.publisher on TRIGGER_TOPIC",
    404: ". TRIGGER_TOPIC names a topic that does not exist",
}
NEXT_RUN = {  # how an unfinished window goes on, by the run's ``continuation``
    "published": "the window continues in a run started now",
    "not configured": "the window continues at the next trigger (TRIGGER_TOPIC is not set)",
    "failed": "the window continues at the next trigger (the continuation was not published)",
    "not needed": "the window continues at the next trigger",
}


class PublishFailed(Exception): ...  # the message could not be published; says why


class _Transient(Exception): ...  # no answer, or a retryable one, from Pub/Sub


# Pub/Sub's own clients back off from 0.1 s, four times longer each time. Its 120 s timeout
# never ends the retry first: publish() counts attempts and time on the injected clock.
PUBLISH_RETRY = Retry(if_exception_type(_Transient), initial=0.1, maximum=4.0, multiplier=4.0)


class Continuation:
    """``POST /v1/{topic}:publish`` through google-auth, or plainly to PUBSUB_EMULATOR_HOST."""

    def __init__(
        self,
        topic: str | None,
        clock: Clock,
        *,
        environ: Mapping[str, str] = os.environ,
        credentials_loader: Callable = google.auth.default,
        authorized_session: Callable = AuthorizedSession,
        plain_session: Callable = requests.Session,
        retry: Retry = PUBLISH_RETRY,
    ):
        self.topic, self._clock, self._retry, self._session = topic, clock, retry, None
        self.emulator = environ.get("PUBSUB_EMULATOR_HOST", "").strip()
        base = f"http://{self.emulator}" if self.emulator else PUBSUB_API
        self.url = f"{base}/v1/{topic}:publish"
        self._sessions = (credentials_loader, authorized_session, plain_session)

    def after(self, summary, started: float) -> str:
        """Publish if ``summary`` calls for it, before the function's timeout counted from
        ``started`` (monotonic); the summary's ``continuation``. Never raises."""
        # Only a saved position that moved is progress: a cursor that never ends reads pages.
        if summary.stopped is not Stopped.DEADLINE or not summary.position_moved:
            return "not needed"
        if self.topic is None:
            return "not configured"
        window = {"window_start": summary.window_start_ms, "window_end": summary.window_end_ms}
        attributes = {"reason": "continue"} | {name: iso(ms) for name, ms in window.items()}
        deadline = started + FUNCTION_TIMEOUT_LIMIT - TIMEOUT_MARGIN_SECONDS
        try:
            message_id = self.publish(attributes, deadline)
        except Exception as failure:  # a defect here must not fail a run that succeeded
            cause = failure if isinstance(failure, PublishFailed) else repr(failure)[:300]
            log(
                logging.WARNING,
                f"could not publish the continuation: {cause}. The run succeeded; the next "
                "scheduled trigger continues the window",
                topic=self.topic,
            )
            return "failed"
        log(logging.INFO, "published a continuation", topic=self.topic, message_id=message_id)
        return "published"

    def _open_session(self):
        credentials_loader, authorized_session, plain_session = self._sessions
        if self.emulator:
            return plain_session()
        try:
            credentials, _ = credentials_loader(scopes=[PUBSUB_SCOPE])
        except GoogleAuthError as exc:
            raise PublishFailed(f"no Google credentials for Pub/Sub ({exc})") from None
        return authorized_session(credentials)

    def publish(self, attributes: Mapping[str, str], deadline: float) -> str:
        """The message's id; PublishFailed when it cannot be published by ``deadline``
        (monotonic), within PUBLISH_SECONDS and MAX_ATTEMPTS."""
        self._session = self._session or self._open_session()
        body = {"messages": [{"data": "e30=", "attributes": dict(attributes)}]}  # b"{}"
        deadline = min(deadline, self._clock.monotonic() + PUBLISH_SECONDS)
        failures: list[_Transient] = []  # the retry's on_error: every retried attempt

        def attempt() -> str:
            remaining = deadline - self._clock.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS or len(failures) == MAX_ATTEMPTS:
                last = failures[-1] if failures else NO_TIME_LEFT
                raise PublishFailed(f"{last} (after {len(failures)} attempt(s))")
            timeout = min(ATTEMPT_TIMEOUT_SECONDS, remaining)
            try:
                response = self._session.post(self.url, json=body, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Transient(f"{type(exc).__name__} from {self.url}") from exc
            except GoogleAuthError as exc:  # token refresh failed
                raise PublishFailed(f"Google credentials were refused ({exc})") from None
            status, text = response.status_code, response.text[:300]
            if status == 200:
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                    return response.json()["messageIds"][0]
                raise PublishFailed(f"Pub/Sub answered 200 without a message id: {text}")
            failure = f"HTTP {status} from {self.url}: {text}"
            if status in (408, 429, 500, 502, 503, 504):
                raise _Transient(failure)
            raise PublishFailed(failure + _HINTS.get(status, ""))

        return self._retry(attempt, on_error=failures.append)()
