"""``feed`` and ``preflight``, and status's feed section: Google's own Chronicle client (REST)
against the local Feeds API stand-in, which checks every request against the client's types."""

import io
import json
import os
import urllib.error
import urllib.request

import pytest

from devtools.fake_feeds import FakeFeeds
from harness_audit.cli import main

pytestmark = pytest.mark.integration

INSTANCE = "0f0e0d0c-0b0a-4908-8706-050403020100"
PARENT = f"projects/secops-project/locations/eu/instances/{INSTANCE}"


@pytest.fixture
def feeds(environment):
    with FakeFeeds() as fake:
        environment.setenv("SECOPS_INSTANCE", INSTANCE)
        environment.setenv("SECOPS_REGION", "eu")
        environment.setenv("SECOPS_PROJECT", "secops-project")
        environment.setenv("SECOPS_API_ENDPOINT", fake.endpoint)
        environment.setenv("FUNCTION_NAME", "harness-audit-test")
        yield fake


def run(clock, *args):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), clock=clock, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def calls(fake):
    return [
        (request.method, request.path.removeprefix(f"/v1/{PARENT}")) for request in fake.requests
    ]


def test_first_ensure_fetches_the_account_and_creates_one_feed(feeds, clock, bucket):
    code, out, err = run(clock, "feed", "ensure")
    assert code == 0, err
    assert out.splitlines()[0] == f"service account {feeds.account}"
    assert calls(feeds) == [
        ("GET", "/feedServiceAccounts:fetchServiceAccountForCustomer"),
        ("GET", "/feeds"),
        ("POST", "/feeds"),
    ]
    assert all(request.authorization is None for request in feeds.requests)
    (created,) = feeds.feeds.values()
    assert created["displayName"] == "harness-audit-test"
    assert created["details"]["feedSourceType"] == "GOOGLE_CLOUD_STORAGE_V2"
    assert created["details"]["logType"] == f"{PARENT}/logTypes/HARNESS_IO"
    assert created["details"]["gcsV2Settings"] == {
        "bucketUri": f"gs://{bucket.name}/harness/audit/",
        "sourceDeletionOption": "NEVER",
        "maxLookbackDays": 180,
    }


def test_a_second_ensure_and_a_dry_run_change_nothing(feeds, clock):
    assert run(clock, "feed", "ensure")[0] == 0
    before = json.dumps(feeds.feeds, sort_keys=True)
    changes = len(feeds.changes())
    code, out, _ = run(clock, "feed", "ensure")
    assert code == 0 and "is current" in out
    feeds_environment = feeds  # the same stand-in: a changed prefix, dry run first
    code, out, _ = run(clock, "feed", "ensure", "--dry-run")
    assert code == 0 and "is current" in out
    assert len(feeds_environment.changes()) == changes
    assert json.dumps(feeds.feeds, sort_keys=True) == before


def test_a_dry_run_on_an_empty_instance_creates_nothing(feeds, clock):
    code, out, _ = run(clock, "feed", "ensure", "--dry-run")
    assert code == 0 and "would create feed 'harness-audit-test'" in out
    assert feeds.changes() == [] and feeds.feeds == {}


def test_a_changed_prefix_updates_only_the_bucket_uri(feeds, environment, clock, bucket):
    assert run(clock, "feed", "ensure")[0] == 0
    environment.setenv("GCS_PREFIX", "audit/harness")
    code, out, _ = run(clock, "feed", "ensure", "--dry-run")
    assert code == 0 and "would update" in out and feeds.changes()[-1].method == "POST"
    code, out, err = run(clock, "feed", "ensure")
    assert code == 0, err
    patch = feeds.changes()[-1]
    assert patch.method == "PATCH"
    assert patch.query["updateMask"] == ["details.gcsV2Settings.bucketUri"]
    assert "displayName" not in patch.body
    (feed,) = feeds.feeds.values()
    assert feed["details"]["gcsV2Settings"]["bucketUri"] == f"gs://{bucket.name}/audit/harness/"
    assert feed["displayName"] == "harness-audit-test"


def test_a_disabled_feed_is_enabled(feeds, clock):
    assert run(clock, "feed", "ensure")[0] == 0
    (name,) = feeds.feeds
    feeds.feeds[name]["state"] = "INACTIVE"
    code, out, _ = run(clock, "feed", "ensure")
    assert code == 0 and f"enable {name}" in out
    assert calls(feeds)[-1] == ("POST", name.removeprefix(PARENT) + ":enable")
    assert feeds.feeds[name]["state"] == "ACTIVE"


