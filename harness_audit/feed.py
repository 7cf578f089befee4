"""The Google SecOps feed that reads the bucket, through Google's own Chronicle client.

An operator's module: deploy.sh and ``status`` import it from the repository's virtualenv
(requirements-ops.txt); the function never does, so its upload and cold start do not change.
The regional endpoint is ``{region}-chronicle.googleapis.com``, the base URL Google's
Terraform provider uses for Chronicle. An ``http://`` loopback SECOPS_API_ENDPOINT (a local
stand-in) is sent no credentials, as PUBSUB_EMULATOR_HOST is.
"""

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from harness_audit.clock import Clock, Deadline, iso
from harness_audit.config import HARNESS_ACCOUNT_ID, HARNESS_API_KEY, Config, load_config
from harness_audit.errors import ConfigError, DeadlineReached, NeedsFix, TryLater
from harness_audit.listing import FIRST_PAGE, AuditQuery
from harness_audit.logs import register_secret

DEFAULT_LOOKBACK_DAYS = 180  # the API's own ceiling: a backlog written before the feed is read
DEFAULT_FUNCTION_NAME = "harness-audit-collector"
LOG_TYPE = "HARNESS_IO"
CALL_TIMEOUT_SECONDS = 60.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_REGION = re.compile(r"[a-z]+(-[a-z]+[0-9]*)?")
# The fields deploy.sh owns, as update-mask paths; anything else on the feed is left alone.
_OWNED = (
    "details.log_type",
    "details.gcs_v2_settings.bucket_uri",
    "details.gcs_v2_settings.source_deletion_option",
    "details.gcs_v2_settings.max_lookback_days",
    "details.asset_namespace",
    "details.labels",
)


@dataclass(frozen=True)
class FeedSettings:
    instance: str
    region: str
    project: str
    endpoint: str
    display_name: str
    bucket_uri: str
    lookback_days: int
    namespace: str
    labels: tuple[tuple[str, str], ...]

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/instances/{self.instance}"


def feed_settings(environ: Mapping[str, str], config: Config) -> FeedSettings | None:
    """The SECOPS_* settings; None without SECOPS_INSTANCE (the feed is managed by hand)."""
    instance = environ.get("SECOPS_INSTANCE", "").strip()
    if not instance:
        return None
    region = environ.get("SECOPS_REGION", "").strip()
    project = environ.get("SECOPS_PROJECT", "").strip() or environ.get("PROJECT_ID", "").strip()
    problems = []
    if not _UUID.fullmatch(instance):
        problems.append(f"SECOPS_INSTANCE={instance[:40]!r} is not the customer id (a UUID)")
    if not _REGION.fullmatch(region):
        problems.append(f"SECOPS_REGION={region[:40]!r} is not a location such as us, eu")
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project):
        problems.append("SECOPS_PROJECT (or PROJECT_ID) is not a project id")
    lookback = environ.get("SECOPS_MAX_LOOKBACK_DAYS", str(DEFAULT_LOOKBACK_DAYS)).strip()
    if not lookback.isdigit() or not 1 <= int(lookback) <= DEFAULT_LOOKBACK_DAYS:
        problems.append(f"SECOPS_MAX_LOOKBACK_DAYS must be 1-{DEFAULT_LOOKBACK_DAYS}")
    pairs = [item.partition("=") for item in environ.get("SECOPS_LABELS", "").split(",")]
    if any(not key.strip() or not sep for key, sep, _ in pairs if key or sep):
        problems.append("SECOPS_LABELS must read key=value,key=value")
    if problems:
        raise ConfigError(problems)
    prefix = f"{config.prefix}/" if config.prefix else ""
    return FeedSettings(
        instance=instance.lower(),
        region=region,
        project=project,
        endpoint=environ.get("SECOPS_API_ENDPOINT", "").strip()
        or f"https://{region}-chronicle.googleapis.com",
        display_name=environ.get("FUNCTION_NAME", "").strip() or DEFAULT_FUNCTION_NAME,
        bucket_uri=f"gs://{config.bucket}/{prefix}",
        lookback_days=int(lookback),
        namespace=environ.get("SECOPS_ASSET_NAMESPACE", "").strip(),
        labels=tuple(sorted((k.strip(), v.strip()) for k, _, v in pairs if k.strip())),
    )


