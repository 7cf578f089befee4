"""CloudEvents shaped the way Eventarc delivers a Pub/Sub message (Cloud Scheduler's, or
a continuation's)."""

import base64
import json
import uuid
from datetime import UTC, datetime

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def scheduler_event(
    project: str = "local-project", topic: str = "harness-audit-trigger", payload: bytes = b"{}"
) -> tuple[dict, bytes]:
    """(headers, body) of a binary-mode CloudEvent carrying Cloud Scheduler's ``{}``."""
    return pubsub_event(project, topic, payload)


def pubsub_event(
    project: str,
    topic: str,
    payload: bytes,
    attributes: dict[str, str] | None = None,
    message_id: str | None = None,
) -> tuple[dict, bytes]:
    """(headers, body) of a binary-mode CloudEvent carrying one Pub/Sub message."""
    message_id = message_id or str(uuid.uuid4().int)[:16]
    published = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    headers = {
        "ce-id": message_id,
        "ce-specversion": "1.0",
        "ce-source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "ce-type": PUBSUB_EVENT_TYPE,
        "ce-time": published,
        "Content-Type": "application/json",
    }
    message = {
        "data": base64.b64encode(payload).decode(),
        "messageId": message_id,
        "publishTime": published,
    }
    if attributes:
        message["attributes"] = dict(attributes)
    body = {
        "message": message,
        "subscription": f"projects/{project}/subscriptions/eventarc-{uuid.uuid4().hex[:8]}",
    }
    return headers, json.dumps(body).encode()
