"""Configuration: read once from the environment, validated, frozen.

Every setting comes from an environment variable (names below). All problems are
reported together, each naming the variable, what is wrong and how to fix it. The API
key is kept out of ``repr`` and never logged, and no error message quotes any part of it.

A value is checked here, at configuration time, whenever a bad value would otherwise be
accepted and then fail on every run (an object name GCS refuses, a URL urllib3 cannot
use, a key that cannot be sent in an HTTP header).

Leading and trailing ``/`` of GCS_PREFIX, and a leading ``/`` of STATE_KEY, are
stripped: GCS names have no root, and ``/harness/audit`` can only mean ``harness/audit``.
"""

import ipaddress
import math
import re
import unicodedata
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
TRIGGER_TOPIC = "TRIGGER_TOPIC"
ALERT_LAG_MINUTES = "ALERT_LAG_MINUTES"
VERIFY_REPAIR = "VERIFY_REPAIR"

# The one place each default is defined: the dataclass and load_config both use these.
DEFAULT_API_BASE = "https://app.harness.io"
DEFAULT_PREFIX = "harness/audit"
# Outside the default prefix: the SecOps feed reads everything under the prefix, and its
# "delete transferred files" option would delete a state file kept there.
DEFAULT_STATE_KEY = "harness/state/audit-state.json"
DEFAULT_PAGE_SIZE = 100
DEFAULT_START_MINUTES_BACK = 60
DEFAULT_MAX_RETRIES = 8
DEFAULT_MAX_RUN_SECONDS = 480
DEFAULT_OVERLAP_SECONDS = 600
DEFAULT_MAX_OBJECT_MB = 8
DEFAULT_MAX_OBJECT_BYTES = DEFAULT_MAX_OBJECT_MB * 1_000_000
DEFAULT_OUTPUT_FORMAT = OutputFormat.API
# Harness documents no audit-API limit; 360 a minute (one request per 167 ms) stays well
# below what its gateway starts answering with 429, and a full run needs far fewer.
DEFAULT_MAX_REQUESTS_PER_MINUTE = 360
# Three hours without progress is an outage worth a page, not a slow Harness afternoon.
DEFAULT_ALERT_LAG_MINUTES = 180

STATIC_FILTERS = ("EXCLUDE_LOGIN_EVENTS", "EXCLUDE_SYSTEM_EVENTS")
# Event-driven Cloud Run functions time out after at most 540 s.
FUNCTION_TIMEOUT_LIMIT = 540
# GCS object names are at most 1,024 bytes of UTF-8.
MAX_OBJECT_NAME_BYTES = 1024
# Object names are built as <prefix>/YYYY/MM/DD/harness-audit-<start>-<end>-NNNN.jsonl
# (76 bytes after the prefix, more for repair objects and 5-digit part numbers); 124 bytes
# of headroom keep every name we build under GCS's limit.
MAX_PREFIX_BYTES = 900
# GCS refuses names under this prefix (it is reserved for domain verification).
_ACME_PREFIX = ".well-known/acme-challenge/"

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FILTER_WORD = re.compile(r"[A-Z][A-Z0-9_]*")
# int() also takes "1_000", "٣" and other forms nobody means in an environment variable.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
# Pub/Sub's resource name rules: project ids 6-30 characters, topic ids 3-255.
_TOPIC_SHAPE = re.compile(r"projects/([^/]*)/topics/([^/]*)")
_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_TOPIC_ID = re.compile(r"[A-Za-z][A-Za-z0-9._~+%-]{2,254}")
_TOPIC_FORM = "projects/<project-id>/topics/<topic-id>"
# Values longer than this are shown cut in error messages.
_SHOWN_CHARS = 80