def open_client(settings: FeedSettings):
    """Google's FeedsServiceClient over REST at the settings' endpoint."""
    from google.auth.credentials import AnonymousCredentials

    try:
        from google.cloud.chronicle_v1 import FeedsServiceClient
        from google.cloud.chronicle_v1.services.feeds_service import transports
    except ImportError:
        raise NeedsFix(
            "google-cloud-chronicle is not installed: .venv/bin/pip install -r "
            "requirements-ops.txt (make .venv/.installed does it)"
        ) from None

    parts = urlsplit(settings.endpoint if "//" in settings.endpoint else "//" + settings.endpoint)
    if parts.scheme == "http":
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(["SECOPS_API_ENDPOINT: http:// is for a loopback stand-in only"])
        transport = transports.FeedsServiceRestTransport(
            host=parts.netloc, credentials=AnonymousCredentials(), url_scheme="http"
        )
        return FeedsServiceClient(transport=transport)
    with _errors(settings, "find Google credentials"):
        return FeedsServiceClient(transport="rest", client_options={"api_endpoint": parts.netloc})


def wanted(settings: FeedSettings):
    from google.cloud.chronicle_v1 import types

    return types.Feed(
        display_name=settings.display_name,
        details=types.FeedDetails(
            feed_source_type=types.FeedDetails.FeedSourceType.GOOGLE_CLOUD_STORAGE_V2,
            log_type=f"{settings.parent}/logTypes/{LOG_TYPE}",
            gcs_v2_settings=types.GoogleCloudStorageV2Settings(
                bucket_uri=settings.bucket_uri,
                source_deletion_option=types.SourceDeletionOptionV2.NEVER,
                max_lookback_days=settings.lookback_days,
            ),
            asset_namespace=settings.namespace,
            labels=dict(settings.labels),
        ),
    )


def _field(message, path: str):
    for name in path.split("."):
        message = getattr(message, name)
    return dict(message) if path.endswith("labels") else message


def differing(current, target) -> list[str]:
    """The owned fields where the feed differs: the update mask (never the display name)."""
    return [path for path in _OWNED if _field(current, path) != _field(target, path)]


def account(client, settings: FeedSettings) -> str:
    """The email of the account the feed reads the bucket as."""
    with _errors(settings, "fetch the feed's service account"):
        found = client.fetch_service_account_for_customer(
            parent=settings.parent, timeout=CALL_TIMEOUT_SECONDS
        )
    for text in (found.subject_id, found.name.rpartition("/")[2]):
        if re.fullmatch(r"[^@\s/]+@[a-z0-9.-]+", text):
            return text
    raise NeedsFix(f"the feed's service account {found.name!r} names no email: please report it")


def find(client, settings: FeedSettings):
    """The feed named after FUNCTION_NAME, or None; two of them is for a person to sort out."""
    with _errors(settings, "list the feeds"):
        feeds = client.list_feeds(parent=settings.parent, timeout=CALL_TIMEOUT_SECONDS)
        named = [feed for feed in feeds if feed.display_name == settings.display_name]
    if len(named) > 1:
        names = ", ".join(feed.name for feed in named)
        raise NeedsFix(
            f"{len(named)} feeds are named {settings.display_name!r} ({names}): "
            "delete all but one in SecOps, then run again"
        )
    return named[0] if named else None


def ensure(client, settings: FeedSettings, *, dry_run: bool) -> list[str]:
    """Create, update, enable or leave the feed; the lines say what was (or would be) done."""
    from google.cloud.chronicle_v1 import types

    lines = [f"service account {account(client, settings)}"]
    target, current = wanted(settings), find(client, settings)
    would = "would " if dry_run else ""
    with _errors(settings, "change the feed"):
        if current is None:
            lines.append(
                f"{would}create feed {settings.display_name!r} reading {settings.bucket_uri}"
            )
            if not dry_run:
                made = client.create_feed(
                    parent=settings.parent, feed=target, timeout=CALL_TIMEOUT_SECONDS
                )
                lines.append(f"created {made.name}")
            return lines
        mask = differing(current, target)
        if mask:
            lines.append(f"{would}update {current.name}: {', '.join(mask)}")
            if not dry_run:
                target.name, target.display_name = current.name, ""  # unchanged: never sent
                client.update_feed(
                    feed=target, update_mask={"paths": mask}, timeout=CALL_TIMEOUT_SECONDS
                )
        if current.state == types.Feed.State.INACTIVE:
            lines.append(f"{would}enable {current.name}")
            if not dry_run:
                client.enable_feed(name=current.name, timeout=CALL_TIMEOUT_SECONDS)
        if len(lines) == 1:
            lines.append(f"feed {current.name} is current: nothing to change")
    return lines


def destroy(client, settings: FeedSettings, *, dry_run: bool) -> list[str]:
    current = find(client, settings)
    if current is None:
        return [f"no feed named {settings.display_name!r}: nothing to delete"]
    if not dry_run:
        with _errors(settings, "delete the feed"):
            client.delete_feed(name=current.name, timeout=CALL_TIMEOUT_SECONDS)
    return [f"{'would delete' if dry_run else 'deleted'} feed {current.name}"]


