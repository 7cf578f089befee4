"""deploy.sh against the real Cloud SDK's parser and upload code, offline and without credentials.

The fake gcloud (fake_gcloud.py) shows what deploy.sh asks for; these tests show that the real
gcloud understands it the same way:

- the upload: the archive gcloud builds from the --source deploy.sh passes, with gcloud's own
  zip code, holds exactly the function's files;
- the metric and policy files parse into the API's messages with nothing left unrecognised;
- every gcloud command of a deploy, a changed redeploy and a --destroy, as recorded by the
  fake, parses: replayed through the real gcloud with no account, each must stop at "no
  active account" (or succeed, for local commands) and at nothing else.

Skipped where the SDK is not installed (a failure with ``make deploy-check``); see
real_gcloud.py for how gcloud is kept from reaching Google.
"""

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from deploy_sandbox import API_KEY, FUNCTION, FUNCTION_FILES, PROJECT, REPO_ROOT, Sandbox
from real_gcloud import NO_CREDENTIALS, probe, require_sdk, run_sealed

CHANNEL = f"projects/{PROJECT}/notificationChannels/4242"


@pytest.fixture(scope="module")
def sdk():
    return require_sdk()


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """A deploy of the real function, a redeploy that changes everything it can, a destroy."""
    sandbox = Sandbox(tmp_path_factory.mktemp("lifecycle"), real_source=True)
    runs = [
        sandbox.run("--yes"),
        sandbox.run(
            "--yes",
            env={
                "HARNESS_API_KEY": API_KEY + "-rotated",
                "SCHEDULE": "*/20 * * * 1-5",
                "VERIFY_SCHEDULE": "41 3 * * *",
                "ALERT_LAG_MINUTES": "100",
                "MAX_REQUESTS_PER_MINUTE": "120",
                "NOTIFICATION_CHANNEL": CHANNEL,
            },
        ),
        sandbox.run("--destroy", "--yes"),
    ]
    for result in runs:
        assert result.returncode == 0, result.output
    return sandbox, runs


def expected_archive() -> dict:
    return {
        name: hashlib.sha256((REPO_ROOT / name).read_bytes()).hexdigest() for name in FUNCTION_FILES
    }


def archived_files(entries: dict) -> dict:
    return {name: digest for name, digest in entries.items() if digest is not None}


def test_the_upload_holds_exactly_the_function(sdk, lifecycle):
    _, runs = lifecycle
    deploy = runs[0].the_call(f"functions deploy {FUNCTION}")
    entries = probe(sdk, "zip", deploy.flags["source"])
    assert archived_files(entries) == expected_archive()


def test_the_gcloudignore_uploads_exactly_the_function_from_the_checkout(sdk, lifecycle):
    # For a hand-run `gcloud functions deploy --source=.`; the sandbox's checkout holds the
    # function, the repository's .gcloudignore and decoys (tests, .venv, .git, .env, caches).
    sandbox, _ = lifecycle
    entries = probe(sdk, "zip", str(sandbox.repo))
    assert archived_files(entries) == expected_archive()


def test_metric_and_policy_files_parse_into_the_api_messages(sdk, lifecycle):
    sandbox, _ = lifecycle
    files = sorted((sandbox.repo / ".deploy" / FUNCTION).glob("*.json"))
    assert len(files) == 10  # eight metrics, the policy, the dashboard
    kinds = {"alert-policy.json": "policy", "dashboard.json": "dashboard"}
    pairs = [(kinds.get(path.name, "metric"), str(path)) for path in files]
    unrecognised = probe(sdk, "messages", *[item for pair in pairs for item in pair])
    assert unrecognised == {str(path): [] for path in files}


def replay(sdk, argv: list) -> str | None:
    """None when the real gcloud accepts argv; otherwise what it said."""
    result = run_sealed([sdk.gcloud, *argv])
    if result.returncode == 0 or NO_CREDENTIALS in result.stderr:
        return None
    return result.stderr.strip() or f"exit {result.returncode}"


def test_every_gcloud_command_parses_in_the_real_gcloud(sdk, lifecycle):
    _, runs = lifecycle
    commands = []
    for result in runs:
        for call in result.calls:
            if call.argv not in commands:
                commands.append(call.argv)
    assert len(commands) > 40
    # The key travels on stdin only, so no command line replayed here can carry it.
    assert not any(API_KEY in arg for argv in commands for arg in argv)
    verbs = {" ".join(call.positionals[:3]) for result in runs for call in result.calls}
    needed_verbs = (
        "scheduler jobs create",
        "scheduler jobs update",
        "logging metrics update",
        "monitoring dashboards create",
        "monitoring dashboards update",
        "secrets versions list",  # the version number the function mounts
    )
    for needed in needed_verbs:
        assert needed in verbs, f"the replay does not cover {needed}"

    started = time.monotonic()
    # gcloud's start-up is CPU-bound (~0.5 s): one replay per CPU.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        problems = list(pool.map(lambda argv: replay(sdk, argv), commands))
    elapsed = time.monotonic() - started
    failures = [
        f"gcloud {' '.join(argv)}\n    -> {problem}"
        for argv, problem in zip(commands, problems, strict=True)
        if problem is not None
    ]
    assert not failures, (
        f"{len(failures)} of {len(commands)} commands fail in gcloud {sdk.version}:\n"
        + "\n".join(failures)
    )
    print(f"{len(commands)} commands parsed by gcloud {sdk.version} in {elapsed:.1f} s")
