"""Configuration: read once from the environment, validated, frozen.

Every setting comes from an environment variable (names below). All problems are
reported together, each naming the variable, what is wrong and how to fix it. The API
key is kept out of ``repr`` and never logged.
"""

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from harness_audit.errors import ConfigError
from harness_audit.layout import OutputFormat, parse_output_format

HARNESS_ACCOUNT_ID = "HARNESS_ACCOUNT_ID"
HARNESS_API_KEY = "HARNESS_API_KEY"
GCS_BUCKET = "GCS_BUCKET"
HARNESS_API_BASE = "HARNESS_API_BASE"
GCS_PREFIX = "GCS_PREFIX"
STATE_KEY = "STATE_KEY"
PAGE_SIZE = "PAGE_SIZE"
START_MINUTES_BACK = "START_MINUTES_BACK"
FILTER_MODULES = "FILTER_MODULES"
FILTER_ACTIONS = "FILTER_ACTIONS"
STATIC_FILTER = "STATIC_FILTER"
MAX_RETRIES = "MAX_RETRIES"
MAX_RUN_SECONDS = "MAX_RUN_SECONDS"
OVERLAP_SECONDS = "OVERLAP_SECONDS"
MAX_OBJECT_MB = "MAX_OBJECT_MB"
OUTPUT_FORMAT = "OUTPUT_FORMAT"
MAX_REQUESTS_PER_MINUTE = "MAX_REQUESTS_PER_MINUTE"

DEFAULT_API_BASE = "https://app.harness.io"
DEFAULT_PREFIX = "harness/audit"
# Outside the default prefix: the SecOps feed reads everything under the prefix, and its
# "delete transferred files" option would delete a state file kept there.
DEFAULT_STATE_KEY = "harness/state/audit-state.json"
STATIC_FILTERS = ("EXCLUDE_LOGIN_EVENTS", "EXCLUDE_SYSTEM_EVENTS")
# Event-driven Cloud Run functions time out after at most 540 s.
FUNCTION_TIMEOUT_LIMIT = 540

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_FILTER_WORD = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Config:
    account_id: str
    api_key: str = field(repr=False)
    bucket: str
    api_base: str = DEFAULT_API_BASE
    prefix: str = DEFAULT_PREFIX
    state_key: str = DEFAULT_STATE_KEY
    page_size: int = 100
    start_minutes_back: int = 60
    modules: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    static_filter: str | None = None
    max_retries: int = 8
    max_run_seconds: int = 480
    overlap_seconds: int = 600
    max_object_bytes: int = 8_000_000
    output_format: OutputFormat = OutputFormat.API
    max_requests_per_minute: int = 360
    # Things worth a warning that do not stop the run (e.g. STATE_KEY under GCS_PREFIX).
    warnings: tuple[str, ...] = ()