@dataclass(frozen=True)
class Config:
    account_id: str
    api_key: str = field(repr=False)
    bucket: str
    api_base: str = DEFAULT_API_BASE
    prefix: str = DEFAULT_PREFIX
    state_key: str = DEFAULT_STATE_KEY
    page_size: int = DEFAULT_PAGE_SIZE
    start_minutes_back: int = DEFAULT_START_MINUTES_BACK
    modules: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    static_filter: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    max_run_seconds: int = DEFAULT_MAX_RUN_SECONDS
    overlap_seconds: int = DEFAULT_OVERLAP_SECONDS
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    output_format: OutputFormat = DEFAULT_OUTPUT_FORMAT
    # Requests to Harness per minute; 0 turns pacing off.
    max_requests_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE
    # projects/<project-id>/topics/<topic-id> of the topic that triggers the function.
    trigger_topic: str | None = None
    # How far behind real time the collected window may fall before it is an alert.
    alert_lag_minutes: int = DEFAULT_ALERT_LAG_MINUTES
    # Whether the scheduled verify writes what is missing into repair objects.
    verify_repair: bool = True
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
        if not _INTEGER.fullmatch(raw):
            problems.append(
                f"{name}={_shown(raw)} is not a whole number: set it to an integer from "
                f"{low} to {high}{unit}, or unset it for the default {default}"
            )
            return default
        value = int(raw)
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
    if account_id and not _ACCOUNT_ID.fullmatch(account_id):
        problems.append(
            f"{HARNESS_ACCOUNT_ID} has characters an account identifier never "
            "has: copy the id only (letters, digits, '-' and '_'), not a URL"
        )

    # Secret Manager values often end in a newline when created with echo; it is not
    # part of the token, so text() strips it.
    api_key = required(
        HARNESS_API_KEY,
        "a Harness API token with core_audit_view (deploy.sh mounts it from Secret Manager)",
    )
    problems += api_key_problems(api_key)

    bucket = required(GCS_BUCKET, "the name of the bucket the SecOps feed reads")
    if bucket:
        if bucket.startswith("gs://"):
            problems.append(
                f"{GCS_BUCKET}={_shown(bucket)}: give the bucket name only, without "
                "gs:// or a path (put the path in GCS_PREFIX)"
            )
        elif not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            problems.append(
                f"{GCS_BUCKET}={_shown(bucket)} is not a valid bucket name: 3-63 "
                "lowercase letters, digits, '-', '_' or '.', starting and ending "
                "with a letter or digit"
            )

    api_base = text(HARNESS_API_BASE, DEFAULT_API_BASE)
    problems += api_base_problems_of(api_base)
    api_base = api_base.rstrip("/")

    raw_prefix = text(GCS_PREFIX, DEFAULT_PREFIX)
    prefix = raw_prefix.strip("/")
    prefix_problems = object_name_problems(GCS_PREFIX, raw_prefix, prefix, MAX_PREFIX_BYTES)
    problems += prefix_problems

    raw_state_key = text(STATE_KEY, DEFAULT_STATE_KEY)
    state_key = raw_state_key.lstrip("/")
    state_key_problems = state_key_problems_of(raw_state_key, state_key)
    problems += state_key_problems

    warnings: list[str] = []
    valid_names = not prefix_problems and not state_key_problems
    if valid_names and (prefix == "" or state_key.startswith(prefix + "/")):
        warnings.append(
            f"{STATE_KEY}={_shown(state_key)} lies under {GCS_PREFIX}={_shown(prefix)}: "
            "the SecOps feed will try to ingest it, and 'delete transferred files' would "
            f"delete it. Move it outside the prefix (default {DEFAULT_STATE_KEY})"
        )

    page_size = integer(PAGE_SIZE, DEFAULT_PAGE_SIZE, 1, 100)
    start_minutes_back = integer(
        START_MINUTES_BACK, DEFAULT_START_MINUTES_BACK, 1, 525_600, " minutes"
    )
    modules = _filter_list(FILTER_MODULES, text(FILTER_MODULES), "CD,CI,CORE", problems)
    actions = _filter_list(FILTER_ACTIONS, text(FILTER_ACTIONS), "CREATE,UPDATE,DELETE", problems)

    static_filter = text(STATIC_FILTER)
    if static_filter is not None:
        static_filter = static_filter.upper()
        if static_filter not in STATIC_FILTERS:
            problems.append(
                f"{STATIC_FILTER}={_shown(static_filter)} is not one of "
                f"{', '.join(STATIC_FILTERS)}: pick one, or unset it"
            )
            static_filter = None

    max_retries = integer(MAX_RETRIES, DEFAULT_MAX_RETRIES, 0, 20)
    max_run_seconds = integer(
        MAX_RUN_SECONDS,
        DEFAULT_MAX_RUN_SECONDS,
        10,
        FUNCTION_TIMEOUT_LIMIT - 1,
        " seconds (below the function timeout, at most 540 s for event-driven functions)",
    )
    overlap_seconds = integer(OVERLAP_SECONDS, DEFAULT_OVERLAP_SECONDS, 0, 86_400, " seconds")
    max_object_bytes = _object_bytes(text(MAX_OBJECT_MB), problems)

    output_format = DEFAULT_OUTPUT_FORMAT
    raw_format = text(OUTPUT_FORMAT)
    if raw_format is not None:
        try:
            output_format = parse_output_format(raw_format)
        except ValueError as exc:
            problems.append(f"{OUTPUT_FORMAT}: {exc}")

    max_requests_per_minute = integer(
        MAX_REQUESTS_PER_MINUTE,
        DEFAULT_MAX_REQUESTS_PER_MINUTE,
        0,
        1000,
        " requests a minute (0 turns pacing off)",
    )

    trigger_topic = text(TRIGGER_TOPIC)
    if trigger_topic is not None:
        topic_problems = trigger_topic_problems(trigger_topic)
        problems += topic_problems
        if topic_problems:
            trigger_topic = None

    alert_lag_minutes = integer(
        ALERT_LAG_MINUTES, DEFAULT_ALERT_LAG_MINUTES, 1, 525_600, " minutes"
    )

    verify_repair = (text(VERIFY_REPAIR) or "true").lower()
    if verify_repair not in ("true", "false"):
        problems.append(f"{VERIFY_REPAIR}={_shown(verify_repair)}: set it to true or false")

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
        trigger_topic=trigger_topic,
        alert_lag_minutes=alert_lag_minutes,
        verify_repair=verify_repair != "false",
        warnings=tuple(warnings),
    )


