"""Fixtures for the deploy.sh tests: one first deploy per session, copied wherever a test needs
a project that already holds everything."""

from typing import NamedTuple

import pytest
from deploy_sandbox import Result, Sandbox


class FirstRun(NamedTuple):
    sandbox: Sandbox
    result: Result


@pytest.fixture(scope="session")
def first_run(tmp_path_factory) -> FirstRun:
    """deploy.sh --yes in an empty project, with every variable of BASE_ENV set."""
    sandbox = Sandbox(tmp_path_factory.mktemp("first"))
    result = sandbox.run("--yes")
    assert result.returncode == 0, result.output
    return FirstRun(sandbox, result)


@pytest.fixture
def deployed(tmp_path, first_run) -> Sandbox:
    """A new sandbox whose project holds what the first run created (not its later changes)."""
    sandbox = Sandbox(tmp_path)
    sandbox.seed(first_run.sandbox.state)
    return sandbox
