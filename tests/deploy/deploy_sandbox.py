"""A sandbox for running deploy.sh against the fake gcloud (fake_gcloud.py), offline.

Each Sandbox is a directory holding a copy of the collector's source tree (deploy.sh, its
templates, the function, the Makefile and requirement files, the repository's .venv linked in,
and with ``real_source=True`` decoys that must never be uploaded), a bin directory whose
``gcloud`` is the fake, and a tools directory linking the few other programs deploy.sh runs.
PATH is those two directories and nothing else, so a real gcloud installed on the machine can
never be reached. ``run`` returns the exit code, the output and the gcloud calls of that run.
"""

import json
import marshal
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_SCRIPT = REPO_ROOT / "deploy.sh"
GCLOUDIGNORE = REPO_ROOT / ".gcloudignore"
# What the function runs, so what must be uploaded: main.py, requirements.txt, the package.
FUNCTION_FILES = sorted(
    ["main.py", "requirements.txt"]
    + [
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "harness_audit").rglob("*.py")
        if "__pycache__" not in path.parts
    ]
)
# Files next to the function that must never be uploaded.
DECOYS = (
    "tests/unit/test_config.py",
    "devtools/run_local.py",
    "benchmarks/run.py",
    ".git/config",
    ".env",
    "local.env",
    "README.md",
    "harness_audit/__pycache__/run.cpython-312.pyc",
    "__pycache__/main.cpython-312.pyc",
)
FAKE_GCLOUD = Path(__file__).with_name("fake_gcloud.py")

PROJECT = "acme-secops"
BUCKET = "acme-harness-audit"
REGION = "us-central1"
FUNCTION = "harness-audit-collector"
RUNTIME_SA = f"{FUNCTION}-sa@{PROJECT}.iam.gserviceaccount.com"
SECOPS_SA = "chronicle-1234@chronicle-gcp-prod.iam.gserviceaccount.com"
SECRET = f"{FUNCTION}-api-key"
TOPIC = f"{FUNCTION}-trigger"
JOB = f"{FUNCTION}-schedule"
# Distinctive, so that finding it anywhere in argv or output cannot be a coincidence.
API_KEY = "hk-test-9Qw7Zr2Lx5Vb8Nm3-never-print-me"

BASE_ENV = {
    "PROJECT_ID": PROJECT,
    "GCS_BUCKET": BUCKET,
    "HARNESS_ACCOUNT_ID": "AcmeAcct_01",
    "HARNESS_API_KEY": API_KEY,
    "SECOPS_SERVICE_ACCOUNT": SECOPS_SA,
    "FILTER_MODULES": "CD,CI",
    "FILTER_ACTIONS": "CREATE,UPDATE,DELETE",
    "PAGE_SIZE": "100",
    # The preflight asks Harness; test_deploy_feed.py runs it against the simulator.
    "SKIP_HARNESS_CHECK": "1",
}

REQUIRED_APIS = [
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "cloudscheduler.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
]

# Every program deploy.sh runs besides gcloud; a new one makes the tests fail until listed here.
TOOLS = (
    "bash",
    "cat",
    "cp",
    "cut",
    "dirname",
    "env",
    "find",
    "grep",
    "make",
    "mkdir",
    "rm",
    "sed",
    "sha256sum",
    "sleep",
    "sort",
)

READ_VERBS = {"describe", "list", "get-iam-policy", "access"}
WRITE_VERBS = {
    "create",
    "deploy",
    "delete",
    "enable",
    "disable",
    "add",
    "update",
    "add-iam-policy-binding",
    "remove-iam-policy-binding",
    "set-iam-policy",
    "run",
}


