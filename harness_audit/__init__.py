"""harness-audit-collector: Harness audit events into GCS, exactly once, for Google SecOps."""

__version__ = "1.0.0"
