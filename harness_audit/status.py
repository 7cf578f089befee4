"""``status``: how the collector is doing, from its checkpoint (read, never written).

What it says: the end of the last completed window (the watermark) and how far behind now
it is; the window in progress, if any (its bounds, what is left to read, the parts and
events written so far, the parts' names); who holds the lease and until when; the last
objects written under the prefix.

Exit 1 when the lag exceeds ALERT_LAG_MINUTES, or when the checkpoint cannot be continued
from (with the function's own message); 0 otherwise, a bucket with no checkpoint yet
included.
"""

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TextIO

from harness_audit.checkpoint import LEASE_MARGIN_SECONDS, CheckpointStore
from harness_audit.cli_common import EXIT_FOUND, EXIT_OK
from harness_audit.clock import Clock, iso, utc
from harness_audit.config import Config
from harness_audit.errors import StateCorrupt
from harness_audit.gcs import storage_errors
from harness_audit.paging import NEWEST_FIRST, OLDEST_FIRST
from harness_audit.sink import object_name
from harness_audit.state import ORIGIN_GUIDE, State, WindowProgress

RECENT_OBJECTS = 5
# The last objects are looked for in the date folders this many days before the checkpoint's
# windows first (one short listing), in the whole prefix only when that finds too few.
RECENT_DAYS = 7


@dataclass(frozen=True)
class RecentObject:
    uri: str
    created: str | None
    events: int | None
    size: int | None


def _duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


class _Status:
    def __init__(self, config: Config, bucket, clock: Clock):
        self.config = config
        self.bucket = bucket
        self.clock = clock
        self.now_ms = clock.now_ms()
        self.base = f"{config.prefix}/" if config.prefix else ""

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket.name}/{name}"

    def gather(self) -> dict:
        config = self.config
        store = CheckpointStore(
            self.bucket,
            config.state_key,
            lease_seconds=config.max_run_seconds + LEASE_MARGIN_SECONDS,
        )
        document: dict = {"checkpoint": store.uri, "now": iso(self.now_ms)}
        state = None
        try:
            snapshot = store.load(self.now_ms)
        except StateCorrupt as exc:
            document["error"] = str(exc)
        else:
            state = snapshot.state
            document["exists"] = snapshot.generation != 0
            if snapshot.generation:
                document.update(self._checkpoint(state))
        document["recent_objects"] = [vars(item) for item in self._recent(state)]
        problems = []
        if "error" in document:
            problems.append("checkpoint unreadable")
        if document.get("lag_alert"):
            problems.append(f"lag over ALERT_LAG_MINUTES={config.alert_lag_minutes}")
        document["problems"] = problems
        document["ok"] = not problems
        return document

    def _checkpoint(self, state: State) -> dict:
        now = self.now_ms
        document: dict = {
            "origin": "guide" if state.origin == ORIGIN_GUIDE else "collector",
            "watermark": iso(state.watermark_ms) if state.watermark_ms is not None else None,
            "watermark_ms": state.watermark_ms,
        }
        # Before the first window completes, nothing is delivered before its start.
        since = state.watermark_ms
        if since is None and state.window is not None:
            since = state.window.start_ms
        lag = None if since is None else max(0, now - since) / 1000
        document["lag_seconds"] = None if lag is None else round(lag, 3)
        document["alert_lag_minutes"] = self.config.alert_lag_minutes
        document["lag_alert"] = lag is not None and lag > self.config.alert_lag_minutes * 60
        document["delivered_ids_in_overlap"] = len(state.delivered)
        document["window"] = self._window(state.window) if state.window else None
        lease = state.lease
        if lease is None:
            document["lease"] = {"state": "free"}
        else:
            document["lease"] = {
                "state": "held" if lease.is_live(now) else "expired",
                "owner": lease.owner,
                "expires": iso(lease.expires_ms),
                "seconds_left": round((lease.expires_ms - now) / 1000, 3),
            }
        return document

    def _window(self, window: WindowProgress) -> dict:
        position = window.position
        span = window.end_ms - window.start_ms + 1
        left = max(0, position.upper_ms - position.lower_ms + 1)
        left += sum(high - low + 1 for low, high in position.pending)
        parts = [
            self.uri(object_name(self.config.prefix, window.start_ms, window.end_ms, number))
            for number in range(1, window.next_part)
        ]
        return {
            "start": iso(window.start_ms),
            "end": iso(window.end_ms),
            "order": position.order,
            "lower": iso(position.lower_ms),
            "upper": iso(max(0, position.upper_ms)),
            "still_to_read": [iso(position.lower_ms), iso(max(0, position.upper_ms))]
            if position.lower_ms <= position.upper_ms
            else None,
            "pending": [[iso(low), iso(high)] for low, high in position.pending],
            "burst_at": iso(position.burst_ms) if position.burst_ms is not None else None,
            "read_percent": round(100 * (1 - min(left, span) / span), 1),
            "pages": window.pages,
            "parts_written": window.next_part - 1,
            "events_written": window.events_written,
            "parts": parts,
        }

    def _recent(self, state: State | None) -> list[RecentObject]:
        starts = []
        if state is not None and state.watermark_ms is not None:
            starts.append(state.watermark_ms - self.config.overlap_seconds * 1000)
        if state is not None and state.window is not None:
            starts.append(state.window.start_ms)
        found = []
        if starts:
            first = utc(max(0, min(starts))).date() - timedelta(days=RECENT_DAYS)
            found = self._list(start_offset=f"{self.base}{first:%Y/%m/%d}/")
        if len(found) < RECENT_OBJECTS:
            found = self._list(start_offset=None)
        found.sort(key=lambda blob: (blob.time_created is not None, blob.time_created, blob.name))
        recent = []
        for blob in reversed(found[-RECENT_OBJECTS:]):
            count = (blob.metadata or {}).get("event-count")
            recent.append(
                RecentObject(
                    uri=self.uri(blob.name),
                    created=iso(int(blob.time_created.timestamp() * 1000))
                    if blob.time_created
                    else None,
                    events=int(count) if count and count.isdigit() else None,
                    size=blob.size,
                )
            )
        return recent

    def _list(self, start_offset: str | None) -> list:
        with storage_errors("list the objects under the prefix", self.bucket.name):
            blobs = self.bucket.list_blobs(prefix=self.base or None, start_offset=start_offset)
            key = self.config.state_key
            return [blob for blob in blobs if blob.name != key and not blob.name.endswith("/")]


