"""A local stand-in of the Chronicle Feeds API (v1, REST), for SECOPS_API_ENDPOINT.

It answers the calls ``harness_audit.feed`` makes, the way the API's HTTP rules in Google's
client say they are sent (method, path, body), and checks each body against the client's own
message types (``google.cloud.chronicle_v1.types``): an unknown field, an output-only field
sent on create, an update mask naming an unchanged display name, or a path the API has not
are answered 400/404 as Google answers them. Every request is kept in ``requests``; feeds live
in ``feeds`` (JSON, as the API returns them) for a test to look at or to change (a FAILED
state, a failure message). ``fail_with`` answers the next requests with an error status.
"""

import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from google.cloud.chronicle_v1 import types
from google.protobuf import field_mask_pb2, json_format

from devtools.loopback import LoopbackService

_INSTANCE = r"projects/[^/]+/locations/[^/]+/instances/[^/]+"
_FEED = _INSTANCE + r"/feeds/[^/:]+"
_OUTPUT_ONLY = ("name", "uid", "state", "failureMsg", "readOnly", "lastFeedInitiationTime")
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 500: "INTERNAL"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | None
    authorization: str | None


class _Rejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _parse(body: dict | None, message_type) -> object:
    """The body as the client's message type: unknown fields are the client's bug, a 400."""
    try:
        return json_format.ParseDict(body or {}, message_type.pb(message_type()))
    except json_format.ParseError as exc:
        raise _Rejected(400, f"invalid {message_type.__name__}: {exc}") from None


def _as_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=False)


class FakeFeeds(LoopbackService):
    """On a free loopback port; ``endpoint`` is the value for SECOPS_API_ENDPOINT."""

    def __init__(self, account: str = "feeds-reader@chronicle-tenant.iam.gserviceaccount.com"):
        self.account = account
        self.feeds: dict[str, dict] = {}
        self.requests: list[Request] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()

    def fail_with(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def changes(self) -> list[Request]:
        """The requests that change something (anything but GET)."""
        return [request for request in self.requests if request.method != "GET"]

    def _route(self, method: str, path: str, query: dict, body: dict | None) -> dict:
        if method == "GET" and (
            m := re.fullmatch(
                rf"/v1/({_INSTANCE})/feedServiceAccounts:fetchServiceAccountForCustomer", path
            )
        ):
            return {"name": f"{m[1]}/feedServiceAccounts/{self.account}", "subjectId": self.account}
        if m := re.fullmatch(rf"/v1/({_INSTANCE})/feeds", path):
            if method == "GET":
                found = [f for n, f in self.feeds.items() if n.startswith(m[1] + "/")]
                return {"feeds": found}
            if method == "POST":
                return self._create(m[1], body)
        if m := re.fullmatch(rf"/v1/({_FEED})(:enable)?", path):
            name, enable = m[1], m[2]
            if name not in self.feeds:
                raise _Rejected(404, f"feed {name} not found")
            if enable and method == "POST":
                _parse(body, types.EnableFeedRequest)
                self.feeds[name]["state"] = "ACTIVE"
                return self.feeds[name]
            if not enable and method == "GET":
                return self.feeds[name]
            if not enable and method == "DELETE":
                del self.feeds[name]
                return {}
            if not enable and method == "PATCH":
                return self._update(name, query, body)
        raise _Rejected(404, f"no method {method} {path}")

    def _create(self, parent: str, body: dict | None) -> dict:
        feed = _parse(body, types.Feed)
        sent = [name for name in _OUTPUT_ONLY if name in (body or {})]
        if sent or not feed.display_name or not feed.details.log_type:
            raise _Rejected(400, f"output-only fields sent ({sent}) or required ones missing")
        feed.name = f"{parent}/feeds/{uuid.uuid4()}"
        feed.state = types.Feed.State.ACTIVE.value
        self.feeds[feed.name] = _as_json(feed)
        return self.feeds[feed.name]

    def _update(self, name: str, query: dict, body: dict | None) -> dict:
        patch = _parse(body, types.Feed)
        mask = field_mask_pb2.FieldMask()
        try:
            mask.FromJsonString(",".join(query.get("updateMask", [])))
        except ValueError as exc:
            raise _Rejected(400, f"invalid updateMask: {exc}") from None
        current = _parse(self.feeds[name], types.Feed)
        if not mask.paths or not mask.IsValidForDescriptor(current.DESCRIPTOR):
            raise _Rejected(400, f"invalid updateMask {list(mask.paths)}")
        if "display_name" in mask.paths and patch.display_name == current.display_name:
            raise _Rejected(400, "display_name is unchanged: remove it from the update mask")
        mask.MergeMessage(patch, current, replace_message_field=False, replace_repeated_field=True)
        self.feeds[name] = _as_json(current)
        return self.feeds[name]

    def _handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict]:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"<not JSON>": raw.decode(errors="replace")}
        with self._lock:
            self.requests.append(
                Request(
                    handler.command,
                    parts.path,
                    parse_qs(parts.query),
                    body,
                    handler.headers.get("Authorization"),
                )
            )
            try:
                if self._failures:
                    raise _Rejected(self._failures.pop(0), "injected failure")
                return 200, self._route(handler.command, parts.path, parse_qs(parts.query), body)
            except _Rejected as exc:
                status = _STATUS.get(exc.status, "UNKNOWN")
                return exc.status, {
                    "error": {"code": exc.status, "message": str(exc), "status": status}
                }

    def start(self) -> "FakeFeeds":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                status, answer = fake._handle(self)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, format, *args):
                pass

        self.serve(Handler)
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"
