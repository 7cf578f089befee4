"""Command line for operators: ``python -m harness_audit verify|status|feed|preflight``.

All read the function's own environment variables (``load_config``), so they look at
exactly the bucket, prefix, checkpoint and filters the deployed collector uses. None takes
the lease or writes the checkpoint; ``feed`` and ``preflight`` are deploy.sh's (see feed.py).

Exit codes, for all:

    0  all well
    1  a problem was found (verify: events missing or written twice; status: lag over
       ALERT_LAG_MINUTES, a checkpoint it cannot continue from, a feed missing or failing)
    2  usage or configuration: a bad argument, an invalid setting, no Google login, access
       refused by Cloud Storage or Harness, and for verify a checkpoint it cannot read (it
       then cannot tell how far the collector got). A person must change something
    3  could not finish: Harness or Cloud Storage kept failing; run it again later

Every failure is one line on stderr, never a traceback, and never shows the API key.
"""

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TextIO

from harness_audit import feed, status, verify
from harness_audit.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from harness_audit.clock import Clock, SystemClock
from harness_audit.config import Config, load_config
from harness_audit.errors import CollectorError, ConfigError, NeedsFix, StorageRejected
from harness_audit.logs import LOGGER_NAME, clean, register_secret

PROG = "python -m harness_audit"
COMMANDS = ("verify", "status", "feed", "preflight")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit itself
        raise UsageError(message)


def open_bucket(config: Config):
    """The configured bucket. With STORAGE_EMULATOR_HOST set (a local fake-gcs-server),
    anonymous credentials; otherwise Application Default Credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        client = storage.Client(project="local", credentials=AnonymousCredentials())
    else:
        try:
            client = storage.Client()
        except DefaultCredentialsError:
            raise StorageRejected(
                "no Google credentials found: run 'gcloud auth application-default login' "
                "(or set STORAGE_EMULATOR_HOST to use a local fake-gcs-server)"
            ) from None
    return client.bucket(config.bucket)


class _StderrLines(logging.Handler):
    """The package's log lines (retries, warnings), short and redacted, on stderr: stdout
    carries the report."""

    def __init__(self, stream: TextIO):
        super().__init__(logging.WARNING)
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        details = ", ".join(f"{key}={value}" for key, value in fields.items())
        line = record.getMessage() + (f" ({details})" if details else "")
        self._stream.write(clean(f"{record.levelname.lower()}: {line}") + "\n")


@contextlib.contextmanager
def _logs_to(stream: TextIO) -> Iterator[None]:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers = [_StderrLines(stream)]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, level, logger.propagate = saved[0], saved[1], saved[2]
        logger.setLevel(level)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Check what the Harness audit collector has delivered, and how it is doing.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify",
        help="compare Harness with the bucket hour by hour; --repair writes what is missing",
        description=(
            "Compare, hour by hour over [--since, --until), the events Harness lists with the "
            "ids in the bucket. Only what the collector has finished is checked: from the "
            "checkpoint's watermark less OVERLAP_SECONDS on, hours are 'in progress'."
        ),
    )
    verify.add_argument("--since", required=True, help="start, ISO 8601 UTC (inclusive)")
    verify.add_argument("--until", required=True, help="end, ISO 8601 UTC (exclusive)")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="write the missing events into new create-only repair objects",
    )
    verify.add_argument("--json", action="store_true", help="one JSON object per line")
    verify.add_argument("--force", action="store_true", help="allow a range over 31 days")
    status = commands.add_parser(
        "status",
        help="the checkpoint: watermark and lag, window in progress, lease, last objects",
        description="Read the checkpoint (read-only) and say how the collector is doing.",
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    secops = commands.add_parser("feed", help="the Google SecOps feed (SECOPS_* settings)")
    secops.add_argument("action", choices=("ensure", "destroy"))
    secops.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    commands.add_parser("preflight", help="one listing request to Harness with the key")
    return parser


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    environ = os.environ if environ is None else environ
    clock = clock or SystemClock()
    argv = sys.argv[1:] if argv is None else list(argv)
    named = next((word for word in argv if not word.startswith("-")), None)
    command = f"harness_audit {named}" if named in COMMANDS else "harness_audit"
    try:
        try:
            args = build_parser().parse_args(argv)
        except UsageError as problem:
            raise UsageError(f"{problem} (see {PROG}{command[13:]} --help)") from None
        request = verify.request_from(args) if args.command == "verify" else None
        if args.command in ("feed", "preflight"):
            with _logs_to(stderr):
                return feed.command(args, environ, clock, stdout)
        config = load_config(environ)
        register_secret(config.api_key)
        with _logs_to(stderr):
            for warning in config.warnings:
                stderr.write(clean(f"warning: {warning}") + "\n")
            bucket = open_bucket(config)
            if request is not None:
                return verify.run(config, bucket, clock, request, stdout)
            section = feed.status_section(environ, config)
            return status.run(config, bucket, clock, stdout, json_output=args.json, feed=section)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK
    except (UsageError, ConfigError) as problem:
        return _fail(stderr, command, str(problem), EXIT_USAGE)
    except NeedsFix as problem:  # also a rejected key, refused access, a corrupt checkpoint
        return _fail(stderr, command, str(problem), EXIT_USAGE)
    except CollectorError as problem:
        return _fail(stderr, command, str(problem), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail(stderr, command, "interrupted", 130)
    except Exception as unexpected:  # a defect: still one line
        return _fail(
            stderr,
            command,
            f"unexpected {type(unexpected).__name__}: {str(unexpected)[:500]}; please report it",
            EXIT_FAILED,
        )


def _fail(stderr: TextIO, command: str, message: str, code: int) -> int:
    one_line = " ".join(clean(message).split())
    stderr.write(f"{command}: error: {one_line}\n")
    stderr.flush()
    return code
