"""The checkpoint object in GCS, read with its generation and written back under it: a
lease as well, since two runs cannot both advance it."""

import contextlib
import logging
from dataclasses import dataclass, replace

from harness_audit import __version__
from harness_audit.clock import Deadline, iso
from harness_audit.errors import CollectorError, LeaseHeld, LeaseLost, StateCorrupt
from harness_audit.gcs import NotFound, PreconditionFailed, call_options, storage_errors
from harness_audit.logs import log
from harness_audit.state import CLOCK_SKEW_MS, Lease, State, check_times, decode_state, encode_state

# A run that died keeps its lease until MAX_RUN_SECONDS plus this margin have passed.
LEASE_MARGIN_SECONDS = 60
# 8 MiB hold some 190,000 ids delivered within OVERLAP_SECONDS, far more than a real
# checkpoint; loading one peaks at 102 MB RSS (49 MB for an empty one) of a 512 MiB instance.
MAX_STATE_BYTES = 8 * 1024 * 1024
# START_MINUTES_BACK's own limit (365 days) and a day: no run of this collector reads
# further back, so no checkpoint of it can hold an older time.
MAX_LOOKBACK_MS = 366 * 86_400_000
LEASE_TOO_LONG = "the lease expires further ahead than any run can hold one; taking it over"
DELETED_MID_RUN = "the checkpoint was deleted during the run; re-created from what it holds"
RESET_RECIPE = '{"version": 2, "watermark_ms": <epoch ms to resume from>}'


@dataclass(frozen=True)
class Snapshot:
    state: State
    generation: int  # 0: no checkpoint yet (create-only)


class CheckpointStore:
    def __init__(self, config, bucket, deadline: Deadline | None = None):
        self._bucket, self._key, self._deadline = bucket, config.state_key, deadline
        self._lease_ms = (config.max_run_seconds + LEASE_MARGIN_SECONDS) * 1000
        self.uri = f"gs://{bucket.name}/{self._key}"

    def _options(self, release: bool = False) -> dict:
        return call_options(self._deadline and self._deadline.storage_seconds(release=release))

    def load(self, now_ms: int) -> Snapshot:
        """The checkpoint and its generation; StateCorrupt, naming the fix, if it is unusable."""
        with storage_errors("read the checkpoint", self._bucket.name):
            blob = self._bucket.get_blob(self._key, **self._options())
            if blob is None:
                return Snapshot(State(), 0)
            if blob.size > MAX_STATE_BYTES:
                raise self._corrupt(f"it is {blob.size} bytes, larger than any checkpoint")
            try:  # the blob names its generation: the download reads exactly that one
                data = blob.download_as_bytes(**self._options())
            except NotFound:
                raise LeaseHeld(
                    f"{self.uri} changed while this run read it: another run is writing it; "
                    "this invocation exits without changes"
                ) from None
        try:
            state = decode_state(data)
            check_times(state, now_ms, max_lookback_ms=MAX_LOOKBACK_MS)
        except StateCorrupt as exc:
            raise self._corrupt(exc) from None
        return Snapshot(state, blob.generation)

    def _corrupt(self, reason) -> StateCorrupt:
        return StateCorrupt(
            f"The checkpoint {self.uri} cannot be used: {reason}. It was left as it is and "
            "nothing was collected. To recover, look at it (gcloud storage cat "
            f"{self.uri}), then restore a good copy, or delete it to start again "
            f"START_MINUTES_BACK minutes back, or replace it with {RESET_RECIPE}"
        )

    def take(self, loaded: Snapshot, owner: str, now_ms: int) -> Snapshot:
        """Write ``loaded`` back with our lease: LeaseHeld when a live lease is held (loaded
        before we took one, it is another run's) or another run writes first."""
        lease = loaded.state.lease
        if lease is not None and lease.expires_ms > now_ms + self._lease_ms + CLOCK_SKEW_MS:
            # No run of this configuration can hold a lease that long: a hand edit, a clock
            # gone wrong, or a hostile write. Honouring it would stop collection for good.
            expires, seconds = iso(lease.expires_ms), self._lease_ms // 1000
            log(logging.WARNING, LEASE_TOO_LONG, lease_expires=expires, lease_seconds=seconds)
        elif lease is not None and lease.is_live(now_ms):
            seconds = (lease.expires_ms - now_ms) / 1000
            raise LeaseHeld(
                f"another run holds the lease on {self.uri} for {seconds:.0f} s "
                "more; this invocation exits without changes"
            )
        state = self.renewed(loaded.state, owner, now_ms)
        try:
            return Snapshot(state, self.save(state, loaded.generation, now_ms))
        except LeaseLost:
            held = f"another run wrote {self.uri} first; this invocation exits without changes"
            raise LeaseHeld(held) from None

    def renewed(self, state: State, owner: str, now_ms: int) -> State:
        return replace(state, lease=Lease(owner, now_ms + self._lease_ms))

    def release(self, held: Snapshot, now_ms: int) -> None:
        """Free the lease after a failure, keeping the state last saved; one try (it expires)."""
        try:
            self.save(replace(held.state, lease=None), held.generation, now_ms, release=True)
        except CollectorError as failure:
            expires = iso(held.state.lease.expires_ms)
            message = "could not release the lease; it expires on its own"
            log(logging.WARNING, message, error=str(failure), lease_expires=expires)

    def save(self, state: State, generation: int, now_ms: int, *, release: bool = False) -> int:
        """Write ``state`` if the object is still at ``generation``; return the new one.
        ``release``: the last write of a failed run, allowed the reserve's last half. A 412
        means our retried write had landed, a deleted checkpoint, or another run's write."""
        data = encode_state(state, updated_ms=now_ms, version=__version__)
        with storage_errors("write the checkpoint", self._bucket.name):
            try:
                return self._write(data, generation, release)
            except PreconditionFailed:
                current = self._bucket.get_blob(self._key, **self._options(release))
            if current is None:
                log(logging.WARNING, DELETED_MID_RUN, checkpoint=self.uri)
                with contextlib.suppress(PreconditionFailed):
                    return self._write(data, 0, release)
            elif current.size == len(data) and data == current.download_as_bytes(
                **self._options(release)
            ):
                return current.generation  # our retried write had landed
        raise LeaseLost(
            f"{self.uri} was changed by another run (its lease expired and was taken over); "
            "this run stops. What it wrote is safe: objects are create-only and the other "
            "run skips what they hold"
        )

    def _write(self, data: bytes, generation: int, release: bool) -> int:
        blob = self._bucket.blob(self._key)
        options = self._options(release)
        blob.upload_from_string(data, "application/json", if_generation_match=generation, **options)
        return blob.generation