@dataclass(frozen=True)
class Call:
    """One recorded gcloud call."""

    argv: list
    stdin_len: int | None
    env_has_api_key: bool
    env_vars_file: str | None
    exit: int
    config_file: str | None = None
    source_files: list | None = None

    @property
    def positionals(self) -> list:
        return [arg for arg in self.argv if not arg.startswith("--")]

    @property
    def flags(self) -> dict:
        flags = {}
        for arg in self.argv:
            if arg.startswith("--"):
                name, sep, value = arg[2:].partition("=")
                flags[name] = value if sep else True
        return flags

    @property
    def verb(self) -> str | None:
        # The group word comes first ("run services ..." is a group, not the verb "run").
        for word in self.positionals[1:]:
            if word in READ_VERBS | WRITE_VERBS:
                return word
        return None

    @property
    def changes_something(self) -> bool:
        return self.positionals[:1] != ["version"] and self.verb not in READ_VERBS

    @property
    def summary(self) -> str:
        """The positionals, then role and member for IAM calls: "storage buckets create gs://b"."""
        words = list(self.positionals)
        if "role" in self.flags:
            words += [self.flags["role"], self.flags["member"]]
        return " ".join(words)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    calls: list

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def changes(self) -> list:
        """Summaries of the calls that change something, in order."""
        return [call.summary for call in self.calls if call.changes_something]

    def the_call(self, start: str) -> Call:
        matches = [call for call in self.calls if call.summary.startswith(start)]
        assert len(matches) == 1, f"expected one call starting {start!r}, got {matches}"
        return matches[0]


class Sandbox:
    def __init__(self, root: Path, real_source: bool = False):
        self.root = root
        self.repo = root / "repo"
        self.bin = root / "bin"
        self.tools = root / "tools"
        self.log = root / "gcloud-calls.jsonl"
        self.state_file = root / "gcloud-state.json"
        (self.repo / "harness_audit").mkdir(parents=True)
        self.bin.mkdir()
        self.tools.mkdir()
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found, f"{tool} is needed to run deploy.sh"
            (self.tools / tool).symlink_to(found)
        shutil.copytree(REPO_ROOT / "deploy", self.repo / "deploy")
        # copy2 keeps the times, so that make finds the linked .venv up to date.
        for name in (
            "deploy.sh",
            ".gcloudignore",
            "Makefile",
            "requirements-dev.txt",
            "requirements-ops.txt",
        ):
            shutil.copy2(REPO_ROOT / name, self.repo / name)
        for name in FUNCTION_FILES:
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, self.repo / name)
        (self.repo / ".venv").symlink_to(REPO_ROOT / ".venv")
        for name in DECOYS if real_source else ():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text("must not be uploaded\n")
        # A shim importing a copy of the module, so that Python caches its compiled form here
        # (a script run directly is compiled again on every call, some thirty per deploy).
        shutil.copy2(FAKE_GCLOUD, self.bin / "fake_gcloud.py")
        gcloud = self.bin / "gcloud"
        gcloud.write_text(
            f"#!{sys.executable} -SE\n"
            "import sys\n"
            f"sys.path.insert(0, {str(self.bin)!r})\n"
            "from fake_gcloud import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        gcloud.chmod(0o755)

    @property
    def path_without_gcloud(self) -> str:
        """PATH for runs that must stop at "gcloud is not on PATH", before any call."""
        return str(self.tools)

    @property
    def script(self) -> Path:
        return self.repo / "deploy.sh"

    @property
    def state(self) -> dict:
        """The fake project's resources (fake_gcloud.py keeps them with marshal)."""
        return marshal.loads(self.state_file.read_bytes()) if self.state_file.exists() else {}

    def seed(self, state: dict) -> None:
        self.state_file.write_bytes(marshal.dumps(state))

    def env(self, overrides: dict | None = None, path: str | None = None) -> dict:
        """The environment of a run: BASE_ENV with overrides; an override of None unsets."""
        env = {
            "PATH": path if path is not None else f"{self.bin}:{self.tools}",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "FAKE_GCLOUD_LOG": str(self.log),
            "FAKE_GCLOUD_STATE": str(self.state_file),
            "DEPLOY_RETRY_DELAY_SECONDS": "0",
            **BASE_ENV,
        }
        for name, value in (overrides or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def calls_since(self, offset: int) -> list:
        if not self.log.exists():
            return []
        with self.log.open() as log:
            log.seek(offset)
            return [Call(**json.loads(line)) for line in log]

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def run(self, *args: str, env: dict | None = None, path: str | None = None) -> Result:
        """Run deploy.sh with no terminal: a new session, stdin from /dev/null."""
        offset = self.log_size()
        completed = subprocess.run(
            [str(self.script), *args],
            env=self.env(env, path),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
        )
        return Result(
            completed.returncode, completed.stdout, completed.stderr, self.calls_since(offset)
        )
