"""The pytest plugin (registered through the `pytest11` entry point): options, markers, fixtures.

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
"""

from __future__ import annotations

import functools
import os
import random
import secrets
import string
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import BACKENDS
from harness.backends.local.stack import EnvironmentMissing, find_redis_server, new_run_id, services_from
from harness.defaults import SCENARIO_TIMEOUT_S
from harness.pytest_plugin.progress import Progress
from harness.report.summary import RunSummary

#: Markers this plugin uses; pyproject.toml declares the same (keep both in step).
MARKERS = {
    "chaos": "injects faults into a running stack",
    "docker": "needs a Docker engine",
    "slow": "takes more than ~30 s",
}
#: pytest-timeout per scenario test, by profile (a scenario's own deadline is far below).

_SUMMARY_KEY = pytest.StashKey[RunSummary]()
_PROGRESS_KEY = pytest.StashKey[Progress]()
_SETTINGS_KEY = pytest.StashKey[dict]()
_REDIS_AUTH_KEY = pytest.StashKey[dict[str, Any]]()  # StackConfig fields of --redis-auth (holds the password)

#: --redis-auth modes. tls = a password and TLS only (rediss://, a CA made for the run).
REDIS_AUTH_MODES = ("none", "password", "tls")
#: Sets the password --redis-auth uses (default: a random one per run, never shown).
REDIS_PASSWORD_ENV = "HARNESS_REDIS_PASSWORD"
#: StackConfig fields --redis-auth sets; a stack that sets either itself keeps its own choice.
_AUTH_FIELDS = ("redis_password", "redis_tls")
_URL_SAFE = set(string.ascii_letters + string.digits + "-._~")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "chaos harness")
    group.addoption(
        "--backend",
        default="local",
        choices=list(BACKENDS),
        help="how stacks are realised: local processes (default) or docker containers (testcontainers)",
    )
    group.addoption(
        "--fix",
        default="bundled",
        help="recovery layer under test, passed to the worker command as --fix: bundled (default), none (stock RQ),"
        " or a deliberately broken one (shap-worker --help lists them)",
    )
    group.addoption(
        "--profile",
        default="ci",
        choices=["ci", "soak"],
        help="ci: short leases, few jobs (default); soak: nemesis for 5,000 jobs or 30 min (others 10x jobs)",
    )
    group.addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="seed for workloads and fault schedules (default: random, shown in the header)",
    )
    group.addoption("--report-dir", default=None, help="where reports go (default: reports/out/<run-id>)")
    group.addoption("--api-cmd", default=None, help="command that starts the API (default: [tool.harness] api_cmd)")
    group.addoption(
        "--worker-cmd", default=None, help="command that starts a worker; gets --name N (default: [tool.harness])"
    )
    group.addoption("--queue", default=None, help="RQ queue of the service under test (default: [tool.harness])")
    group.addoption(
        "--repair-cmd",
        default=None,
        help="external repair command run every 2 s during each scenario ({redis_url} and {queue} are filled in)",
    )
    group.addoption(
        "--redis-auth",
        default="none",
        choices=list(REDIS_AUTH_MODES),
        help="Redis of every stack: none (default); password (requirepass, a random password per run, never"
        f" shown; ${REDIS_PASSWORD_ENV} sets it); tls (password + TLS only, rediss://; local backend only)",
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
    backend = config.getoption("--backend", "local")
    redis_auth = config.getoption("--redis-auth", "none")
    if redis_auth == "tls" and backend != "local":
        raise pytest.UsageError(
            f"--redis-auth tls is local-only for now (the {backend} backend's Redis has no TLS);"
            " use --redis-auth password there"
        )
    password = os.environ.get(REDIS_PASSWORD_ENV) or None
    if password is not None and not set(password) <= _URL_SAFE:
        # It goes into REDIS_URL as is: letters, digits and -._~ only (the value is not shown).
        raise pytest.UsageError(f"${REDIS_PASSWORD_ENV} may hold only letters, digits and -._~")
    config.stash[_REDIS_AUTH_KEY] = redis_auth_fields(redis_auth, password=password)
    report_dir = config.getoption("--report-dir", None)
    report_path = Path(report_dir) if report_dir else Path(config.rootpath) / "reports" / "out" / run_id
    config.stash[_SETTINGS_KEY] = {
        "seed": seed,
        "run_id": run_id,
        "report_dir": report_path.resolve(),
        "backend": backend,
        "fix": config.getoption("--fix", "bundled"),
        "profile": config.getoption("--profile", "ci"),
        "repair_cmd": config.getoption("--repair-cmd", None),
        "redis_auth": redis_auth,  # the mode only: the password stays in _REDIS_AUTH_KEY
        "services": services_from(
            Path(config.rootpath) / "pyproject.toml",
            api_cmd=config.getoption("--api-cmd", None),
            worker_cmd=config.getoption("--worker-cmd", None),
            queue=config.getoption("--queue", None),
        ),
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


def redis_auth_fields(mode: str, *, password: str | None = None) -> dict[str, Any]:
    """The StackConfig fields of `--redis-auth mode`: none -> {}, password -> a password
    (`password`, else a fresh random one), tls -> the same and TLS only."""
    if mode not in REDIS_AUTH_MODES:
        raise ValueError(f"--redis-auth must be one of {', '.join(REDIS_AUTH_MODES)}, not {mode!r}")
    if mode == "none":
        return {}
    fields: dict[str, Any] = {"redis_password": password or secrets.token_hex(24)}  # argv- and URL-safe
    if mode == "tls":
        fields["redis_tls"] = True
    return fields


def redis_auth_for(config: pytest.Config, own: Any = ()) -> dict[str, Any]:
    """The StackConfig fields this session's --redis-auth adds to a stack whose own settings are
    `own` (field names): nothing when the stack chose its Redis auth itself. Holds the password:
    never print it."""
    if any(name in own for name in _AUTH_FIELDS):
        return {}
    auth: dict[str, Any] = config.stash.get(_REDIS_AUTH_KEY, {})
    return dict(auth)


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = _settings(config)
    return [
        f"chaos: seed={s['seed']} (--chaos-seed {s['seed']} repeats it) backend={s['backend']} "
        f"fix={s['fix']} profile={s['profile']} redis-auth={s['redis_auth']}",
        f"chaos: run {s['run_id']}, reports in {s['report_dir']}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    timeout = SCENARIO_TIMEOUT_S[_settings(config)["profile"]]
    for item in items:
        if "run_scenario" in getattr(item, "fixturenames", ()) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeout))


def _is_scenario(item: pytest.Item) -> bool:
    return "run_scenario" in getattr(item, "fixturenames", ())


class _ProgressPlugin:
    """Registered when scenarios were collected: drives `Progress` from pytest's hooks."""

    def __init__(self, config: pytest.Config, progress: Progress, nodeids: set[str]) -> None:
        self.config = config
        self.progress = progress
        self.nodeids = nodeids

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        """Scenario tests print their own result line, not pytest's dot, in quiet modes."""
        if config.get_verbosity() > 0 or report.nodeid not in self.nodeids or hasattr(report, "wasxfail"):
            return None
        if report.when == "call":  # no letter; the word still names the outcome in the short summary
            return report.outcome, "", report.outcome.upper()
        return None  # setup/teardown: pytest's own (nothing when they pass, "E" when they error)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid: str, location: tuple) -> None:
        if nodeid in self.nodeids:  # outside output capture, after pytest wrote its own prefix
            self.progress.start(str(location[2]).removeprefix("test_").replace("_", "-"))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        if item.nodeid not in self.nodeids:
            return
        rep = outcome.get_result()
        if rep.when == "call" or rep.failed or rep.skipped:
            self.progress.set_outcome(rep.outcome)
        if rep.skipped and isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
            self.progress.set_note(str(rep.longrepr[2]).removeprefix("Skipped: "))
        if rep.when == "teardown":
            self.progress.finish()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Progress for the scenarios: a live line on a terminal, plain lines otherwise."""
    config = session.config
    scenarios = {item.nodeid for item in session.items if _is_scenario(item)}
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not scenarios or reporter is None or config.option.collectonly:
        return
    tw = reporter._tw
    try:
        # Our own handle on the terminal: pytest captures fd 1 while a test runs.
        fd = os.dup(getattr(tw, "_file", sys.stdout).fileno())
        out = os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace")
    except (AttributeError, OSError, ValueError):
        return
    tty = os.isatty(fd)
    progress = Progress(
        total=len(scenarios),
        out=out,
        live=tty and config.get_verbosity() <= 0,
        colour=tty and not os.environ.get("NO_COLOR"),
        before_line=tw.flush,
    )
    config.stash[_PROGRESS_KEY] = progress
    config.pluginmanager.register(_ProgressPlugin(config, progress, scenarios), "harness-progress")
    config.add_cleanup(out.close)


def _progress_for(config: pytest.Config, nodeid: str) -> Progress | None:
    progress = config.stash.get(_PROGRESS_KEY, None)
    plugin = config.pluginmanager.get_plugin("harness-progress")
    if progress is None or plugin is None or nodeid not in plugin.nodeids:
        return None
    return progress


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    summary = session.config.stash.get(_SUMMARY_KEY, None)
    if summary is not None and summary.scenarios:
        path = summary.write(_settings(session.config)["report_dir"])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"chaos summary: {path}")
        page = _write_report(session.config)
        if reporter is not None and page is not None:
            reporter.write_line(f"chaos report: {page}")


def _write_report(config: pytest.Config) -> Path | None:
    """env.json and index.html beside summary.json; a report bug never hides the test results."""
    s = _settings(config)
    try:
        from harness.report.html import collect_environment, render, write_environment
        from harness.run import PROFILES

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
    """seed, run_id, report_dir, backend, fix, profile, redis_auth (the mode) of this session."""
    return dict(_settings(pytestconfig))


def skip_or_fail_without_docker() -> None:
    """No Docker engine: skip with how to enable it, or fail where Docker is required (CI)."""
    from harness.backends.docker.stack import HOW_TO_ENABLE, docker_problem

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
    from harness.backends.docker.stack import reap_leftovers  # sets RYUK_DISABLED

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

    s = _settings(pytestconfig)
    request.getfixturevalue("docker_engine" if s["backend"] == "docker" else "redis_server_binary")

    def runner(scenario, **overrides):
        reason = scenario.skip_reason(s["backend"])
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
        progress = _progress_for(pytestconfig, request.node.nodeid)
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
            _summary(pytestconfig).add(_broken_entry(scenario))
            raise
        _summary(pytestconfig).add(result)
        if progress is not None:
            progress.set_result(result)
        return result

    return runner
