"""The Cloud SDK installed on this machine, if any, run so that it can never reach Google.

Every run gets a fresh, empty ``CLOUDSDK_CONFIG`` (no account, no credentials, no default
project), an environment without any credential or project variable, prompts, update checks,
usage reporting and the GCE metadata probe turned off, and a timeout. A command gcloud accepts
then stops at "no active account" before any request; a command it cannot parse stops earlier
with its own message.

``DEPLOY_CHECK_REQUIRE_GCLOUD=1`` (set by ``make deploy-check``) turns "gcloud is not installed"
from a skip into a failure.
"""

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("sdk_probe.py")
TIMEOUT_SECONDS = 60
# What gcloud says when a command parsed and then needed credentials.
NO_CREDENTIALS = "You do not currently have an active account selected"
# Never passed on: anything that could hold credentials, pick a project, or change gcloud.
DROPPED_PREFIXES = ("CLOUDSDK_", "GOOGLE_", "GCLOUD_", "GCE_", "BOTO_", "AWS_")
DROPPED = {"HARNESS_API_KEY", "BOTO_CONFIG"}


@dataclass(frozen=True)
class Sdk:
    gcloud: str
    version: str
    root: str
    python: str


def sealed_env(config_dir: str) -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(DROPPED_PREFIXES) and name not in DROPPED
    }
    env.update(
        HOME=config_dir,
        CLOUDSDK_CONFIG=config_dir,
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="1",
        CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="1",
        CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
        # Should anything still look for a metadata server, it finds a closed port at once.
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
    )
    return env


def run_sealed(argv: list, timeout: float = TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """Run argv (gcloud or the SDK's Python) in its own empty configuration, stdin empty."""
    with tempfile.TemporaryDirectory(prefix="gcloud-config-") as config_dir:
        return subprocess.run(
            argv,
            env=sealed_env(config_dir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@functools.cache
def find_sdk() -> Sdk | str:
    """The installed SDK, or why there is none."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "the Google Cloud SDK (gcloud) is not installed"
    info = run_sealed([gcloud, "info", "--format=json"])
    if info.returncode != 0:
        return f"'gcloud info' failed: {info.stderr.strip()}"
    details = json.loads(info.stdout)
    version = run_sealed([gcloud, "version", "--format=json"])
    return Sdk(
        gcloud=gcloud,
        version=json.loads(version.stdout).get("Google Cloud SDK", "unknown"),
        root=details["installation"]["sdk_root"],
        python=details["basic"]["python_location"],
    )


def require_sdk() -> Sdk:
    sdk = find_sdk()
    if isinstance(sdk, str):
        if os.environ.get("DEPLOY_CHECK_REQUIRE_GCLOUD") == "1":
            pytest.fail(sdk)
        pytest.skip(sdk)
    return sdk


def probe(sdk: Sdk, *args: str):
    """Run sdk_probe.py with the SDK's Python; its JSON answer."""
    result = run_sealed([sdk.python, str(PROBE), sdk.root, *args])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