def watch(client, settings: FeedSettings) -> dict:
    """The feed's part of ``status``: state, failure, last run, and its problem if any."""
    from google.cloud.chronicle_v1 import types

    try:
        current = find(client, settings)
    except (NeedsFix, TryLater) as exc:
        return {"problem": f"feed unreadable: {exc}"}
    if current is None:
        return {"problem": f"no SecOps feed named {settings.display_name!r}: run deploy.sh"}
    details = current.failure_details
    started = current.last_feed_initiation_time
    section = {
        "name": current.name,
        "state": current.state.name,
        "failure_msg": current.failure_msg or None,
        "failure_details": types.FeedFailureDetails.to_dict(details) if details else None,
        "last_run": iso(int(started.timestamp() * 1000)) if started else None,
        "bucket_uri": current.details.gcs_v2_settings.bucket_uri,
    }
    if current.state in (types.Feed.State.INACTIVE, types.Feed.State.FAILED):
        section["problem"] = f"feed {current.state.name.lower()}"
    return section


def render(section: dict) -> list[str]:
    if "name" not in section:
        return [f"secops feed  {section['problem'].upper()}"]
    lines = [
        f"secops feed  {section['name']}",
        f"             {section['state']}, last run {section['last_run'] or 'never'}",
    ]
    if section["failure_msg"]:
        lines.append(f"             failure: {section['failure_msg']}")
    for key, value in (section["failure_details"] or {}).items():
        lines.append(f"             {key}: {value}")
    return lines


def preflight(config: Config, clock: Clock) -> str:
    """One listing request for the last minute with the key, before deploy.sh changes
    anything: a rejected key stops the deploy now, not an hour later in a log."""
    from harness_audit.harness_client import EndpointChoice, HarnessClient
    from harness_audit.pacing import Pacer

    client = HarnessClient.from_config(
        config, clock=clock, pacer=Pacer(0, clock), endpoint=EndpointChoice()
    )
    now = clock.now_ms()
    query = AuditQuery(now - 60_000, now, config.modules, config.actions, config.static_filter)
    try:
        page = client.fetch(query, FIRST_PAGE, Deadline(clock, CALL_TIMEOUT_SECONDS, 0))
    except DeadlineReached:
        raise TryLater(f"Harness did not answer within {CALL_TIMEOUT_SECONDS:.0f} s") from None
    finally:
        client.close()
    return f"Harness accepted the key: {len(page.items)} event(s) in the last minute"


@contextlib.contextmanager
def _errors(settings: FeedSettings, doing: str) -> Iterator[None]:
    """google-api-core's errors as this package's: a 403 names the role that is missing."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError
    from requests import RequestException

    where = f"could not {doing} at {settings.endpoint}"
    try:
        yield
    except (GoogleAPICallError, GoogleAuthError, RequestException) as exc:
        code, text = getattr(exc, "code", None), " ".join(str(exc).split())[:300]
        if code == 403:
            fix = f"feed changes need roles/chronicle.admin on project {settings.project}"
        elif code == 401 or isinstance(exc, GoogleAuthError):
            fix = "no usable Google login: run 'gcloud auth application-default login'"
        elif code in (400, 404):
            fix = "check SECOPS_INSTANCE, SECOPS_REGION and SECOPS_PROJECT"
        else:
            raise TryLater(f"{where}: {text}; run again later") from None
        raise NeedsFix(f"{where}: {text}. The fix: {fix}") from None


def command(args, environ: Mapping[str, str], clock: Clock, out) -> int:
    """``feed account|ensure|destroy`` and ``preflight``, for deploy.sh."""
    if args.command == "preflight":
        config = load_config(environ)
        register_secret(config.api_key)
        out.write(preflight(config, clock) + "\n")
        return 0
    # The feed needs the bucket and prefix, never the Harness key or account.
    config = load_config({HARNESS_API_KEY: "-", HARNESS_ACCOUNT_ID: "-", **environ})
    settings = feed_settings(environ, config)
    if settings is None:
        raise ConfigError(["SECOPS_INSTANCE is not set: the feed is managed by hand"])
    client = open_client(settings)
    if args.action == "account":
        lines = [account(client, settings)]
    else:
        lines = (ensure if args.action == "ensure" else destroy)(
            client, settings, dry_run=args.dry_run
        )
    out.write("\n".join(lines) + "\n")
    return 0


def status_section(environ: Mapping[str, str], config: Config) -> dict | None:
    settings = feed_settings(environ, config)
    return None if settings is None else watch(open_client(settings), settings)
