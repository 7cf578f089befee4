"""Every error the collector raises, split by what the caller should do. NeedsFix: a person
must change something; TryLater: the next run resumes; LeaseHeld: another run is on it (success)."""


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


class StateMissing(NeedsFix): ...  # no checkpoint, but data objects under the prefix


class ForeignObject(NeedsFix): ...  # too large to be a part of ours, at a part's name


class TryLater(CollectorError): ...


class HarnessUnavailable(TryLater): ...


class HarnessInconsistent(TryLater): ...  # pages that paging by time cannot trust


class NoProgress(TryLater): ...  # the deadline came before a single page was read


class StorageUnavailable(TryLater): ...


class LeaseLost(TryLater): ...  # another run took the lease over while this one wrote


class InternalError(CollectorError): ...  # a defect or an input nobody foresaw


class LeaseHeld(CollectorError): ...


class DeadlineReached(Exception):
    """Not an error of the run: it tells the pager to stop, write and checkpoint."""
