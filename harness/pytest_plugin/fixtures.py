"""The plugin's fixtures: `run_scenario` (the way a scenario module runs), the session's settings,
and the guards that make a missing Redis or Docker engine a clear skip or failure."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator

import pytest

from harness.pytest_plugin.session import broken_entry, progress_for, redis_auth_for, settings, summary

__all__ = [
    "chaos_settings",
    "docker_engine",
    "docker_required",
    "redis_server_binary",
    "run_scenario",
    "skip_or_fail_without_docker",
]


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    from harness.backends.base import EnvironmentMissing
    from harness.backends.local.redis_server import find_redis_server

    try:
        return find_redis_server()
    except EnvironmentMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def chaos_settings(pytestconfig: pytest.Config) -> dict:
    """seed, run_id, report_dir, backend, fix, profile, redis_auth (the mode) of this session."""
    return dict(settings(pytestconfig))


def skip_or_fail_without_docker() -> None:
    """No Docker engine: skip with how to enable it, or fail where Docker is required (CI)."""
    from harness.backends.docker.engine import HOW_TO_ENABLE, docker_problem

    problem = docker_problem()
    if problem:
        message = f"docker backend: {problem}; to enable: {HOW_TO_ENABLE}"
        if docker_required():
            pytest.fail(f"Docker required (CI=true or HARNESS_REQUIRE_DOCKER=1): {message}", pytrace=False)
        pytest.skip(message)


def docker_required() -> bool:
    """CI=true or HARNESS_REQUIRE_DOCKER=1: a missing Docker engine is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("HARNESS_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """The docker backend's session guard: an engine answers, the images exist, pulls raise.

    No engine: skip with how to enable it, or fail under CI=true / HARNESS_REQUIRE_DOCKER=1.
    Missing images: fail with the build command. Leftovers of dead runs are removed first.
    """
    from harness.backends.docker.reaper import reap_leftovers  # sets RYUK_DISABLED

    skip_or_fail_without_docker()
    import harness.backends.docker.images as images

    restore = images.forbid_pulls()
    try:
        try:
            images.require_images([images.service_image(), images.redis_image()])
        except images.ImagesMissing as exc:
            pytest.fail(f"docker backend: {exc}", pytrace=False)
        reap_leftovers()
        yield
    finally:
        restore()


@pytest.fixture
def run_scenario(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Callable:
    """`run_scenario(scenario) -> ScenarioResult`, with this session's backend, fix, seed and profile.

    The result goes into summary.json; the test asserts on `result.passed`. A scenario that makes
    no sense on the session's backend is skipped with the reason.
    """
    from harness.run import run_scenario as run
    from harness.run.runner import target_skip_reason

    s = settings(pytestconfig)
    request.getfixturevalue("docker_engine" if s["backend"] == "docker" else "redis_server_binary")

    def runner(scenario, **overrides):
        reason = scenario.skip_reason(s["backend"]) or target_skip_reason(scenario, s["services"].get("target"))
        if reason is not None:
            pytest.skip(reason)
        kwargs = {
            "fix": s["fix"],
            "seed": s["seed"],
            "report_dir": s["report_dir"],
            "profile": s["profile"],
            "backend": s["backend"],
            "repair_cmd": s["repair_cmd"],
            "run_id": s["run_id"],
            "services": s["services"],
        }
        progress = progress_for(pytestconfig, request.node.nodeid)
        if progress is not None and "on_history" not in overrides:
            kwargs["on_history"] = functools.partial(progress.attach, name=scenario.name)
        kwargs.update(overrides)
        # --redis-auth: run_scenario applies `services` to the StackConfig it built from the
        # scenario (dataclasses.replace), for either backend. A scenario that sets its own
        # Redis password or TLS keeps it.
        auth = redis_auth_for(pytestconfig, scenario.stack_options())
        if auth:
            kwargs["services"] = {**(kwargs.get("services") or {}), **auth}
        try:
            result = run(scenario, **kwargs)
        except BaseException:
            # A run that broke off (timeout, a stack that never came up) is listed as unknown.
            summary(pytestconfig).add(broken_entry(scenario))
            raise
        summary(pytestconfig).add(result)
        if progress is not None:
            progress.set_result(result)
        return result

    return runner
