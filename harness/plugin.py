"""The pytest plugin (registered through the `pytest11` entry point): options, markers, fixtures.

Options (one place): --backend, --profile ci|soak, --chaos-seed, --fix bundled|none,
--report-dir. A scenario module only builds a `Scenario` and calls the `run_scenario` fixture;
every result is added to the session's summary, written as ``<report-dir>/summary.json`` when
the session ends. Every test that uses `run_scenario` gets a pytest-timeout unless it set one.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from .stack import EnvironmentMissing, find_redis_server, new_run_id
from .summary import RunSummary

#: Markers this plugin uses; pyproject.toml declares the same (keep both in step).
MARKERS = {
    "chaos": "injects faults into a running stack",
    "docker": "needs a Docker engine",
    "slow": "takes more than ~30 s",
}
#: pytest-timeout per scenario test, by profile (a scenario's own deadline is far below).
SCENARIO_TIMEOUT_S = {"ci": 150, "soak": 1200}

_SUMMARY_KEY = pytest.StashKey[RunSummary]()
_SETTINGS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "chaos harness")
    group.addoption("--backend", default="local", choices=["local"], help="how stacks are realised")
    group.addoption(
        "--fix", default="bundled", choices=["bundled", "none"], help="recovery layer under test (none = stock RQ)"
    )
    group.addoption(
        "--profile",
        default="ci",
        choices=["ci", "soak"],
        help="ci: short leases, few jobs (default); soak: many more jobs",
    )
    group.addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="seed for workloads and fault schedules (default: random, shown in the header)",
    )
    group.addoption("--report-dir", default=None, help="where reports go (default: reports/out/<run-id>)")
    group.addoption(
        "--repair-cmd",
        default=None,
        help="external repair command run every 2 s during each scenario ({redis_url} and {queue} are filled in)",
    )


def pytest_configure(config: pytest.Config) -> None:
    declared = {str(line).split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in declared:  # pyproject.toml declares them here; other projects get them from us
            config.addinivalue_line("markers", f"{name}: {text}")
    seed = config.getoption("--chaos-seed", None)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    run_id = os.environ.get("HARNESS_RUN_ID_HINT") or new_run_id()
    report_dir = config.getoption("--report-dir", None)
    report_path = Path(report_dir) if report_dir else Path(config.rootpath) / "reports" / "out" / run_id
    config.stash[_SETTINGS_KEY] = {
        "seed": seed,
        "run_id": run_id,
        "report_dir": report_path.resolve(),
        "backend": config.getoption("--backend", "local"),
        "fix": config.getoption("--fix", "bundled"),
        "profile": config.getoption("--profile", "ci"),
        "repair_cmd": config.getoption("--repair-cmd", None),
    }
    # Created now so that started_at / duration_s cover the whole session.
    config.stash[_SUMMARY_KEY] = RunSummary(
        run_id=run_id,
        backend=config.getoption("--backend", "local"),
        seed=seed,
        fix=config.getoption("--fix", "bundled"),
    )


def _settings(config: pytest.Config) -> dict:
    return config.stash[_SETTINGS_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = _settings(config)
    return [
        f"chaos: seed={s['seed']} (--chaos-seed {s['seed']} repeats it) backend={s['backend']} "
        f"fix={s['fix']} profile={s['profile']}",
        f"chaos: run {s['run_id']}, reports in {s['report_dir']}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    timeout = SCENARIO_TIMEOUT_S[_settings(config)["profile"]]
    for item in items:
        if "run_scenario" in getattr(item, "fixturenames", ()) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeout))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    summary = session.config.stash.get(_SUMMARY_KEY, None)
    if summary is not None and summary.scenarios:
        path = summary.write(_settings(session.config)["report_dir"])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"chaos summary: {path}")


def _summary(config: pytest.Config) -> RunSummary:
    return config.stash[_SUMMARY_KEY]


def _broken_entry(scenario) -> dict:
    return {
        "name": scenario.name,
        "fault": scenario.fault_names(),
        "verdict": "unknown",
        "jobs": dict.fromkeys(("accepted", "finished", "failed", "stuck", "lost", "duplicates")),
        "recovery_s": dict.fromkeys(("p50", "p99", "max")),
        "bound_s": None,
        "checkers": {},
    }


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    try:
        return find_redis_server()
    except EnvironmentMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def chaos_settings(pytestconfig: pytest.Config) -> dict:
    """seed, run_id, report_dir, backend, fix, profile of this session."""
    return dict(_settings(pytestconfig))


@pytest.fixture
def run_scenario(pytestconfig: pytest.Config, redis_server_binary: str) -> Callable:
    """`run_scenario(scenario) -> ScenarioResult`, with this session's fix, seed and profile.

    The result goes into summary.json; the test asserts on `result.passed`.
    """
    from .scenario import run_scenario as run

    s = _settings(pytestconfig)

    def runner(scenario, **overrides):
        if s["backend"] not in scenario.backends:
            pytest.skip(f"scenario {scenario.name} does not support backend {s['backend']}")
        kwargs = {
            "fix": s["fix"],
            "seed": s["seed"],
            "report_dir": s["report_dir"],
            "profile": s["profile"],
            "backend": s["backend"],
            "repair_cmd": s["repair_cmd"],
            "run_id": s["run_id"],
        }
        kwargs.update(overrides)
        try:
            result = run(scenario, **kwargs)
        except BaseException:
            # A run that broke off (timeout, a stack that never came up) is listed as unknown.
            _summary(pytestconfig).add(_broken_entry(scenario))
            raise
        _summary(pytestconfig).add(result)
        return result

    return runner
