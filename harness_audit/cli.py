"""Command line for operators: ``python -m harness_audit COMMAND``, one row of COMMANDS each.
Each reads only its settings, through the function's own ``load_config``, and never takes the
lease or writes the checkpoint. Every failure is one line on stderr, never a traceback."""

import argparse
import contextlib
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from harness_audit import feed, status, verify
from harness_audit.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from harness_audit.clock import Clock, SystemClock
from harness_audit.config import ALL, BY_NAME, SETTINGS, Config, load_config
from harness_audit.errors import CollectorError, ConfigError, NeedsFix
from harness_audit.gcs import open_bucket
from harness_audit.logs import LOGGER_NAME, clean, register_secret

PROG = "python -m harness_audit"
_USAGE = "2  a bad argument or setting, no Google login, access refused"
_FAILED = "3  Harness or Cloud Storage kept failing: run it again later"


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    exit_codes: tuple[str, ...]
    run: Callable[[argparse.Namespace, Config, Clock, TextIO, Mapping[str, str]], int]
    arguments: tuple[tuple[str, dict], ...] = ()  # add_argument's name and options
    settings: tuple[str, ...] = ALL  # what it reads; the others stay at their defaults, unread
    optional: tuple[str, ...] = ()  # settings it reads that may be missing


def _check_config(args, config: Config, clock: Clock, out: TextIO, environ) -> int:
    """Print each setting as the function will use it, NAME=value (the key left out)."""
    for setting in SETTINGS:
        value = getattr(config, setting.field)
        if setting.name == "MAX_OBJECT_MB":
            value = f"{value / 1e6:g}"
        elif isinstance(value, tuple):
            value = ",".join(value)
        if setting.name != "HARNESS_API_KEY":
            out.write(f"{setting.name}={'' if value is None else value}\n")
    return EXIT_OK


def _status(args, config: Config, clock: Clock, out: TextIO, environ) -> int:
    bucket = open_bucket(config.bucket)
    return status.run(config, bucket, clock, out, args.json, feed.status_section(environ, config))


COMMANDS = (
    Command(
        "verify",
        "compare Harness with the bucket hour by hour over [--since, --until), up to the "
        "checkpoint's watermark less OVERLAP_SECONDS; --repair writes what is missing into new "
        "create-only repair objects",
        ("1  events missing or written twice", _USAGE + ", an unreadable checkpoint", _FAILED),
        lambda args, config, clock, out, environ: verify.run(
            config, open_bucket(config.bucket), clock, verify.request_from(args), out
        ),
        (
            ("--since", {"required": True, "help": "start, ISO 8601 UTC (inclusive)"}),
            ("--until", {"required": True, "help": "end, ISO 8601 UTC (exclusive)"}),
            ("--repair", {"action": "store_true", "help": "write what is missing"}),
            ("--json", {"action": "store_true", "help": "one JSON object per line"}),
            ("--force", {"action": "store_true", "help": "allow a range over 31 days"}),
        ),
    ),
    Command(
        "status",
        "read the checkpoint (read-only): watermark and lag, window in progress, lease",
        ("1  lag over ALERT_LAG_MINUTES, or a checkpoint the collector cannot go on from", _USAGE),
        _status,
        (("--json", {"action": "store_true", "help": "one JSON object"}),),
        settings=("GCS_BUCKET", "GCS_PREFIX", "STATE_KEY", "ALERT_LAG_MINUTES"),
    ),
    Command(
        "check-config",
        "check the function's settings as it will at load (deploy.sh runs this first); print "
        "each as NAME=value, or each problem on a line of its own",
        ("2  a setting the function would refuse",),
        _check_config,
        (("--api-key-stdin", {"action": "store_true", "help": "read HARNESS_API_KEY from stdin"}),),
        optional=("HARNESS_API_KEY",),
    ),
    Command(
        "feed",
        "ensure or destroy the Google SecOps feed that reads GCS_PREFIX (SECOPS_* settings; "
        "deploy.sh runs it)",
        ("1  a SecOps API call failed: run it again later", _USAGE),
        lambda args, config, clock, out, environ: feed.command(args, config, environ, out),
        (
            ("action", {"choices": ("ensure", "destroy")}),
            ("--dry-run", {"action": "store_true", "help": "say what, change nothing"}),
        ),
        settings=("GCS_BUCKET", "GCS_PREFIX"),
    ),
    Command(
        "preflight",
        "one listing request to Harness for the last minute: is the key accepted?",
        ("2  Harness refused the key (401, 403) or a setting is invalid", _FAILED),
        lambda args, config, clock, out, environ: feed.preflight(config, clock, out),
    ),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit itself
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Operate the Harness audit collector.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        required = {n for n in command.settings if BY_NAME[n].required} - set(command.optional)
        reads = ", ".join(n + (" (required)" if n in required else "") for n in command.settings)
        codes = "".join(f"\n  {line}" for line in ("0  all well", *command.exit_codes))
        sub = commands.add_parser(
            command.name,
            help=command.summary,
            description=textwrap.fill(command.summary, 78),
            epilog=textwrap.fill(f"reads the environment variables {reads}", 78)
            + f"\n\nexit codes:{codes}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for name, options in command.arguments:
            sub.add_argument(name, **options)
    return parser


class _Lines(logging.StreamHandler):
    """The package's log lines, short and redacted, on stderr: stdout carries the report."""

    def format(self, record: logging.LogRecord) -> str:
        fields = ", ".join(f"{key}={value}" for key, value in getattr(record, "fields", {}).items())
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        return clean(line + (f" ({fields})" if fields else ""))


@contextlib.contextmanager
def _logs_to(stream: TextIO):
    logger, handler = logging.getLogger(LOGGER_NAME), _Lines(stream)
    handler.setLevel(logging.WARNING)
    saved = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else list(argv)
    named = next((word for word in argv if not word.startswith("-")), "")
    command = next((c for c in COMMANDS if c.name == named), None)
    title = f"harness_audit {named}" if command else "harness_audit"
    try:
        try:
            args = build_parser().parse_args(argv)
        except UsageError as problem:
            raise UsageError(f"{problem} (see python -m {title} --help)") from None
        if getattr(args, "api_key_stdin", False):
            environ = {**environ, "HARNESS_API_KEY": sys.stdin.read()}
        config = load_config(environ, command.settings, command.optional)
        register_secret(config.api_key)
        with _logs_to(stderr):
            for warning in config.warnings:
                stderr.write(clean(f"warning: {warning}") + "\n")
            return command.run(args, config, clock or SystemClock(), stdout, environ)
    except SystemExit:  # --help (argparse's other exits go through _Parser.error)
        return EXIT_OK
    except ConfigError as problem:  # check-config: one line each, as deploy.sh reads them
        code, lines = EXIT_USAGE, problem.problems if named == "check-config" else [str(problem)]
    except (UsageError, NeedsFix) as problem:  # NeedsFix: a rejected key, refused access, ...
        code, lines = EXIT_USAGE, [str(problem)]
    except CollectorError as problem:
        code, lines = EXIT_FAILED, [str(problem)]
    except KeyboardInterrupt:
        code, lines = 130, ["interrupted"]
    except Exception as unexpected:  # a defect: still one line
        name = type(unexpected).__name__
        code, lines = EXIT_FAILED, [f"unexpected {name}: {str(unexpected)[:500]}; please report it"]
    for line in lines:
        stderr.write(f"{title}: error: {' '.join(clean(line).split())}\n")
    stderr.flush()
    return code
