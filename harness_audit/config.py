"""Every setting's name, default, rule and message, in one table (SETTINGS), which the function,
the operator commands and deploy.sh (check-config) read alike through ``load_config``."""

import contextlib
import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, make_dataclass
from urllib.parse import urlsplit

from harness_audit.errors import ConfigError
from harness_audit.layout import OutputFormat

# Event-driven Cloud Run functions time out after at most 540 s.
FUNCTION_TIMEOUT_LIMIT = 540
# GCS object names are at most 1,024 bytes; names built under the prefix add up to 124.
MAX_OBJECT_NAME_BYTES = 1024
MAX_PREFIX_BYTES = 900
# Up to 8 MB an upload is a single request, which keeps if_generation_match cheap.
MAX_OBJECT_MEGABYTES = 8
STATIC_FILTERS = ("EXCLUDE_LOGIN_EVENTS", "EXCLUDE_SYSTEM_EVENTS")
_ACME_PREFIX = ".well-known/acme-challenge/"  # reserved by GCS for domain verification


@dataclass(frozen=True)
class Setting:
    name: str
    field: str
    default: str | None  # as written in the environment; None: no value unless set
    parse: Callable[["Setting", str], object]  # ValueError: the problem, with its fix
    required: str = ""  # for a setting without a default: what to set it to


def shown(value: str) -> str:
    """``repr(value)`` (which shows control characters), cut at 80 characters."""
    return repr(value) if len(value) <= 80 else f"{value[:80]!r}… ({len(value)} characters)"


def _integer(low: int, high: int, unit: str = ""):
    def parse(s: Setting, raw: str) -> int:
        fix = f"set it to an integer from {low} to {high}{unit}, or unset it for the default"
        # Not int() alone: it also takes "1_000" and "٣", and refuses over 4,300 digits.
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", raw):
            raise ValueError(f"{s.name}={shown(raw)} is not a whole number: {fix} {s.default}")
        if not low <= int(raw) <= high:
            raise ValueError(f"{s.name}={int(raw)} is out of range: {fix} {s.default}")
        return int(raw)

    return parse


def _account_id(s: Setting, raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", raw):
        raise ValueError(
            f"{s.name} has characters an account identifier never has: copy the id only "
            "(letters, digits, '-' and '_'), not a URL"
        )
    return raw


def _api_key(s: Setting, key: str) -> str:
    """It travels in the x-api-key header, which http.client encodes as Latin-1; Harness tokens
    are printable ASCII. Positions are safe to show, the characters are not."""
    bad = [i for i, ch in enumerate(key, 1) if not "!" <= ch <= "~"]
    if bad:
        at = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{s.name} has white space or characters that are not printable ASCII inside it (at "
            f"position {at}), so it cannot be sent in an HTTP header: copy the token again from "
            "Harness, as plain text, and store it alone"
        )
    return key


def _bucket(s: Setting, raw: str) -> str:
    """Cloud Storage's published rules (cloud.google.com/storage/docs/naming-buckets)."""
    if (
        not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", raw)
        or any(not 0 < len(label) <= 63 for label in raw.split("."))
        or re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", raw)
        or raw.startswith("goog")
        or re.search("g[o0][o0]g[l1]e", raw)
    ):
        raise ValueError(
            f"{s.name}={shown(raw)} is not a valid bucket name: give the name only, without gs:// "
            "or a path (put the path in GCS_PREFIX): 3-63 lowercase letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit (up to 222 with dots, 63 between "
            "dots); not an IP address, not starting with 'goog', not containing 'google'"
        )
    return raw


def _api_base(s: Setting, raw: str) -> str:
    """A URL urllib3 sends to exactly the host it names (urlsplit drops tabs and newlines
    and reads a backslash differently), and the key never in clear over the network."""
    with contextlib.suppress(ValueError):  # urlsplit's, or a port's out of range
        parts = urlsplit(raw)
        host, ip = parts.hostname or "", None
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(host)
        local = host == "localhost" or (ip and ip.is_loopback)
        if (
            (parts.scheme == "https" or (parts.scheme == "http" and local))
            and (re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host) or ip)
            and parts.port != 0
            and not any(ch.isspace() or _is_control(ch) or ch in "\\?#" for ch in raw)
            and "@" not in parts.netloc
        ):
            return raw.rstrip("/")
    raise ValueError(
        f"{s.name}={shown(raw)} is not a usable Harness URL: https, a DNS host name (in its "
        "xn-- form if international) and a port from 1 to 65535, without white space, "
        "backslash, credentials, query or fragment (plain http only for a loopback host "
        "in local runs): use https://app.harness.io, or your Harness host"
    )


