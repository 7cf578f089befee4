"""A stand-in for the Pub/Sub emulator's publish endpoint, for PUBSUB_EMULATOR_HOST.

It answers ``POST /v1/projects/P/topics/T:publish`` as Pub/Sub does and queues each
message; ``take()`` hands the queued messages to whoever delivers them to the function,
each as the CloudEvent Eventarc would send (``Published.event()``). ``fail_with`` makes it
answer an error (a number of times, or until told otherwise), to test a failing publish.
"""

import base64
import binascii
import itertools
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from devtools.cloudevents import pubsub_event
from devtools.loopback import LoopbackService

_PUBLISH_PATH = re.compile(r"/v1/projects/([^/]+)/topics/([^/:]+):publish")


@dataclass(frozen=True)
class Published:
    project: str
    topic: str
    data: bytes
    attributes: dict[str, str]
    message_id: str
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def topic_name(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    def event(self) -> tuple[dict, bytes]:
        """(headers, body) of the CloudEvent that delivers this message."""
        return pubsub_event(
            self.project, self.topic, self.data, self.attributes, message_id=self.message_id
        )


class FakePubSub(LoopbackService):
    """On a free loopback port; ``host`` is the value for PUBSUB_EMULATOR_HOST."""

    def __init__(self):
        self.published: list[Published] = []  # every message accepted, in order
        self.attempts = 0  # every publish request, accepted or not
        self._queue: deque[Published] = deque()
        self._failures: deque[int] = deque()
        self._fail_always: int | None = None
        self._ids = itertools.count(1_000_000_000_001)
        self._lock = threading.Lock()

    def fail_with(self, status: int, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` requests (None: to every request)."""
        with self._lock:
            if times is None:
                self._fail_always = status
            else:
                self._failures.extend([status] * times)

    def take(self) -> list[Published]:
        """The messages not yet delivered, oldest first; they count as delivered now."""
        with self._lock:
            taken = list(self._queue)
            self._queue.clear()
            return taken

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict]:
        with self._lock:
            self.attempts += 1
            if self._failures:
                return self._failures.popleft(), _error("injected failure")
            if self._fail_always is not None:
                return self._fail_always, _error("injected failure")
        match = _PUBLISH_PATH.fullmatch(path)
        if not match:
            return 404, _error(f"no such endpoint: {path}")
        try:
            messages = json.loads(raw)["messages"]
            decoded = [
                (base64.b64decode(m.get("data", ""), validate=True), m.get("attributes", {}))
                for m in messages
            ]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            return 400, _error("invalid publish body")
        if not decoded:
            return 400, _error("no messages")
        ids = []
        with self._lock:
            for data, attributes in decoded:
                message = Published(
                    match[1],
                    match[2],
                    data,
                    dict(attributes),
                    str(next(self._ids)),
                    headers.get("authorization"),
                    headers,
                )
                self.published.append(message)
                self._queue.append(message)
                ids.append(message.message_id)
        return 200, {"messageIds": ids}

    def start(self) -> "FakePubSub":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer = fake._handle(self.path, headers, raw)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.serve(Handler)
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _error(message: str) -> dict:
    return {"error": {"message": message}}
