"""Every error the collector raises, split by what the caller should do about it.

    CollectorError
    ├── NeedsFix            a person must change something; retrying alone will not help
    │   ├── ConfigError         an environment variable is missing or invalid
    │   ├── HarnessRejected     Harness answered 400/401/403/404 (key, permission, filter, URL)
    │   ├── StorageRejected     GCS answered 401/403/404 (credentials, IAM role, bucket name)
    │   ├── StateCorrupt        the checkpoint object cannot be used; it is left untouched
    │   ├── StateMissing        no checkpoint, but data objects already under the prefix
    │   └── ForeignObject       an object at a part's name too large to be a part of ours
    ├── TryLater            a dependency failed after its retries; the next run resumes
    │   ├── HarnessUnavailable  429/5xx/timeouts/bad bodies outlasted MAX_RETRIES
    │   ├── HarnessInconsistent Harness sent pages that paging by time cannot trust
    │   ├── NoProgress          the deadline came before a single page could be read
    │   ├── StorageUnavailable  GCS failed within the run's remaining time
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
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class HarnessRejected(NeedsFix):
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
    pass


class StateCorrupt(NeedsFix):
    pass


class StateMissing(NeedsFix):
    pass


class ForeignObject(NeedsFix):
    pass


class TryLater(CollectorError):
    """A dependency failed; the checkpoint keeps what was safely written before it."""


class HarnessUnavailable(TryLater):
    pass


class HarnessInconsistent(TryLater):
    pass


class NoProgress(TryLater):
    pass


class StorageUnavailable(TryLater):
    pass


class LeaseLost(TryLater):
    pass


class InternalError(CollectorError):
    pass


class LeaseHeld(CollectorError):
    pass


class DeadlineReached(Exception):
    """The run's time budget is spent: stop paging, write, checkpoint."""