def _object_name(max_bytes: int = MAX_OBJECT_NAME_BYTES, folder: bool = False):
    """GCS's object naming rules. GCS names have no root ("/harness/audit/" can only mean
    "harness/audit"); only a ``folder`` (the prefix) may end in "/"."""

    def parse(s: Setting, raw: str) -> str:
        if raw.endswith("/") and not folder:
            raise ValueError(
                f"{s.name}={shown(raw)} names a folder, not an object: give an object name, "
                f"e.g. {s.default}"
            )
        name = raw.strip("/")
        if (
            any(_is_control(ch) for ch in name)
            or any(segment in (".", "..") for segment in name.split("/"))
            or (name + "/").startswith(_ACME_PREFIX)
        ):
            raise ValueError(
                f"{s.name}={shown(raw)} is not a usable object name: use UTF-8 without control "
                "characters (line breaks, tabs), without '.' or '..' segments (GCS tools resolve "
                f"them away), and not under {_ACME_PREFIX} (GCS reserves it)"
            )
        if (size := len(name.encode("utf-8"))) > max_bytes:
            raise ValueError(
                f"{s.name} is {size} bytes long: keep it to {max_bytes} bytes of UTF-8 (names "
                f"built from it must stay under GCS's {MAX_OBJECT_NAME_BYTES}-byte limit)"
            )
        return name

    return parse


def _words(example: str):
    def parse(s: Setting, raw: str) -> tuple[str, ...]:
        words = tuple(word.strip() for word in raw.split(",") if word.strip())
        bad = [word for word in words if not re.fullmatch(r"[A-Z][A-Z0-9_]*", word)]
        if bad:
            raise ValueError(
                f"{s.name} has values that are not upper-case words: "
                f"{', '.join(map(shown, bad))}: write a comma-separated list such as {example}"
            )
        return words

    return parse


def _object_bytes(s: Setting, raw: str) -> int:
    megabytes = float(raw) if re.fullmatch(r"[0-9]*\.?[0-9]+", raw) else math.nan
    if not 0.001 <= megabytes <= MAX_OBJECT_MEGABYTES:  # NaN fails both
        raise ValueError(
            f"{s.name}={shown(raw)} must be a number of megabytes from 0.001 to "
            f"{MAX_OBJECT_MEGABYTES}, or unset for the default {s.default}"
        )
    return int(megabytes * 1_000_000)


def _choice(values: Mapping[str, object]):
    """One of a few words, in any case; ``values`` maps each word to what it stands for."""
    by_word = {word.lower(): value for word, value in values.items()}

    def parse(s: Setting, raw: str) -> object:
        if raw.lower() not in by_word:
            default = f" for the default {s.default}" if s.default else ""
            raise ValueError(
                f"{s.name}={shown(raw)} is not one of {', '.join(values)}: set it to "
                f"{' or '.join(values)}, or unset it{default}"
            )
        return by_word[raw.lower()]

    return parse


def _topic(s: Setting, raw: str) -> str:
    project, topic = r"[a-z][a-z0-9-]{4,28}[a-z0-9]", r"(?!goog)[A-Za-z][\w.~+%-]{2,254}"
    if not re.fullmatch(f"projects/{project}/topics/{topic}", raw, re.ASCII):
        raise ValueError(
            f"{s.name}={shown(raw)} is not a full topic name: write it as projects/<project-id>/"
            "topics/<topic-id>: a project id of 6-30 lowercase letters, digits and hyphens, "
            "starting with a letter; a topic id of 3-255 letters, digits and - _ . ~ + %, "
            "starting with a letter and not with 'goog' (reserved)"
        )
    return raw