def _render(document: dict) -> list[str]:
    lines = [f"checkpoint   {document['checkpoint']}"]
    if "error" in document:
        lines.append(f"             UNREADABLE: {document['error']}")
    elif not document.get("exists"):
        lines.append(
            "             none yet: the collector has not run, or its first run has not "
            "read a page yet"
        )
    else:
        if document["origin"] == "guide":
            lines[0] += " (the guide's format; the next run converts it)"
        lag = document["lag_seconds"]
        verdict = "ALERT" if document["lag_alert"] else "ok"
        limit = f"alert over {document['alert_lag_minutes']} min"
        if document["watermark"] is not None:
            lines.append(
                f"watermark    {document['watermark']}  (end of the last completed window)"
            )
            lines.append(f"lag          {_duration(lag)}  {verdict} ({limit})")
        else:
            lines.append("watermark    none: the first window has not completed yet")
            if lag is not None:
                lines.append(
                    f"lag          {_duration(lag)} since the first window's start  "
                    f"{verdict} ({limit})"
                )
        lines += _render_window(document["window"])
        lines.append(f"lease        {_render_lease(document['lease'])}")
    recent = document["recent_objects"]
    if recent:
        lines.append("last objects (newest first)")
        for item in recent:
            events = f"{item['events']} events" if item["events"] is not None else "? events"
            lines.append(f"  {item['created'] or '?':<26}{events:>14}  {item['uri']}")
    else:
        lines.append("last objects none under the prefix")
    return lines


def _render_window(window: dict | None) -> list[str]:
    if window is None:
        return ["window       none in progress"]
    lines = [f"window       in progress: {window['start']} .. {window['end']}"]
    order = {NEWEST_FIRST: "newest first", OLDEST_FIRST: "oldest first"}.get(window["order"])
    if window["still_to_read"]:
        low, high = window["still_to_read"]
        lines.append(
            f"             still to read {low} .. {high}"
            + (f" ({order})" if order else "")
            + f", {window['read_percent']}% read"
        )
    for low, high in window["pending"]:
        lines.append(f"             then {low} .. {high}")
    if window["burst_at"]:
        lines.append(f"             reading the millisecond {window['burst_at']} alone")
    parts = window["parts_written"]
    lines.append(
        f"             {parts} part{'' if parts == 1 else 's'}, {window['events_written']} "
        f"events written, {window['pages']} pages read"
    )
    lines += [f"             {part}" for part in window["parts"]]
    return lines


def _render_lease(lease: dict) -> str:
    if lease["state"] == "free":
        return "free"
    if lease["state"] == "held":
        return (
            f"held by run {lease['owner']} until {lease['expires']} "
            f"({_duration(lease['seconds_left'])} left)"
        )
    return (
        f"expired {_duration(lease['seconds_left'])} ago (run {lease['owner']}, "
        f"{lease['expires']}): the next run takes it over"
    )


def run(config: Config, bucket, clock: Clock, out: TextIO, *, json_output: bool, feed=None) -> int:
    document = _Status(config, bucket, clock).gather()
    if feed is not None:  # the SecOps feed's section: feed.status_section
        problems = document["problems"] + [feed[key] for key in ("problem",) if key in feed]
        document = {**document, "secops_feed": feed, "problems": problems, "ok": not problems}
    if json_output:
        out.write(json.dumps(document) + "\n")
    else:
        lines = _render(document) + [f"secops feed  {k}: {v}" for k, v in (feed or {}).items() if v]
        out.write("\n".join(lines) + "\n")
    out.flush()
    return EXIT_OK if document["ok"] else EXIT_FOUND