def api_key_problems(key: str) -> list[str]:
    """What is wrong with ``key`` as an HTTP header value, without quoting any of it.

    The key travels in the x-api-key header, which http.client encodes as Latin-1: any
    other character raises UnicodeEncodeError on every request, and that traceback prints
    the character. Harness tokens are printable ASCII without spaces, so anything else is
    a copy-paste accident (a typographic quote, a non-breaking space, a second line).
    Positions are 1-based and safe to show; the characters themselves are not.
    """
    if not key:
        return []
    spaces = [i for i, ch in enumerate(key, 1) if ch.isspace()]
    others = [i for i, ch in enumerate(key, 1) if not ("!" <= ch <= "~") and not ch.isspace()]
    problems = []
    if spaces:
        problems.append(
            f"{HARNESS_API_KEY} contains white space inside it (at position "
            f"{_positions(spaces)}): store the token alone, exactly as Harness showed it"
        )
    if others:
        problems.append(
            f"{HARNESS_API_KEY} has characters that are not printable ASCII (at position "
            f"{_positions(others)}), so it cannot be sent in an HTTP header: copy the token "
            "again from Harness, as plain text, and store it alone"
        )
    return problems


def _positions(positions: list[int]) -> str:
    shown = ", ".join(map(str, positions[:5]))
    return shown + (f" and {len(positions) - 5} more" if len(positions) > 5 else "")


