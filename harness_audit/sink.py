"""Data objects in GCS. A part's name depends only on its window and number, and it is
created only if absent: an attempt resuming after a crash finds the crashed one's part."""

import io
import json
from collections.abc import Iterator, Mapping

from harness_audit import __version__
from harness_audit.clock import iso, utc
from harness_audit.errors import ForeignObject
from harness_audit.gcs import PreconditionFailed, call_options, storage_errors
from harness_audit.harness_client import MAX_PAGE_BYTES
from harness_audit.listing import event_identity

# A part holds at most MAX_OBJECT_MB (at most 8 MB), or one larger event alone, and no
# event is larger than the Harness page (32 MiB) it came in. Reading one peaks at 124 MB RSS.
MAX_PART_BYTES = MAX_PAGE_BYTES
CONTENT_TYPE = "application/x-ndjson"


def _stamp(epoch_ms: int) -> str:
    """``20250610T130000123Z``: a time in object names, sorting as it reads."""
    return f"{utc(epoch_ms):%Y%m%dT%H%M%S}{epoch_ms % 1000:03d}Z"


def folder(prefix: str) -> str:
    return f"{prefix}/" if prefix else ""


def object_name(prefix: str, start_ms: int, end_ms: int, part: int) -> str:
    """``<prefix>/YYYY/MM/DD/harness-audit-<start>-<end>-<part>.jsonl``, sorting by time."""
    stamps = f"{_stamp(start_ms)}-{_stamp(end_ms)}-{part:04d}"
    return f"{folder(prefix)}{utc(start_ms):%Y/%m/%d}/harness-audit-{stamps}.jsonl"


class PartBuffer:
    """Encoded lines waiting to be written, with the ids they carry. getvalue() hands the
    buffer over uncopied: with the upload's own copy, a part costs twice its size."""

    def __init__(self):
        self._data = io.BytesIO()
        self.ids: list[tuple[str, int]] = []
        self.size = 0

    def add(self, line: bytes, audit_id: str, timestamp: int) -> None:
        """One event's line, without its newline."""
        self.size += self._data.write(line) + self._data.write(b"\n")
        self.ids.append((audit_id, timestamp))

    def __len__(self) -> int:
        return len(self.ids)

    def data(self) -> bytes:
        return self._data.getvalue()

    def without(self, known: Mapping[str, int]) -> "PartBuffer":
        kept = PartBuffer()
        for (audit_id, timestamp), line in zip(self.ids, self.data().split(b"\n"), strict=False):
            if audit_id not in known:
                kept.add(line, audit_id, timestamp)
        return kept


class ObjectSink:
    def __init__(self, bucket, *, prefix: str, output_format: str):
        self.bucket, self.prefix, self._output_format = bucket, prefix, output_format

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket.name}/{name}"

    def create(self, name, buffer: PartBuffer, *, start_ms, end_ms, part, seconds=None) -> bool:
        """Upload the part unless it exists. True: created; False: it was already there."""
        blob = self.bucket.blob(name)
        blob.metadata = {
            "event-count": str(len(buffer)),
            "window-start": iso(start_ms),
            "window-end": iso(end_ms),
            "part": str(part),
            "output-format": self._output_format,
            "collector-version": __version__,
        }
        with storage_errors(f"write {name}", self.bucket.name):
            data, options = buffer.data(), call_options(seconds)
            try:
                blob.upload_from_string(data, CONTENT_TYPE, if_generation_match=0, **options)
            except PreconditionFailed:
                return False
        return True

    def read_ids(self, name: str, *, seconds: float | None = None) -> dict[str, int]:
        """The ids in an existing object, in either layout (none if it has gone since). One
        larger than any part is not ours: refused unread, as reading it could exhaust memory."""
        with storage_errors(f"read {name}", self.bucket.name):
            blob = self.bucket.get_blob(name, **call_options(seconds))
            if blob is None:
                return {}
            if blob.size > MAX_PART_BYTES:
                raise ForeignObject(
                    f"{self.uri(name)} is {blob.size} bytes, larger than any part this "
                    f"collector writes ({MAX_PART_BYTES}): it is not one of ours and was not "
                    f"read. Move it out of the prefix (gcloud storage mv {self.uri(name)} "
                    "gs://<elsewhere>); the next run resumes"
                )
            data = blob.download_as_bytes(**call_options(seconds))
        return dict(line_identities(data, fallback_ms=0))

    def first_object(self, *, seconds: float | None = None) -> str | None:
        """The name of one object under the prefix, if there is any: one list call."""
        with storage_errors("list the objects under the prefix", self.bucket.name):
            listed = {"prefix": folder(self.prefix), "max_results": 1, **call_options(seconds)}
            return next((blob.name for blob in self.bucket.list_blobs(**listed)), None)


def line_identities(data: bytes, *, fallback_ms: int) -> Iterator[tuple[str, int]]:
    """(auditId, timestamp) of each line of an object, in either layout. A line that is not a
    JSON object is not ours to judge: it cannot be a duplicate, and is skipped."""
    for line in filter(bytes.strip, data.splitlines()):
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict):
            yield event_identity(event, fallback_ms=fallback_ms)