SETTINGS = (
    Setting(
        "HARNESS_ACCOUNT_ID", "account_id", None, _account_id,
        "your Harness account identifier (Account Settings > Overview, or the id in app URLs)",
    ),
    # Secret Manager values often end in a newline; load_config strips it.
    Setting(
        "HARNESS_API_KEY", "api_key", None, _api_key,
        "a Harness API token with core_audit_view (deploy.sh mounts it from Secret Manager)",
    ),
    Setting("GCS_BUCKET", "bucket", None, _bucket, "the name of the bucket the SecOps feed reads"),
    Setting("HARNESS_API_BASE", "api_base", "https://app.harness.io", _api_base),
    Setting("GCS_PREFIX", "prefix", "harness/audit", _object_name(MAX_PREFIX_BYTES, folder=True)),
    # Outside the prefix: the SecOps feed reads everything under it, and its "delete
    # transferred files" option would delete a checkpoint kept there.
    Setting("STATE_KEY", "state_key", "harness/state/audit-state.json", _object_name()),
    Setting("PAGE_SIZE", "page_size", "100", _integer(1, 100)),
    Setting("START_MINUTES_BACK", "start_minutes_back", "60", _integer(1, 525_600, " minutes")),
    Setting("FILTER_MODULES", "modules", "", _words("CD,CI,CORE")),
    Setting("FILTER_ACTIONS", "actions", "", _words("CREATE,UPDATE,DELETE")),
    Setting("STATIC_FILTER", "static_filter", None, _choice({f: f for f in STATIC_FILTERS})),
    Setting("MAX_RETRIES", "max_retries", "8", _integer(0, 20)),
    Setting(
        "MAX_RUN_SECONDS", "max_run_seconds", "480",
        _integer(10, FUNCTION_TIMEOUT_LIMIT - 1, " s (below the function timeout, at most 540 s)"),
    ),
    Setting("OVERLAP_SECONDS", "overlap_seconds", "600", _integer(0, 86_400, " seconds")),
    Setting("MAX_OBJECT_MB", "max_object_bytes", str(MAX_OBJECT_MEGABYTES), _object_bytes),
    Setting("OUTPUT_FORMAT", "output_format", "api", _choice({f.value: f for f in OutputFormat})),
    # Harness documents no limit; one request per 167 ms stays well below its 429s.
    Setting(
        "MAX_REQUESTS_PER_MINUTE", "max_requests_per_minute", "360",
        _integer(0, 1000, " requests a minute (0 turns pacing off)"),
    ),
    Setting("TRIGGER_TOPIC", "trigger_topic", None, _topic),
    # Three hours without progress is an outage worth a page, not a slow afternoon.
    Setting("ALERT_LAG_MINUTES", "alert_lag_minutes", "180", _integer(1, 525_600, " minutes")),
    # false: the scheduled verify (command=verify) reports what is missing without writing it.
    Setting("VERIFY_REPAIR", "verify_repair", "true", _choice({"true": True, "false": False})),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}
ALL = tuple(BY_NAME)
# One attribute per setting, the key kept out of repr; warnings: worth saying, not stopping for.
Config = make_dataclass(
    "Config",
    [(s.field, object, field(repr=s.field != "api_key")) for s in SETTINGS]
    + [("warnings", tuple[str, ...], field(default=()))],
    frozen=True,
)


def load_config(
    environ: Mapping[str, str], names: Collection[str] = ALL, optional: Collection[str] = ()
) -> Config:
    """The settings ``names`` from ``environ`` (the others at their defaults, unread); raise
    ConfigError listing every problem. Those in ``optional`` may be missing."""
    values, problems = {}, []
    for s in SETTINGS:
        raw = (environ.get(s.name) or "").strip() if s.name in names else ""
        if not raw and s.required and s.name in names and s.name not in optional:
            problems.append(f"{s.name} is not set: set it to {s.required}")
        raw = raw or s.default
        try:
            values[s.field] = s.parse(s, raw) if raw is not None else ("" if s.required else None)
        except ValueError as bad:
            problems += bad.args
    if problems:
        raise ConfigError(problems)
    prefix, state_key = values["prefix"], values["state_key"]
    warning = (
        f"STATE_KEY={shown(state_key)} lies under GCS_PREFIX={shown(prefix)}: the SecOps feed "
        "will try to ingest it, and 'delete transferred files' would delete it. Move it outside "
        f"the prefix (default {BY_NAME['STATE_KEY'].default})"
    )
    under = prefix == "" or state_key.startswith(prefix + "/")
    return Config(**values, warnings=(warning,) if under else ())


def _is_control(ch: str) -> bool:
    # Cc: controls and DEL; Cf: invisible format characters; Cs: lone surrogates.
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs")
