"""deploy.sh with SECOPS_INSTANCE: the feed made, kept and removed through the collector's own
``feed`` command (Google's client against the Feeds API stand-in); and the Harness preflight
against the simulator, before the first change."""

import sys

import pytest
from deploy_sandbox import API_KEY, BUCKET, Sandbox

from devtools.fake_feeds import FakeFeeds
from devtools.harness_simulator import HarnessSimulator

INSTANCE = "7e5b1c2a-9d3f-4e8a-b6c1-0a2d4f6e8b9c"


@pytest.fixture
def harness():
    with_key = HarnessSimulator(account_id="AcmeAcct_01", api_key=API_KEY)
    with_key.start()
    yield with_key
    with_key.stop()


@pytest.fixture
def feeds():
    with FakeFeeds() as fake:
        yield fake


@pytest.fixture
def sandbox(tmp_path):
    return Sandbox(tmp_path, real_source=True)


def secops_env(feeds: FakeFeeds, **more) -> dict:
    return {
        "HARNESS_AUDIT_PYTHON": sys.executable,
        "SECOPS_INSTANCE": INSTANCE,
        "SECOPS_REGION": "us",
        "SECOPS_API_ENDPOINT": feeds.endpoint,
        "SECOPS_SERVICE_ACCOUNT": None,
        **more,
    }


def feed_grants(result, account: str) -> list[str]:
    return [change for change in result.changes if account in change]


def test_deploy_grants_the_feed_account_then_creates_the_feed_once(sandbox, feeds):
    first = sandbox.run("--yes", env=secops_env(feeds))
    assert first.returncode == 0, first.output
    (feed,) = feeds.feeds.values()
    assert feed["details"]["gcsV2Settings"]["bucketUri"] == f"gs://{BUCKET}/harness/audit/"
    assert feed_grants(first, feeds.account) == [
        f"storage buckets add-iam-policy-binding gs://{BUCKET} roles/storage.objectViewer "
        f"serviceAccount:{feeds.account}",
        f"storage buckets add-iam-policy-binding gs://{BUCKET} roles/storage.legacyBucketReader "
        f"serviceAccount:{feeds.account}",
    ]
    assert "feed ensure" in first.stdout and "Feed settings for Google SecOps" not in first.output
    assert [request.method for request in feeds.changes()] == ["POST"]

    again = sandbox.run("--yes", env=secops_env(feeds))
    assert again.returncode == 0, again.output
    assert again.changes == [] and [r.method for r in feeds.changes()] == ["POST"]

    moved = sandbox.run("--dry-run", env=secops_env(feeds, GCS_PREFIX="audit/harness"))
    assert moved.returncode == 0, moved.output
    assert "would update" in moved.stdout and "feed ensure" in moved.stdout
    assert [r.method for r in feeds.changes()] == ["POST"]

    removed = sandbox.run("--destroy", "--yes", env=secops_env(feeds))
    assert removed.returncode == 0, removed.output
    assert feeds.feeds == {}
    assert len(feed_grants(removed, feeds.account)) == 2
    assert sandbox.state["iam"][f"bucket:gs://{BUCKET}"] == []


def test_a_401_stops_the_deploy_before_its_first_change(sandbox, harness):
    harness.inject("401")
    env = {"HARNESS_AUDIT_PYTHON": sys.executable, "HARNESS_API_BASE": harness.url}
    result = sandbox.run("--yes", env={**env, "SKIP_HARNESS_CHECK": None})
    assert result.returncode != 0
    assert "HTTP 401" in result.stderr and "expired" in result.stderr
    assert "nothing was changed" in result.stderr
    assert result.changes == []
    assert API_KEY not in result.output

    skipped = sandbox.run(
        "--dry-run", "--skip-harness-check", env={**env, "SKIP_HARNESS_CHECK": None}
    )
    assert skipped.returncode == 0, skipped.output
    assert "Harness check skipped (--skip-harness-check)" in skipped.output


def test_a_redeploy_without_the_key_checks_the_stored_one(sandbox, harness):
    env = {"HARNESS_AUDIT_PYTHON": sys.executable, "HARNESS_API_BASE": harness.url}
    assert sandbox.run("--yes", env=env).returncode == 0  # stores the key
    env |= {"SKIP_HARNESS_CHECK": None, "HARNESS_API_KEY": None}
    result = sandbox.run("--dry-run", env=env)
    assert result.returncode == 0, result.output
    assert "Harness accepted the key" in result.output
    assert [request.api_key_ok for request in harness.requests] == [True]
