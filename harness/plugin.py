"""The pytest plugin (registered through the `pytest11` entry point): options and markers."""

from __future__ import annotations

import pytest

from .stack import EnvironmentMissing, find_redis_server


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "chaos harness")
    group.addoption("--backend", default="local", choices=["local"], help="how stacks are realised")
    group.addoption(
        "--fix", default="bundled", choices=["bundled", "none"], help="recovery layer under test (none = stock RQ)"
    )


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    try:
        return find_redis_server()
    except EnvironmentMissing as exc:
        pytest.fail(str(exc))
