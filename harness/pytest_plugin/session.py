"""What a pytest session of the harness holds (its settings, summary, progress), and the report
written when it ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.pytest_plugin.progress import Progress
    from harness.report import RunSummary

__all__ = [
    "AUTH_FIELDS",
    "PROGRESS_KEY",
    "REDIS_AUTH_KEY",
    "SETTINGS_KEY",
    "STARTED_KEY",
    "SUMMARY_KEY",
    "broken_entry",
    "is_scenario",
    "progress_for",
    "redis_auth_for",
    "settings",
    "summary",
    "write_report",
]

SUMMARY_KEY = pytest.StashKey["RunSummary"]()
PROGRESS_KEY = pytest.StashKey["Progress"]()
SETTINGS_KEY = pytest.StashKey[dict]()
STARTED_KEY = pytest.StashKey[tuple[str, float]]()  # the session's start: ISO time, monotonic
REDIS_AUTH_KEY = pytest.StashKey[dict[str, Any]]()  # StackConfig fields of --redis-auth (holds the password)
#: StackConfig fields --redis-auth sets; a stack that sets either itself keeps its own choice.
AUTH_FIELDS = ("redis_password", "redis_tls")


def settings(config: pytest.Config) -> dict:
    return config.stash[SETTINGS_KEY]


def summary(config: pytest.Config) -> RunSummary:
    """The session's summary, made when the first scenario reports (so that a session that runs
    none never imports the report package), dated from the session's start."""
    if SUMMARY_KEY not in config.stash:
        from harness.report import RunSummary

        s = settings(config)
        config.stash[SUMMARY_KEY] = RunSummary(
            run_id=s["run_id"],
            backend=s["backend"],
            seed=s["seed"],
            fix=s["fix"],
            started_at=config.stash[STARTED_KEY][0],
            started_monotonic=config.stash[STARTED_KEY][1],
        )
    return config.stash[SUMMARY_KEY]


def is_scenario(item: pytest.Item) -> bool:
    return "run_scenario" in getattr(item, "fixturenames", ())


def redis_auth_for(config: pytest.Config, own: Any = ()) -> dict[str, Any]:
    """The StackConfig fields this session's --redis-auth adds to a stack whose own settings are
    `own` (field names): nothing when the stack chose its Redis auth itself. Holds the password:
    never print it."""
    if any(name in own for name in AUTH_FIELDS):
        return {}
    auth: dict[str, Any] = config.stash.get(REDIS_AUTH_KEY, {})
    return dict(auth)


def progress_for(config: pytest.Config, nodeid: str) -> Progress | None:
    progress = config.stash.get(PROGRESS_KEY, None)
    plugin = config.pluginmanager.get_plugin("harness-progress")
    if progress is None or plugin is None or nodeid not in plugin.nodeids:
        return None
    return progress


def write_report(config: pytest.Config) -> Path | None:
    """env.json and index.html beside summary.json; a report bug never hides the test results."""
    s = settings(config)
    try:
        from harness.report import collect_environment, render, write_environment
        from harness.run.scenario import PROFILES

        selected = bool(config.getoption("keyword", "") or config.getoption("markexpr", ""))
        env = collect_environment(
            backend=s["backend"],
            seed=s["seed"],
            fix=s["fix"],
            profile=s["profile"],
            profile_env=PROFILES[s["profile"]].env,
            scenarios_selected=selected,
            repair_cmd=s["repair_cmd"],
            redis_auth=s["redis_auth"],
        )
        write_environment(s["report_dir"], env)
        return render(s["report_dir"])
    except Exception as exc:  # noqa: BLE001 - the run's verdicts stand without the page
        print(f"harness: warning: the HTML report was not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def broken_entry(scenario) -> dict:
    return {
        "name": scenario.name,
        "fault": scenario.fault_names(),
        "verdict": "unknown",
        "jobs": dict.fromkeys(("accepted", "finished", "failed", "stuck", "lost", "duplicates")),
        "recovery_s": dict.fromkeys(("p50", "p99", "max")),
        "bound_s": None,
        "checkers": {},
    }
