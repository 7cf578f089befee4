"""./deploy.sh --destroy removes what deploy created, never the bucket or its objects, asks
first unless --yes, and has nothing to do the second time."""

import shlex

from deploy_sandbox import (
    BUCKET,
    FUNCTION,
    JOB,
    PROJECT,
    RUNTIME_SA,
    SECOPS_SA,
    SECRET,
    TOPIC,
)

RUNTIME_MEMBER = f"serviceAccount:{RUNTIME_SA}"
SECOPS_MEMBER = f"serviceAccount:{SECOPS_SA}"

DESTROY_CHANGES = [
    f"scheduler jobs delete {JOB}",
    f"scheduler jobs delete {FUNCTION}-verify",
    f"functions delete {FUNCTION}",
    f"alpha monitoring policies delete projects/{PROJECT}/alertPolicies/1001",
    f"monitoring dashboards delete projects/{PROJECT}/dashboards/2001",
    f"logging metrics delete {FUNCTION}_runs_ok",
    f"logging metrics delete {FUNCTION}_runs_failed",
    f"logging metrics delete {FUNCTION}_lag_seconds",
    f"logging metrics delete {FUNCTION}_continuations",
    f"logging metrics delete {FUNCTION}_verify_failed",
    f"logging metrics delete {FUNCTION}_events_written",
    f"logging metrics delete {FUNCTION}_verify_missing",
    f"logging metrics delete {FUNCTION}_verify_repaired",
    f"pubsub topics delete projects/{PROJECT}/topics/{TOPIC}",
    f"secrets delete projects/{PROJECT}/secrets/{SECRET}",
    f"storage buckets remove-iam-policy-binding gs://{BUCKET} roles/storage.objectUser "
    + RUNTIME_MEMBER,
    f"storage buckets remove-iam-policy-binding gs://{BUCKET} roles/storage.objectViewer "
    + SECOPS_MEMBER,
    f"storage buckets remove-iam-policy-binding gs://{BUCKET} roles/storage.legacyBucketReader "
    + SECOPS_MEMBER,
    f"iam service-accounts delete {RUNTIME_SA}",
]


def test_destroy_removes_everything_but_the_bucket_and_then_has_nothing_to_do(deployed):
    # The Harness account is not needed to take things down.
    result = deployed.run("--destroy", "--yes", env={"HARNESS_ACCOUNT_ID": None})
    assert result.returncode == 0, result.output
    assert result.changes == DESTROY_CHANGES
    state = deployed.state
    assert state["buckets"] == [f"gs://{BUCKET}"]
    assert state["iam"][f"bucket:gs://{BUCKET}"] == []
    assert (state["jobs"], state["functions"], state["topics"]) == ({}, {}, [])
    assert (state["secrets"], state["service_accounts"]) == ({}, [])
    assert (state["metrics"], state["policies"], state["dashboards"]) == ({}, {}, {})
    # The topic's IAM policy (the publisher role) went with the topic.
    assert not any(key.startswith("topic:") for key in state["iam"])
    assert f"Kept: gs://{BUCKET} and every object in it" in result.stdout

    again = deployed.run("--destroy", "--yes")
    assert again.returncode == 0, again.output
    assert again.changes == []
    assert "Nothing to remove" in again.stdout


def test_destroy_asks_first_and_refuses_without_a_terminal(deployed):
    result = deployed.run("--destroy")
    assert result.returncode == 2
    assert "pass --yes" in result.stderr
    assert result.changes == []
    assert f"scheduler job {JOB}" in result.stdout  # the list of what it would have removed


def test_destroy_dry_run_prints_the_deletions_and_keeps_the_feed_access_it_was_not_told_of(
    deployed,
):
    result = deployed.run("--destroy", "--dry-run", env={"SECOPS_SERVICE_ACCOUNT": None})
    assert result.returncode == 0, result.output
    assert result.changes == []
    # A dry run prints a script: the commands, and every other line a comment.
    printed = [
        " ".join(w for w in shlex.split(line)[1:] if not w.startswith("--"))
        for line in result.stdout.splitlines()
        if line and not line.startswith("#")
    ]
    assert printed == [
        change.split(" roles/")[0] for change in DESTROY_CHANGES if SECOPS_MEMBER not in change
    ]
    assert "SECOPS_SERVICE_ACCOUNT not set: any access granted to the feed stays" in result.stdout
