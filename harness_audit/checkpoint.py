"""The checkpoint object in GCS: read with its generation, written back under it.

Writing under the generation we read makes the checkpoint a lease as well: two runs
cannot both advance it. A 412 on a write either means our own earlier attempt landed
(a retry after a lost response: the object then holds exactly our bytes) or that
another run took over, and the two are told apart by reading the object back.
"""

import logging
from dataclasses import dataclass, replace

from harness_audit import __version__
from harness_audit.clock import iso
from harness_audit.errors import LeaseHeld, LeaseLost, StateCorrupt
from harness_audit.gcs import CONDITIONAL_RETRY, PreconditionFailed, storage_errors
from harness_audit.logs import log
from harness_audit.state import CLOCK_SKEW_MS, Lease, State, check_times, decode_state, encode_state

# A run that died keeps its lease until MAX_RUN_SECONDS plus this margin have passed.
LEASE_MARGIN_SECONDS = 60
# Far above any real checkpoint (ids within one overlap): a larger object is not ours.
MAX_STATE_BYTES = 64 * 1024 * 1024
# The guide's `since` is read back at most this far: START_MINUTES_BACK's own limit.
MAX_LOOKBACK_MS = 366 * 86_400_000


@dataclass(frozen=True)
class Snapshot:
    state: State
    generation: int  # 0: no checkpoint yet (create-only)


class CheckpointStore:
    def __init__(self, bucket, key: str, *, lease_seconds: int):
        self._bucket = bucket
        self._key = key
        self._lease_ms = lease_seconds * 1000
        self.uri = f"gs://{bucket.name}/{key}"

    def load(self, now_ms: int) -> Snapshot:
        """The checkpoint and its generation; StateCorrupt (naming the fix) when it cannot
        be continued from."""
        snapshot = self._read()
        try:
            check_times(snapshot.state, now_ms, max_lookback_ms=MAX_LOOKBACK_MS)
        except StateCorrupt as exc:
            raise self._corrupt(exc) from None
        return snapshot

    def _read(self) -> Snapshot:
        with storage_errors("read the checkpoint", self._bucket.name):
            for _ in range(3):
                blob = self._bucket.get_blob(self._key)
                if blob is None:
                    return Snapshot(State(), 0)
                if blob.size is not None and blob.size > MAX_STATE_BYTES:
                    raise self._corrupt(
                        StateCorrupt(f"it is {blob.size} bytes, larger than any checkpoint")
                    )
                try:
                    data = blob.download_as_bytes(if_generation_match=blob.generation)
                except PreconditionFailed:
                    continue  # rewritten between the two requests: read the new one
                return Snapshot(self._decode(data), blob.generation)
        raise LeaseLost(f"{self.uri} changed on every read: another run is writing it")

    def _decode(self, data: bytes) -> State:
        try:
            return decode_state(data)
        except StateCorrupt as exc:
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: StateCorrupt) -> StateCorrupt:
        return StateCorrupt(
            f"The checkpoint {self.uri} cannot be used: {exc}. It was left as it is and "
            "nothing was collected. To recover, look at it (gcloud storage cat "
            f"{self.uri}), then restore a good copy, or delete it to start again "
            "START_MINUTES_BACK minutes back, or replace it with "
            '{"version": 2, "watermark_ms": <epoch ms to resume from>}'
        )

    def ensure_free(self, state: State, owner: str, now_ms: int) -> None:
        """Raise LeaseHeld when another run holds a live lease."""
        lease = state.lease
        if lease is not None and lease.expires_ms > now_ms + self._lease_ms + CLOCK_SKEW_MS:
            # No run of this configuration can hold a lease that long: a hand edit, a clock
            # gone wrong, or a hostile write. Honouring it would stop collection for good.
            log(
                logging.WARNING,
                "the checkpoint's lease expires further ahead than any run can hold one; "
                "taking it over",
                lease_expires=iso(lease.expires_ms),
                longest_lease_seconds=self._lease_ms // 1000,
            )
            return
        if lease is not None and lease.owner != owner and lease.is_live(now_ms):
            seconds = (lease.expires_ms - now_ms) / 1000
            raise LeaseHeld(
                f"another run holds the lease on {self.uri} for {seconds:.0f} s "
                "more; this invocation exits without changes"
            )

    def acquire(self, state: State, generation: int, owner: str, now_ms: int) -> tuple[State, int]:
        """Take the lease by writing ``state`` under ``generation``; LeaseHeld if beaten."""
        self.ensure_free(state, owner, now_ms)
        state = self.renewed(state, owner, now_ms)
        try:
            return state, self.save(state, generation, now_ms)
        except LeaseLost:
            raise LeaseHeld(
                f"another run wrote {self.uri} first; this invocation exits without changes"
            ) from None

    def renewed(self, state: State, owner: str, now_ms: int) -> State:
        return replace(state, lease=Lease(owner, now_ms + self._lease_ms))

    def save(self, state: State, generation: int, now_ms: int) -> int:
        """Write ``state`` if the object is still at ``generation``; return the new one."""
        data = encode_state(state, updated_ms=now_ms, version=__version__)
        blob = self._bucket.blob(self._key)
        with storage_errors("write the checkpoint", self._bucket.name):
            try:
                blob.upload_from_string(
                    data,
                    content_type="application/json",
                    if_generation_match=generation,
                    retry=CONDITIONAL_RETRY,
                )
                return blob.generation
            except PreconditionFailed:
                current = self._bucket.get_blob(self._key)
                if current is not None and current.download_as_bytes() == data:
                    return current.generation  # our retried write had landed
        raise LeaseLost(
            f"{self.uri} was changed by another run (its lease expired and was taken over); "
            "this run stops. What it wrote is safe: objects are create-only and the other "
            "run skips what they hold"
        )
