"""Every error the collector raises, split by what the caller should do about it.

    CollectorError
    ├── NeedsFix            a person must change something; retrying alone will not help
    │   ├── ConfigError         an environment variable is missing or invalid
    │   ├── HarnessRejected     Harness answered 400/401/403/404 (key, permission, filter, URL)
    │   ├── StorageRejected     GCS answered 401/403/404 (credentials, IAM role, bucket name)
    │   └── StateCorrupt        the checkpoint object cannot be read; it is left untouched
    ├── TryLater            a dependency failed after its retries; the next run resumes
    │   ├── HarnessUnavailable  429/5xx/timeouts/bad bodies outlasted MAX_RETRIES
    │   ├── HarnessInconsistent Harness sent pages that paging by time cannot trust
    │   ├── NoProgress          the deadline came before a single page could be read
    │   ├── StorageUnavailable  GCS failed after google-cloud-storage's own retries
    │   └── LeaseLost           another run took the lease over while this one was writing
    ├── InternalError       a defect or an input nobody foresaw: logged in one line
    └── LeaseHeld           another run is on it: this invocation exits successfully

DeadlineReached is not an error of the run: it tells the pager to stop and checkpoint.
"""


class CollectorError(Exception):
    """Base of every error this package raises on purpose."""


class NeedsFix(CollectorError):
    """The run failed and will fail again until someone changes something."""


class ConfigError(NeedsFix):
    """One or more environment variables are missing or invalid."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class HarnessRejected(NeedsFix):
    """Harness refused the request in a way that retrying will not change."""

    def __init__(
        self,
        status: int,
        code: str | None,
        harness_message: str | None,
        correlation_id: str | None,
        hint: str,
    ):
        self.status = status
        self.code = code
        self.harness_message = harness_message
        self.correlation_id = correlation_id
        self.hint = hint
        super().__init__(
            f"Harness answered HTTP {status}"
            + (f" {code}" if code else "")
            + (f": {harness_message.rstrip('. ')}" if harness_message else "")
            + f". {hint}"
        )


class StorageRejected(NeedsFix):
    """Cloud Storage refused access, or the bucket does not exist."""


class StateCorrupt(NeedsFix):
    """The checkpoint object exists but is not a checkpoint this collector can continue from."""


class TryLater(CollectorError):
    """A dependency failed after every retry; progress made so far is checkpointed."""


class HarnessUnavailable(TryLater):
    """Harness kept failing (429, 5xx, timeouts, malformed bodies) through MAX_RETRIES."""


class HarnessInconsistent(TryLater):
    """A page in neither timestamp order, or a full page with nothing in the range asked."""


class NoProgress(TryLater):
    """The run's deadline passed before any page was read: Cloud Run records a failure."""


class InternalError(CollectorError):
    """An exception nobody planned for; what was fetched before it is kept."""


class StorageUnavailable(TryLater):
    """Cloud Storage failed after the client library's retries."""


class LeaseLost(TryLater):
    """The checkpoint changed under us: another run took the lease over."""


class LeaseHeld(CollectorError):
    """Another live run holds the lease; this invocation changes nothing."""


class DeadlineReached(Exception):
    """The run's time budget is spent: stop paging, write, checkpoint."""
