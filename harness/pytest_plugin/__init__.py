"""The pytest plugin (registered through the `pytest11` entry point): options, markers, hooks.

Options (one place): --backend local|docker, --profile ci|soak, --chaos-seed, --fix bundled|none,
--report-dir, --redis-auth none|password|tls. A scenario module only builds a `Scenario` and calls
the `run_scenario` fixture; every result is added to the session's summary, written as
``<report-dir>/summary.json`` when the session ends. Every test that uses `run_scenario` gets a
pytest-timeout unless it set one.

`--redis-auth` applies to every stack of the session (run_scenario's, and fixtures.stacks'
stack_factory / service_stack / redis_only through `redis_auth_for`): Redis starts with
`requirepass` and a random password made for the run (`password`), and speaks only TLS with a
CA made for the run (`tls`, local backend only). The password is never printed or written to
a report; `$HARNESS_REDIS_PASSWORD` sets it instead (tests that look for leaks use it).

Light on purpose: every pytest session of a project that has the package installed loads this
module, so it imports pytest and the harness's settings only; the stack, the runner and the
report load when a scenario first needs them.
"""

from __future__ import annotations

import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.defaults import SCENARIO_TIMEOUT_S
from harness.pytest_plugin.options import (
    MARKERS,
    REDIS_PASSWORD_ENV,
    URL_SAFE,
    add_options,
    redis_auth_fields,
)
from harness.pytest_plugin.session import (
    PROGRESS_KEY,
    REDIS_AUTH_KEY,
    SETTINGS_KEY,
    STARTED_KEY,
    SUMMARY_KEY,
    is_scenario,
    settings,
    write_report,
)

__all__ = [
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_sessionfinish",
]

#: The plugin's fixtures (run_scenario, chaos_settings, docker_engine, redis_server_binary).
pytest_plugins = ["harness.pytest_plugin.fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    declared = {str(line).split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in declared:  # pyproject.toml declares them here; other projects get them from us
            config.addinivalue_line("markers", f"{name}: {text}")
    seed = config.getoption("--chaos-seed", None)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    from harness.backends.config import new_run_id

    run_id = os.environ.get("HARNESS_RUN_ID_HINT") or new_run_id()
    backend = config.getoption("--backend", "local")
    redis_auth = config.getoption("--redis-auth", "none")
    if redis_auth == "tls" and backend != "local":
        raise pytest.UsageError(
            f"--redis-auth tls is local-only for now (the {backend} backend's Redis has no TLS);"
            " use --redis-auth password there"
        )
    password = os.environ.get(REDIS_PASSWORD_ENV) or None
    if password is not None and not set(password) <= URL_SAFE:
        # It goes into REDIS_URL as is: letters, digits and -._~ only (the value is not shown).
        raise pytest.UsageError(f"${REDIS_PASSWORD_ENV} may hold only letters, digits and -._~")
    config.stash[REDIS_AUTH_KEY] = redis_auth_fields(redis_auth, password=password)
    report_dir = config.getoption("--report-dir", None)
    report_path = Path(report_dir) if report_dir else Path(config.rootpath) / "reports" / "out" / run_id
    config.stash[SETTINGS_KEY] = {
        "seed": seed,
        "run_id": run_id,
        "report_dir": report_path.resolve(),
        "backend": backend,
        "fix": config.getoption("--fix", "bundled"),
        "profile": config.getoption("--profile", "ci"),
        "repair_cmd": config.getoption("--repair-cmd", None),
        "redis_auth": redis_auth,  # the mode only: the password stays in _REDIS_AUTH_KEY
        "services": _services(config),
    }
    # Noted now so that the summary's started_at / duration_s cover the whole session.
    config.stash[STARTED_KEY] = (datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic())


def _services(config: pytest.Config) -> dict:
    """The service under test (--target, else [tool.harness], else ours), or a usage error."""
    from harness.backends.config import services_from
    from harness.targets.target import TargetError

    try:
        services = services_from(
            Path(config.rootpath) / "pyproject.toml",
            target=config.getoption("--target", None),
            api_cmd=config.getoption("--api-cmd", None),
            worker_cmd=config.getoption("--worker-cmd", None),
            queue=config.getoption("--queue", None),
        )
        services["target"].headers(os.environ)  # a header's variable that is not set: say so now
        services["target"].worker_command(config.getoption("--fix", "bundled"))
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    target = services["target"]
    if config.getoption("--backend", "local") == "docker" and target.name != "shap-service":
        raise pytest.UsageError(
            f"target {target.name}: the docker backend runs this repository's image only; use --backend local"
        )
    return services


def _header(config: pytest.Config) -> list[str]:
    s = settings(config)
    return [
        f"chaos: seed={s['seed']} (--chaos-seed {s['seed']} repeats it) backend={s['backend']} "
        f"fix={s['fix']} profile={s['profile']} redis-auth={s['redis_auth']} target={s['services']['target'].name}",
        f"chaos: run {s['run_id']}, reports in {s['report_dir']}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    timeout = SCENARIO_TIMEOUT_S[settings(config)["profile"]]
    for item in items:
        if "run_scenario" in getattr(item, "fixturenames", ()) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeout))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Progress for the scenarios: a live line on a terminal, plain lines otherwise."""
    config = session.config
    scenarios = {item.nodeid for item in session.items if is_scenario(item)}
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not scenarios or reporter is None:
        return  # a session without scenarios hears nothing from the harness
    for line in _header(config):
        reporter.write_line(line)
    if config.option.collectonly:
        return
    tw = reporter._tw
    try:
        # Our own handle on the terminal: pytest captures fd 1 while a test runs.
        fd = os.dup(getattr(tw, "_file", sys.stdout).fileno())
        out = os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace")
    except (AttributeError, OSError, ValueError):
        return
    from harness.pytest_plugin.progress import Progress, ProgressPlugin

    tty = os.isatty(fd)
    progress = Progress(
        total=len(scenarios),
        out=out,
        live=tty and config.get_verbosity() <= 0,
        colour=tty and not os.environ.get("NO_COLOR"),
        before_line=tw.flush,
    )
    config.stash[PROGRESS_KEY] = progress
    config.pluginmanager.register(ProgressPlugin(config, progress, scenarios), "harness-progress")
    config.add_cleanup(out.close)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    summary = session.config.stash.get(SUMMARY_KEY, None)
    if summary is not None and summary.scenarios:
        path = summary.write(settings(session.config)["report_dir"])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"chaos summary: {path}")
        page = write_report(session.config)
        if reporter is not None and page is not None:
            reporter.write_line(f"chaos report: {page}")