def api_base_problems_of(raw: str) -> list[str]:
    """What is wrong with ``raw`` as HARNESS_API_BASE; empty when it is usable."""
    fix = (
        "use https://app.harness.io (or your Harness host, e.g. https://app.harness.io/"
        "gateway); plain http is accepted only for a loopback host in local runs"
    )
    name = f"{HARNESS_API_BASE}={_shown(raw)}"
    # urlsplit silently drops tabs and newlines, and urllib3 would not: check the raw text.
    if any(ch.isspace() or _is_control(ch) for ch in raw):
        return [f"{name} contains white space or control characters: {fix}"]
    # urllib3 and urlsplit disagree on where a backslash ends the host; neither is meant.
    if "\\" in raw:
        return [f"{name} contains a backslash: {fix}"]
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return [f"{name} has an invalid host or port (ports run from 1 to 65535): {fix}"]
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [f"{name} is not an http(s) URL: {fix}"]
    problems = []
    if port == 0:
        problems.append(f"{name} has port 0 (ports run from 1 to 65535): {fix}")
    host = parts.hostname
    if not (_HOST_NAME.fullmatch(host) or _is_ip(host)):
        problems.append(
            f"{name} has a host name with characters a DNS name cannot have (write an "
            f"internationalised name in its xn-- form): {fix}"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        problems.append(f"{name} would send the API key unencrypted: {fix}")
    # urlsplit drops an empty trailing ? or #, so look at the raw text.
    if "?" in raw or "#" in raw or "@" in parts.netloc:
        problems.append(f"{name} must not carry credentials, a query or a fragment: {fix}")
    return problems


def object_name_problems(name: str, raw: str, full: str, max_bytes: int) -> list[str]:
    """GCS's object naming rules for the setting ``name``.

    ``raw`` is the value as given (shown in messages); ``full`` is the object name, or the
    prefix of the object names, made from it. An empty prefix means the bucket's root.
    """
    shown = f"{name}={_shown(raw)}"
    try:
        size = len(full.encode("utf-8"))
    except UnicodeEncodeError:
        # os.environ turns bytes that are not UTF-8 into lone surrogates.
        return [f"{shown} is not valid UTF-8: write the name in UTF-8"]
    problems = []
    if any(_is_control(ch) for ch in full):
        problems.append(
            f"{shown} contains a line break, tab or other control character, which GCS does "
            "not allow in object names: remove it"
        )
    if size > max_bytes:
        problems.append(
            f"{name} is {size} bytes long: keep it to {max_bytes} bytes of UTF-8 so that the "
            f"object names built from it stay under GCS's {MAX_OBJECT_NAME_BYTES}-byte limit"
        )
    if any(segment in (".", "..") for segment in full.split("/")):
        problems.append(
            f"{shown} has a '.' or '..' path segment, which GCS tools resolve away so the "
            "object could not be read back by that name: spell the path out without them"
        )
    # A prefix is followed by "/": ".well-known/acme-challenge" as a prefix is refused too.
    if (full + "/").startswith(_ACME_PREFIX):
        problems.append(
            f"{shown} starts with {_ACME_PREFIX}, which GCS reserves: choose another path"
        )
    return problems


def state_key_problems_of(raw: str, key: str) -> list[str]:
    """STATE_KEY must name one object GCS will store under exactly that name."""
    if key == "" or raw.endswith("/"):
        return [
            f"{STATE_KEY}={_shown(raw)} names a folder, not an object: give an object name, "
            f"e.g. {DEFAULT_STATE_KEY}"
        ]
    return object_name_problems(STATE_KEY, raw, key, MAX_OBJECT_NAME_BYTES)


def trigger_topic_problems(topic: str) -> list[str]:
    """Pub/Sub's rules for a full topic name; empty when ``topic`` follows them."""
    shown = f"{TRIGGER_TOPIC}={_shown(topic)}"
    shape = _TOPIC_SHAPE.fullmatch(topic)
    if shape is None:
        return [
            f"{shown} is not a full topic name: write it as {_TOPIC_FORM}, "
            "e.g. projects/my-project/topics/harness-audit-trigger"
        ]
    project, topic_id = shape.groups()
    problems = []
    if not _PROJECT_ID.fullmatch(project):
        problems.append(
            f"{shown} has an invalid project id: in {_TOPIC_FORM} the project id is 6-30 "
            "lowercase letters, digits and hyphens, starting with a letter and not ending "
            "with a hyphen"
        )
    if not _TOPIC_ID.fullmatch(topic_id):
        problems.append(
            f"{shown} has an invalid topic id: in {_TOPIC_FORM} the topic id is 3-255 "
            "letters, digits and - _ . ~ + %, starting with a letter"
        )
    elif topic_id.startswith("goog"):
        problems.append(
            f"{shown} has a topic id starting with 'goog', which Pub/Sub reserves: in "
            f"{_TOPIC_FORM} choose another topic id"
        )
    return problems


def _shown(value: str) -> str:
    """``repr(value)``, cut short: repr shows control characters, the cut keeps a 5 kB
    value from burying the other problems."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}… ({len(value)} characters)"


def _is_control(ch: str) -> bool:
    # Cc: C0/C1 controls and DEL; Cf: invisible format characters (zero-width space,
    # bidi overrides); Cs: lone surrogates (bytes that were not UTF-8).
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
    # _FILTER_WORD admits no control characters; repr shows any that were there.
    bad = [word for word in words if not _FILTER_WORD.fullmatch(word)]
    if bad:
        problems.append(
            f"{name} has values that are not upper-case words: "
            f"{', '.join(_shown(word) for word in bad)}: write a comma-separated list such "
            f"as {example}"
        )
    return words


def _object_bytes(raw: str | None, problems: list[str]) -> int:
    if raw is None:
        return DEFAULT_MAX_OBJECT_BYTES
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = math.nan
    # Up to 8 MB an upload is a single request, which keeps if_generation_match cheap.
    # (NaN fails both comparisons, so it is rejected too.)
    if not 0.001 <= megabytes <= DEFAULT_MAX_OBJECT_MB:
        problems.append(
            f"{MAX_OBJECT_MB}={_shown(raw)} must be a number of megabytes from 0.001 "
            f"to {DEFAULT_MAX_OBJECT_MB}, or unset for the default {DEFAULT_MAX_OBJECT_MB}"
        )
        return DEFAULT_MAX_OBJECT_BYTES
    return int(megabytes * 1_000_000)