def test_destroy_deletes_the_feed_after_a_dry_run_that_does_not(feeds, clock):
    assert run(clock, "feed", "ensure")[0] == 0
    (name,) = feeds.feeds
    code, out, _ = run(clock, "feed", "destroy", "--dry-run")
    assert code == 0 and f"would delete feed {name}" in out and name in feeds.feeds
    code, out, _ = run(clock, "feed", "destroy")
    assert code == 0 and f"deleted feed {name}" in out and feeds.feeds == {}
    code, out, _ = run(clock, "feed", "destroy")
    assert code == 0 and "nothing to delete" in out


def test_a_403_names_the_missing_role(feeds, clock):
    feeds.fail_with(403)
    code, _, err = run(clock, "feed", "ensure")
    assert code == 2
    assert "roles/chronicle.admin on project secops-project" in err
    assert "Traceback" not in err


def test_status_shows_a_failed_feed_and_exits_1_then_0_when_active(feeds, clock):
    assert run(clock, "feed", "ensure")[0] == 0
    (name,) = feeds.feeds
    feeds.feeds[name].update(
        state="FAILED",
        failureMsg="permission denied on the bucket",
        failureDetails={"errorCode": "PERMISSION_DENIED", "errorAction": "grant the reader"},
        lastFeedInitiationTime="2025-06-10T13:00:00Z",
    )
    code, out, _ = run(clock, "status")
    assert code == 1
    assert f"secops feed  name: {name}" in out and "secops feed  state: FAILED" in out
    assert "secops feed  last_run: 2025-06-10T13:00:00" in out
    assert "secops feed  failure_msg: permission denied on the bucket" in out
    assert "grant the reader" in out and "secops feed  problem: feed failed" in out
    code, out, _ = run(clock, "status", "--json")
    document = json.loads(out)
    assert code == 1 and document["ok"] is False and "feed failed" in document["problems"]
    assert document["secops_feed"]["failure_details"]["error_code"] == "PERMISSION_DENIED"
    feeds.feeds[name].update(state="SUCCEEDED", failureMsg="", failureDetails={})
    code, out, err = run(clock, "status", "--json")
    assert code == 0, err
    assert json.loads(out)["secops_feed"]["state"] == "SUCCEEDED"


def test_status_exits_1_when_the_feed_is_missing(feeds, clock):
    code, out, _ = run(clock, "status")
    assert code == 1 and "secops feed  problem: no SecOps feed named 'harness-audit-test'" in out


def test_preflight_passes_with_a_good_key_and_stops_on_a_401(environment, harness, clock):
    code, out, err = run(clock, "preflight")
    assert code == 0, err
    assert "Harness accepted the key" in out
    assert len(harness.requests) == 1
    harness.inject("401")
    code, _, err = run(clock, "preflight")
    assert code == 2
    assert "HTTP 401" in err and "expired" in err
    harness.inject("403")
    code, _, err = run(clock, "preflight")
    assert code == 2 and "core_audit_view" in err


def test_the_stand_in_refuses_what_the_api_refuses(feeds, clock):
    """So that the tests above can fail: an unchanged display name in the mask, an unknown
    field, an output-only field on create."""
    from google.api_core.exceptions import BadRequest
    from google.cloud.chronicle_v1 import types

    from harness_audit.config import load_config
    from harness_audit.feed import feed_settings, open_client

    assert run(clock, "feed", "ensure")[0] == 0
    (name,) = feeds.feeds
    client = open_client(feed_settings(os.environ, load_config(os.environ)))
    feed = types.Feed(name=name, display_name="harness-audit-test")
    with pytest.raises(BadRequest, match="display_name is unchanged"):
        client.update_feed(feed=feed, update_mask={"paths": ["display_name"]})
    with pytest.raises(BadRequest, match="output-only"):
        client.create_feed(parent=PARENT, feed=types.Feed(name="x", display_name="y"))
    unknown = urllib.request.Request(
        f"{feeds.endpoint}/v1/{name}?updateMask=details", b'{"bogus": 1}', method="PATCH"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unknown, timeout=10)
    assert refused.value.code == 400 and b"no field named" in refused.value.read()


def test_two_feeds_of_one_name_are_left_for_a_person(feeds, clock):
    assert run(clock, "feed", "ensure")[0] == 0
    (name,) = feeds.feeds
    twin = name.rsplit("/", 1)[0] + "/made-by-hand"
    feeds.feeds[twin] = {**feeds.feeds[name], "name": twin}
    changes = len(feeds.changes())
    code, _, err = run(clock, "feed", "ensure")
    assert code == 2 and name in err and twin in err and "share a name" in err
    assert len(feeds.changes()) == changes