def load_config(environ: Mapping[str, str]) -> Config:
    """Build the configuration from ``environ``; raise ConfigError listing every problem."""
    problems: list[str] = []

    def text(name: str, default: str | None = None) -> str | None:
        value = environ.get(name, "").strip()
        return value if value else default

    def required(name: str, what: str) -> str:
        value = text(name)
        if value is None:
            problems.append(f"{name} is not set: set it to {what}")
            return ""
        return value

    def integer(name: str, default: int, low: int, high: int, unit: str = "") -> int:
        raw = text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            problems.append(
                f"{name}={raw!r} is not a whole number: set it to an integer from {low} to "
                f"{high}{unit}, or unset it for the default {default}"
            )
            return default
        if not low <= value <= high:
            problems.append(
                f"{name}={value} is out of range: set it to an integer from {low} to "
                f"{high}{unit}, or unset it for the default {default}"
            )
            return default
        return value

    account_id = required(
        HARNESS_ACCOUNT_ID,
        "your Harness account identifier (Account Settings > Overview, or the id in app URLs)",
    )
    if account_id and not _ACCOUNT_ID.match(account_id):
        problems.append(
            f"{HARNESS_ACCOUNT_ID} has characters an account identifier never "
            "has: copy the id only (letters, digits, '-' and '_'), not a URL"
        )

    # Secret Manager values often end in a newline when created with echo; it is not
    # part of the token.
    api_key = required(
        HARNESS_API_KEY,
        "a Harness API token with core_audit_view (deploy.sh mounts it from Secret Manager)",
    )
    if api_key and any(ch.isspace() for ch in api_key):
        problems.append(
            f"{HARNESS_API_KEY} contains white space inside it: store the token "
            "alone, exactly as Harness showed it"
        )

    bucket = required(GCS_BUCKET, "the name of the bucket the SecOps feed reads")
    if bucket:
        if bucket.startswith("gs://"):
            problems.append(
                f"{GCS_BUCKET}={bucket!r}: give the bucket name only, without "
                "gs:// or a path (put the path in GCS_PREFIX)"
            )
        elif not _BUCKET_NAME.match(bucket) or ".." in bucket:
            problems.append(
                f"{GCS_BUCKET}={bucket!r} is not a valid bucket name: 3-63 "
                "lowercase letters, digits, '-', '_' or '.', starting and ending "
                "with a letter or digit"
            )

    api_base = _api_base(text(HARNESS_API_BASE, DEFAULT_API_BASE), problems)

    prefix = (text(GCS_PREFIX, DEFAULT_PREFIX) or "").strip("/")
    state_key = text(STATE_KEY, DEFAULT_STATE_KEY).lstrip("/")
    warnings: list[str] = []
    if state_key.endswith("/"):
        problems.append(
            f"{STATE_KEY}={state_key!r} names a folder: give an object name, "
            f"e.g. {DEFAULT_STATE_KEY}"
        )
    elif prefix == "" or state_key.startswith(prefix + "/"):
        warnings.append(
            f"{STATE_KEY}={state_key!r} lies under {GCS_PREFIX}={prefix!r}: the SecOps feed "
            "will try to ingest it, and 'delete transferred files' would delete it. Move it "
            f"outside the prefix (default {DEFAULT_STATE_KEY})"
        )

    page_size = integer(PAGE_SIZE, 100, 1, 100)
    start_minutes_back = integer(START_MINUTES_BACK, 60, 1, 525_600, " minutes")
    modules = _filter_list(FILTER_MODULES, text(FILTER_MODULES), "CD,CI,CORE", problems)
    actions = _filter_list(FILTER_ACTIONS, text(FILTER_ACTIONS), "CREATE,UPDATE,DELETE", problems)

    static_filter = text(STATIC_FILTER)
    if static_filter is not None:
        static_filter = static_filter.upper()
        if static_filter not in STATIC_FILTERS:
            problems.append(
                f"{STATIC_FILTER}={static_filter!r} is not one of "
                f"{', '.join(STATIC_FILTERS)}: pick one, or unset it"
            )
            static_filter = None

    max_retries = integer(MAX_RETRIES, 8, 0, 20)
    max_run_seconds = integer(
        MAX_RUN_SECONDS,
        480,
        10,
        FUNCTION_TIMEOUT_LIMIT - 1,
        " seconds (below the function timeout, at most 540 s for event-driven functions)",
    )
    overlap_seconds = integer(OVERLAP_SECONDS, 600, 0, 86_400, " seconds")
    max_object_bytes = _object_bytes(text(MAX_OBJECT_MB), problems)
    max_requests_per_minute = integer(MAX_REQUESTS_PER_MINUTE, 360, 0, 1000, " (0: no pacing)")

    output_format = OutputFormat.API
    raw_format = text(OUTPUT_FORMAT)
    if raw_format is not None:
        try:
            output_format = parse_output_format(raw_format)
        except ValueError as exc:
            problems.append(f"{OUTPUT_FORMAT}: {exc}")

    if problems:
        raise ConfigError(problems)
    return Config(
        account_id=account_id,
        api_key=api_key,
        bucket=bucket,
        api_base=api_base,
        prefix=prefix,
        state_key=state_key,
        page_size=page_size,
        start_minutes_back=start_minutes_back,
        modules=modules,
        actions=actions,
        static_filter=static_filter,
        max_retries=max_retries,
        max_run_seconds=max_run_seconds,
        overlap_seconds=overlap_seconds,
        max_object_bytes=max_object_bytes,
        output_format=output_format,
        max_requests_per_minute=max_requests_per_minute,
        warnings=tuple(warnings),
    )


def _api_base(raw: str, problems: list[str]) -> str:
    parts = urlsplit(raw)
    fix = (
        "use https://app.harness.io (or your Harness host, e.g. https://app.harness.io/"
        "gateway); plain http is accepted only for a loopback host in local runs"
    )
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems.append(f"{HARNESS_API_BASE}={raw!r} is not an http(s) URL: {fix}")
        return raw
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        problems.append(f"{HARNESS_API_BASE}={raw!r} would send the API key unencrypted: {fix}")
    if parts.query or parts.fragment or parts.username or parts.password:
        problems.append(
            f"{HARNESS_API_BASE}={raw!r} must not carry credentials, a query or a fragment: {fix}"
        )
    return raw.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _filter_list(name: str, raw: str | None, example: str, problems: list[str]) -> tuple:
    if raw is None:
        return ()
    words = tuple(word.strip() for word in raw.split(",") if word.strip())
    bad = [word for word in words if not _FILTER_WORD.match(word)]
    if bad:
        problems.append(
            f"{name} has values that are not upper-case words: "
            f"{', '.join(map(repr, bad))}: write a comma-separated list such as "
            f"{example}"
        )
    return words


def _object_bytes(raw: str | None, problems: list[str]) -> int:
    if raw is None:
        return 8_000_000
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    # Up to 8 MB an upload is a single request, which keeps if_generation_match cheap.
    if not 0.001 <= megabytes <= 8:
        problems.append(
            f"{MAX_OBJECT_MB}={raw!r} must be a number of megabytes from 0.001 "
            "to 8, or unset for the default 8"
        )
        return 8_000_000
    return int(megabytes * 1_000_000)
