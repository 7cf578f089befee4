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
"""


class CollectorError(Exception): ...


class NeedsFix(CollectorError): ...


class ConfigError(NeedsFix):
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class HarnessRejected(NeedsFix):
    def __init__(self, status: int, code, harness_message, correlation_id, hint: str):
        self.status, self.code, self.hint = status, code, hint
        self.harness_message, self.correlation_id = harness_message, correlation_id
        named = f" {code}" if code else ""
        said = f": {harness_message.rstrip('. ')}" if harness_message else ""
        super().__init__(f"Harness answered HTTP {status}{named}{said}. {hint}")


class StorageRejected(NeedsFix): ...


class StateCorrupt(NeedsFix): ...


class StateMissing(NeedsFix): ...


class ForeignObject(NeedsFix): ...


class TryLater(CollectorError): ...


class HarnessUnavailable(TryLater): ...


class HarnessInconsistent(TryLater): ...


class NoProgress(TryLater): ...


class StorageUnavailable(TryLater): ...


class LeaseLost(TryLater): ...


class InternalError(CollectorError): ...


class LeaseHeld(CollectorError): ...


class DeadlineReached(Exception):
    """Not an error of the run: it tells the pager to stop, write and checkpoint."""
