"""`--redis-auth password|tls`: the suite runs against a Redis that refuses anonymous clients.

Two pytest subprocesses, `--redis-auth password` and `--redis-auth tls`, each run a real scenario
(kill-worker; redis-restart over TLS), one service test and `test_fixture_stacks_follow_redis_auth`;
all must pass. That the auth was really on is proven from inside each scenario: a probe passed as
`--repair-cmd` gets the stack's own REDIS_URL every 2 s and records (in history.jsonl) that
Redis answers that URL and refuses the same address without the password (and, for tls,
refuses plain text). The password is set through $HARNESS_REDIS_PASSWORD so that the test can
look for it, and must not find it, in the output and in every file of the report.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from harness.backends.config import StackConfig
from harness.backends.local.stack import Stack
from harness.cli import commands as cli
from harness.pytest_plugin.options import REDIS_AUTH_MODES, REDIS_PASSWORD_ENV, redis_auth_fields
from harness.workload.history import NOTE, History

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

#: Runs as `--repair-cmd "{python} probe.py {redis_url}"` inside every scenario: one line on
#: what Redis at that URL accepts. Prints the scheme, never the URL (it holds the password).
PROBE = r"""
import sys
from urllib.parse import urlsplit

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.retry import Retry

url = sys.argv[1]
parts = urlsplit(url)
opts = {"socket_timeout": 2, "socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0)}


def outcome(client):
    try:
        client.ping()
        return "open"
    except (AuthenticationError, ResponseError) as exc:
        return "noauth" if "auth" in str(exc).lower() or isinstance(exc, AuthenticationError) else "error"
    except Exception:
        return "refused"


anonymous_url = parts._replace(netloc=f"{parts.hostname}:{parts.port}").geturl()
plain = Redis(host=parts.hostname, port=parts.port, **opts)
print(
    f"auth-probe scheme={parts.scheme} password={'yes' if parts.password else 'no'}"
    f" own={outcome(Redis.from_url(url, **opts))}"
    f" anonymous={outcome(Redis.from_url(anonymous_url, **opts))}"
    f" plaintext={outcome(plain)}"
)
"""

#: What the probe must see once Redis answered the stack's own URL, per mode.
EXPECTED_PROBE = {
    "password": "auth-probe scheme=redis password=yes own=open anonymous=noauth plaintext=noauth",
    "tls": "auth-probe scheme=rediss password=yes own=open anonymous=noauth plaintext=refused",
}
SCENARIOS = {"password": ("kill-worker",), "tls": ("redis-restart",)}  # ~30 s each on 2 cores
SCENARIO_FILES = {"kill-worker": "scenarios/test_kill_worker.py", "redis-restart": "scenarios/test_redis_restart.py"}
SERVICE_TEST = "tests/test_service.py::test_job_view_fields"
FIXTURE_PROBE = "tests/test_redis_auth_suite.py::test_fixture_stacks_follow_redis_auth"


def _anonymous(port: int) -> Redis:
    """A client without a password (no retries: AuthenticationError is a ConnectionError)."""
    return Redis(host="127.0.0.1", port=port, socket_timeout=3, socket_connect_timeout=3, retry=Retry(NoBackoff(), 0))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}


def _probe_lines(report_dir: Path, scenario: str) -> list[str]:
    history = History.load(report_dir / scenario / "history.jsonl")
    lines = []
    for e in history.events:
        if e.kind == NOTE and e.data.get("text") == "repair command ran":
            lines += [str(line) for line in e.data.get("output") or [] if str(line).startswith("auth-probe")]
    return lines


def _files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["password", "tls"])
def test_suite_passes_with_redis_auth_and_auth_is_really_on(mode, tmp_path):
    password = f"leak-check-{secrets.token_hex(8)}"
    report_dir = tmp_path / "report"
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    argv = [sys.executable, "-m", "pytest", *(SCENARIO_FILES[name] for name in SCENARIOS[mode])]
    argv += [SERVICE_TEST, FIXTURE_PROBE, "--redis-auth", mode, "--report-dir", str(report_dir)]
    argv += ["--repair-cmd", f"{sys.executable} {probe} {{redis_url}}", f"--junitxml={report_dir / 'junit.xml'}"]
    argv += ["-p", "no:cacheprovider", "-q"]
    env = {**_clean_env(), REDIS_PASSWORD_ENV: password}
    t0 = time.monotonic()
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=140)
    wall_s = time.monotonic() - t0
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
    suite = ElementTree.parse(report_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": len(SCENARIOS[mode]) + 2, "failures": 0, "errors": 0, "skipped": 0}, counts

    summary = json.loads((report_dir / "summary.json").read_text())
    verdicts = {s["name"]: s["verdict"] for s in summary["scenarios"]}
    assert verdicts == dict.fromkeys(SCENARIOS[mode], "pass"), verdicts
    assert json.loads((report_dir / "env.json").read_text())["redis_auth"] == mode
    assert f"--redis-auth {mode}" in (report_dir / "index.html").read_text()  # the rerun command keeps it

    # Inside every scenario, the stack's own REDIS_URL carried the password (and TLS) and Redis
    # refused the same address without it.
    for name in SCENARIOS[mode]:
        lines = _probe_lines(report_dir, name)
        assert EXPECTED_PROBE[mode] in lines, (name, lines)
        assert not [line for line in lines if "anonymous=open" in line or "plaintext=open" in line], (name, lines)

    # The password reached neither the output nor any file of the report (logs, history, junit, ...).
    assert password not in out.stdout and password not in out.stderr
    assert _files_holding(report_dir, password) == []
    print(f"--redis-auth {mode}: {len(verdicts)} scenario(s) + 2 tests passed in {wall_s:.1f} s")


def test_fixture_stacks_follow_redis_auth(pytestconfig, redis_only, stack_factory):
    """The fixtures' stacks use this session's --redis-auth (the default, none: Redis is open)."""
    mode = pytestconfig.getoption("--redis-auth")
    stack = stack_factory(workers=0)  # Redis + the API, which must reach Redis with the same URL
    for s in (redis_only, stack):
        assert s.redis.ping()
        anonymous = _anonymous(s.redis_port)
        if mode == "none":
            assert s.redis_url.startswith("redis://127.0.0.1:")
            assert anonymous.ping()
        elif mode == "password":
            assert s.redis_url.startswith("redis://:") and s.config.redis_password and not s.config.redis_tls
            with pytest.raises((AuthenticationError, ResponseError)):
                anonymous.ping()
        else:
            assert s.redis_url.startswith("rediss://:") and s.config.redis_password and s.config.redis_tls
            with pytest.raises((RedisConnectionError, RedisTimeoutError)):  # plain text to a TLS-only port
                anonymous.ping()
    assert redis_only.config.redis_password == stack.config.redis_password  # one password per run
    r = requests.get(f"{stack.api_url}/admin/redis_ping", headers=stack.admin_headers, timeout=10)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    # A test that sets its own Redis auth keeps it.
    own = stack_factory(workers=0, redis_password="own-pw-1")
    assert own.config.redis_password == "own-pw-1" and not own.config.redis_tls


@pytest.mark.parametrize("mode", REDIS_AUTH_MODES)
def test_redis_auth_fields_start_a_redis_that_refuses_anonymous_clients(mode, tmp_path):
    fields = redis_auth_fields(mode)
    assert sorted(fields) == {"none": [], "password": ["redis_password"], "tls": ["redis_password", "redis_tls"]}[mode]
    if mode != "none":
        assert fields["redis_password"] != redis_auth_fields(mode)["redis_password"]  # random each run
        assert len(fields["redis_password"]) >= 24
    stack = Stack(StackConfig(workers=0, log_dir=tmp_path / "logs", **fields))
    try:
        stack.start_redis()
        assert stack.redis.ping()
        anonymous = _anonymous(stack.redis_port)
        if mode == "none":
            assert anonymous.ping()
        elif mode == "password":
            with pytest.raises((AuthenticationError, ResponseError), match="(?i)auth"):
                anonymous.ping()
        else:
            with pytest.raises((RedisConnectionError, RedisTimeoutError)):  # plain text to a TLS-only port
                anonymous.ping()
            anonymous_url = stack.redis_url.replace(f":{fields['redis_password']}@", "")
            tls_anonymous = Redis.from_url(anonymous_url, retry=Retry(NoBackoff(), 0))
            with pytest.raises((AuthenticationError, ResponseError), match="(?i)auth"):
                tls_anonymous.ping()
    finally:
        stack.stop()


def test_redis_auth_tls_is_refused_on_the_docker_backend():
    argv = [sys.executable, "-m", "pytest", "--backend", "docker", "--redis-auth", "tls", "--co", "-q"]
    argv += ["-p", "no:cacheprovider", "tests/test_redis_auth_suite.py"]
    out = subprocess.run(argv, cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 4, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "--redis-auth tls is local-only for now" in out.stderr


def test_harness_run_passes_redis_auth_to_pytest(monkeypatch, tmp_path, capsys):
    seen: list[list[str]] = []

    class Child:
        """pytest as `harness run` sees it: exit 0, and the summary a run that judged something writes."""

        def __init__(self, argv, env=None):
            seen.append(list(argv))
            self.report_dir = Path(argv[argv.index("--report-dir") + 1])
            self.run_id = env["HARNESS_RUN_ID_HINT"]

        def wait(self, timeout=None):
            (self.report_dir / "summary.json").write_text(json.dumps({"run_id": self.run_id, "scenarios": []}))
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", Child)
    assert cli.main(["run", "--redis-auth", "password", "--report-dir", str(tmp_path)]) == 0
    assert cli.main(["run", "--report-dir", str(tmp_path)]) == 0
    assert seen[0][seen[0].index("--redis-auth") + 1] == "password"
    assert "--redis-auth" not in seen[1]
    assert cli.main(["run", "--backend", "docker", "--redis-auth", "tls"]) == cli.EXIT_USAGE
    assert "local-only" in capsys.readouterr().err
    assert len(seen) == 2  # the refused run started nothing
