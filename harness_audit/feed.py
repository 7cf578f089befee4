"""The SecOps feed that reads the bucket, through Google's Chronicle client; and deploy.sh's
Harness preflight. For operators (requirements-ops.txt): the function never imports it.
Endpoint ``{region}-chronicle.googleapis.com``, as Google's Terraform provider has it."""

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter
from urllib.parse import urlsplit

from google.api_core.exceptions import GoogleAPICallError
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from requests import RequestException

from harness_audit.clock import Clock, Deadline, iso
from harness_audit.config import Config
from harness_audit.errors import ConfigError, DeadlineReached, NeedsFix, TryLater
from harness_audit.harness_client import HarnessClient, Pacer
from harness_audit.listing import FIRST_PAGE, AuditQuery
from harness_audit.sink import folder

PREFLIGHT_SECONDS = 60.0  # Google's client bounds each of its calls itself (30-300 s)
_RULES = {  # setting: (pattern, what it must be); in the order feed_settings unpacks them
    "SECOPS_INSTANCE": (r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", "a UUID"),
    "SECOPS_REGION": (r"[a-z]+(-[a-z]+[0-9]*)?", "a location such as us, eu, europe-west2"),
    "SECOPS_PROJECT": (r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "a project id (default PROJECT_ID)"),
    # 180 by default: a backlog written before the feed existed is still read.
    "SECOPS_MAX_LOOKBACK_DAYS": (r"[1-9][0-9]?|1[0-7][0-9]|180", "a number of days, 1-180"),
    "SECOPS_LABELS": (r"([^,=]*=[^,]*|,)*", "key=value,key=value"),
}
_FIXES = {
    403: "Feed changes need roles/chronicle.admin on project {}: grant it to the caller",
    401: "No usable Google login: run 'gcloud auth application-default login'",
    **dict.fromkeys((400, 404), "Check SECOPS_INSTANCE, SECOPS_REGION, SECOPS_PROJECT ({})"),
}
# The fields deploy.sh owns, as update-mask paths; anything else on the feed is left alone.
_OWNED = [f"details.{name}" for name in ("log_type", "asset_namespace", "labels")] + [
    f"details.gcs_v2_settings.{name}"
    for name in ("bucket_uri", "source_deletion_option", "max_lookback_days")
]


@dataclass(frozen=True)
class FeedSettings:
    parent: str  # projects/PROJECT/locations/REGION/instances/CUSTOMER_ID
    endpoint: str
    display_name: str  # FUNCTION_NAME: how deploy.sh finds its feed again
    details: dict  # the feed's FeedDetails, as the client's types take them


def feed_settings(environ: Mapping[str, str], config: Config) -> FeedSettings | None:
    """The SECOPS_* settings; None without SECOPS_INSTANCE (the feed is managed by hand)."""
    get = {name: value.strip() for name, value in environ.items()}.get
    if not get("SECOPS_INSTANCE"):
        return None
    defaults = {"SECOPS_PROJECT": get("PROJECT_ID", ""), "SECOPS_MAX_LOOKBACK_DAYS": "180"}
    values = {name: get(name) or defaults.get(name, "") for name in _RULES}
    problems = [
        f"{name}={values[name][:40]!r} is not {what}"
        for name, (pattern, what) in _RULES.items()
        if not re.fullmatch(pattern, values[name])
    ]
    if problems:
        raise ConfigError(problems)
    instance, region, project, lookback, labels = values.values()
    pairs = (item.split("=", 1) for item in labels.split(",") if item)
    parent = f"projects/{project}/locations/{region}/instances/{instance.lower()}"
    uri = f"gs://{config.bucket}/{folder(config.prefix)}"
    gcs = {"bucket_uri": uri, "source_deletion_option": "NEVER", "max_lookback_days": int(lookback)}
    details = {
        "feed_source_type": "GOOGLE_CLOUD_STORAGE_V2",
        "log_type": f"{parent}/logTypes/HARNESS_IO",
        "gcs_v2_settings": gcs,
        "asset_namespace": get("SECOPS_ASSET_NAMESPACE", ""),
        "labels": {key.strip(): value.strip() for key, value in pairs},
    }
    endpoint = get("SECOPS_API_ENDPOINT") or f"https://{region}-chronicle.googleapis.com"
    name = get("FUNCTION_NAME") or "harness-audit-collector"
    return FeedSettings(parent, endpoint, name, details)


def open_client(settings: FeedSettings):
    """Google's FeedsServiceClient over REST; anonymous for an http:// loopback stand-in."""
    try:
        from google.cloud.chronicle_v1 import FeedsServiceClient
    except ImportError:
        raise NeedsFix("no google-cloud-chronicle: pip install -r requirements-ops.txt") from None
    plain = settings.endpoint.startswith("http://")  # the library takes a bare host as https
    if plain and urlsplit(settings.endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(["SECOPS_API_ENDPOINT: http:// is for a loopback stand-in only"])
    with _errors(settings, "find Google credentials"):
        return FeedsServiceClient(
            credentials=AnonymousCredentials() if plain else None,
            transport="rest",
            client_options={"api_endpoint": settings.endpoint},
        )


def differing(current, target) -> list[str]:
    """The owned fields where the feed differs: the update mask (never the display name)."""
    return [path for path in _OWNED if attrgetter(path)(current) != attrgetter(path)(target)]


def find(client, settings: FeedSettings):
    """The feed named after FUNCTION_NAME, or None; two of them is for a person to sort out."""
    with _errors(settings, "list the feeds"):
        feeds = client.list_feeds(parent=settings.parent)
        named = [feed for feed in feeds if feed.display_name == settings.display_name]
    if len(named) > 1:
        raise NeedsFix(f"feeds {', '.join(f.name for f in named)} share a name: keep one")
    return named[0] if named else None


def ensure(client, settings: FeedSettings, current, *, dry_run: bool) -> list[str]:
    """Create, update, enable or leave the feed; the lines say what was (or would be) done."""
    from google.cloud.chronicle_v1 import types

    target = types.Feed(display_name=settings.display_name, details=settings.details)
    would, lines = "would " if dry_run else "", []
    with _errors(settings, "change the feed"):
        if current is None:
            uri = target.details.gcs_v2_settings.bucket_uri
            lines.append(f"{would}create feed {target.display_name!r} for {uri}")
            if not dry_run:
                made = client.create_feed(parent=settings.parent, feed=target)
                lines.append(f"created {made.name}")
            return lines
        if mask := differing(current, target):
            lines.append(f"{would}update {current.name}: {', '.join(mask)}")
            target.name, target.display_name = current.name, ""  # unchanged: never sent
            if not dry_run:
                client.update_feed(feed=target, update_mask={"paths": mask})
        if current.state == current.State.INACTIVE:
            lines.append(f"{would}enable {current.name}")
            if not dry_run:
                client.enable_feed(name=current.name)
    return lines or [f"feed {current.name} is current"]


def destroy(client, settings: FeedSettings, current, *, dry_run: bool) -> list[str]:
    if current is None:
        return [f"no feed named {settings.display_name!r}: nothing to delete"]
    if not dry_run:
        with _errors(settings, "delete the feed"):
            client.delete_feed(name=current.name)
    return [f"{'would delete' if dry_run else 'deleted'} feed {current.name}"]


def status_section(environ: Mapping[str, str], config: Config) -> dict | None:
    """The feed's part of ``status``: state, failure, last run, and its problem if any."""
    if (settings := feed_settings(environ, config)) is None:
        return None
    try:
        feed = find(open_client(settings), settings)
    except (NeedsFix, TryLater) as exc:
        return {"problem": f"feed unreadable: {exc}"}
    if feed is None:
        return {"problem": f"no SecOps feed named {settings.display_name!r}: run deploy.sh"}
    started = feed.last_feed_initiation_time
    section = {
        "name": feed.name,
        "state": feed.state.name,
        "failure_msg": feed.failure_msg or None,
        "failure_details": type(feed.failure_details).to_dict(feed.failure_details) or None,
        "last_run": iso(int(started.timestamp() * 1000)) if started else None,
    }
    if feed.state in (feed.State.INACTIVE, feed.State.FAILED):
        section["problem"] = f"feed {feed.state.name.lower()}"
    return section


def preflight(config: Config, clock: Clock, out) -> int:
    """One listing request for the last minute: a rejected key stops deploy.sh at once."""
    now = clock.now_ms()
    query = AuditQuery(now - 60_000, now, config.modules, config.actions, config.static_filter)
    with contextlib.closing(HarnessClient(config, clock=clock, pacer=Pacer(0, clock))) as client:
        try:
            page = client.fetch(query, FIRST_PAGE, Deadline(clock, PREFLIGHT_SECONDS, 0))
        except DeadlineReached:
            raise TryLater(f"Harness did not answer within {PREFLIGHT_SECONDS:.0f} s") from None
    out.write(f"Harness accepted the key: {len(page.items)} event(s) in the last minute\n")
    return 0


@contextlib.contextmanager
def _errors(settings: FeedSettings, doing: str) -> Iterator[None]:
    """google-api-core's errors as this package's: a 403 names the role that is missing."""
    try:
        yield
    except (GoogleAPICallError, GoogleAuthError, RequestException) as exc:
        code = 401 if isinstance(exc, GoogleAuthError) else getattr(exc, "code", None)
        text = f"could not {doing} at {settings.endpoint}: {' '.join(str(exc).split())[:300]}"
        if code not in _FIXES:
            raise TryLater(f"{text}; run again later") from None
        raise NeedsFix(f"{text}. {_FIXES[code].format(settings.parent.split('/')[1])}") from None


def command(args, config: Config, environ: Mapping[str, str], out) -> int:
    """``feed ensure|destroy``: needs the bucket and prefix, never Harness's key or account. The
    first line, the feed's account, tells deploy.sh which bucket bindings to add or remove."""
    if (settings := feed_settings(environ, config)) is None:
        raise ConfigError(["SECOPS_INSTANCE is not set: the feed is managed by hand"])
    client = open_client(settings)
    with _errors(settings, "fetch the feed's service account"):
        found = client.fetch_service_account_for_customer(parent=settings.parent)
    # v1 documents no email field: subjectId, else the name's last part, carries it.
    email = found.subject_id if "@" in found.subject_id else found.name.rpartition("/")[2]
    act = ensure if args.action == "ensure" else destroy
    lines = act(client, settings, find(client, settings), dry_run=args.dry_run)
    out.write("\n".join([f"service account {email}", *lines]) + "\n")
    return 0
