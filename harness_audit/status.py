"""``status``: the checkpoint and the last objects under the prefix, from the bucket alone.
The listing goes first, bounded to CALL_SECONDS: an unreachable bucket is one short line."""

import json
from typing import TextIO

from harness_audit.checkpoint import CheckpointStore
from harness_audit.cli_common import EXIT_FOUND, EXIT_OK
from harness_audit.clock import Clock, iso, utc
from harness_audit.config import Config
from harness_audit.errors import StateCorrupt
from harness_audit.gcs import call_options, storage_errors
from harness_audit.sink import folder, object_name
from harness_audit.state import ORIGIN_GUIDE, State, WindowProgress

RECENT_OBJECTS = 5
# The last week's date folders first (one short listing); the whole prefix only when that
# finds too few (a backfill window's folder is older).
RECENT_DAYS = 7
CALL_SECONDS = 5.0  # each Cloud Storage call, all of its attempts together


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(abs(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def recent_objects(bucket, config: Config, now_ms: int) -> list[dict]:
    base, options = folder(config.prefix), call_options(CALL_SECONDS)  # for each call
    week = f"{base}{utc(now_ms - RECENT_DAYS * 86_400_000):%Y/%m/%d}/"
    with storage_errors("list the objects under the prefix", bucket.name):
        for offset in (week, None):
            listed = bucket.list_blobs(prefix=base or None, start_offset=offset, **options)
            found = [
                blob for blob in listed if blob.name != config.state_key and blob.name[-1:] != "/"
            ]
            if len(found) >= RECENT_OBJECTS:
                break
    found.sort(key=lambda blob: (blob.time_created, blob.name))
    recent = []
    for blob in reversed(found[-RECENT_OBJECTS:]):
        count = (blob.metadata or {}).get("event-count", "")
        created = iso(int(blob.time_created.timestamp() * 1000))
        item = {"uri": f"gs://{bucket.name}/{blob.name}", "size": blob.size, "created": created}
        recent.append(item | {"events": int(count) if count.isdigit() else None})
    return recent


def checkpoint_document(state: State, config: Config, now_ms: int) -> dict:
    # Before the first window completes, nothing is delivered before its start (a watermark
    # of 0 is older than any lookback: refused on load).
    since = state.watermark_ms or (state.window and state.window.start_ms)
    lag = None if since is None else round(max(0, now_ms - since) / 1000, 3)
    lease, lease_document = state.lease, {"state": "free"}
    if lease is not None:
        lease_document = {"state": "held" if lease.is_live(now_ms) else "expired"}
        lease_document |= {"owner": lease.owner, "expires": iso(lease.expires_ms)}
        lease_document["seconds_left"] = round((lease.expires_ms - now_ms) / 1000, 3)
    return {
        "origin": state.origin,
        "watermark": iso(state.watermark_ms) if state.watermark_ms is not None else None,
        "watermark_ms": state.watermark_ms,
        "lag_seconds": lag,
        "alert_lag_minutes": config.alert_lag_minutes,
        "lag_alert": lag is not None and lag > config.alert_lag_minutes * 60,
        "window": window_document(state.window, config) if state.window else None,
        "lease": lease_document,
    }


def window_document(window: WindowProgress, config: Config) -> dict:
    position, span = window.position, window.end_ms - window.start_ms + 1
    left = max(0, position.upper_ms - position.lower_ms + 1)
    left += sum(high - low + 1 for low, high in position.pending)
    to_read = position.lower_ms <= position.upper_ms
    return {
        "start": iso(window.start_ms),
        "end": iso(window.end_ms),
        "order": position.order,
        "still_to_read": [iso(position.lower_ms), iso(position.upper_ms)] if to_read else None,
        "read_percent": round(100 * (1 - min(left, span) / span), 1),
        "pages": window.pages,
        "parts_written": window.next_part - 1,
        "events_written": window.events_written,
        "parts": [
            f"gs://{config.bucket}/{object_name(config.prefix, window.start_ms, window.end_ms, n)}"
            for n in range(1, window.next_part)
        ],
    }


def run(config: Config, bucket, clock: Clock, out: TextIO, json_output: bool, feed) -> int:
    """``feed``: the SecOps feed's section (feed.status_section), if any."""
    now_ms = clock.now_ms()
    recent = recent_objects(bucket, config, now_ms)  # first: fails fast when unreachable
    store = CheckpointStore(config, bucket)
    document: dict = {"checkpoint": store.uri, "now": iso(now_ms)}
    try:
        snapshot = store.load(now_ms)
    except StateCorrupt as exc:
        document["error"] = str(exc)
    else:
        document["exists"] = snapshot.generation != 0
        if snapshot.generation:
            document |= checkpoint_document(snapshot.state, config, now_ms)
    document["recent_objects"] = recent
    problems = ["checkpoint unreadable"] * ("error" in document)
    if document.get("lag_alert"):
        problems.append(f"lag over ALERT_LAG_MINUTES={config.alert_lag_minutes}")
    if feed is not None:
        document["secops_feed"] = feed
        problems += [feed["problem"]] if "problem" in feed else []
    document |= {"problems": problems, "ok": not problems}
    out.write((json.dumps(document) if json_output else "\n".join(render(document))) + "\n")
    out.flush()
    return EXIT_FOUND if problems else EXIT_OK


def render(document: dict) -> list[str]:
    lines = [f"checkpoint   {document['checkpoint']}"]
    if "error" in document:
        lines.append(f"             UNREADABLE: {document['error']}")
    elif not document["exists"]:
        lines.append("             none yet: the collector has not run, or read no page yet")
    else:
        if document["origin"] == ORIGIN_GUIDE:
            lines[0] += " (the guide's format; the next run converts it)"
        lag, verdict = document["lag_seconds"], "ALERT" if document["lag_alert"] else "ok"
        limit = f"{verdict} (alert over {document['alert_lag_minutes']} min)"
        if watermark := document["watermark"]:
            lines.append(f"watermark    {watermark}  (end of the last completed window)")
            since = ""
        else:
            lines.append("watermark    none: the first window has not completed yet")
            since = " since the first window's start"
        lines += [f"lag          {_duration(lag)}{since}  {limit}"] if lag is not None else []
        lines += _render_window(document["window"])
        lines.append(f"lease        {_render_lease(document['lease'])}")
    newest = "(newest first)" if document["recent_objects"] else "none under the prefix"
    lines.append(f"last objects {newest}")
    for item in document["recent_objects"]:
        events = "? events" if item["events"] is None else f"{item['events']} events"
        lines.append(f"  {item['created']:<26}{events:>14}  {item['uri']}")
    feed = document.get("secops_feed") or {}
    return lines + [f"secops feed  {key}: {value}" for key, value in feed.items() if value]


def _render_window(window: dict | None) -> list[str]:
    if window is None:
        return ["window       none in progress"]
    lines = [f"window       in progress: {window['start']} .. {window['end']}"]
    if window["still_to_read"]:
        order = f" ({window['order'].replace('_', ' ')})" if window["order"] else ""
        (low, high), percent = window["still_to_read"], window["read_percent"]
        lines.append(f"             still to read {low} .. {high}{order}, {percent}% read")
    parts, events, pages = window["parts_written"], window["events_written"], window["pages"]
    plural = "" if parts == 1 else "s"
    lines.append(f"             {parts} part{plural}, {events} events written, {pages} pages read")
    return lines + [f"             {part}" for part in window["parts"]]


def _render_lease(lease: dict) -> str:
    if lease["state"] == "free":
        return "free"
    left, owner, expires = _duration(lease["seconds_left"]), lease["owner"], lease["expires"]
    if lease["state"] == "held":
        return f"held by run {owner} until {expires} ({left} left)"
    return f"expired {left} ago (run {owner}, {expires}): the next run takes it over"
