"""Fast tests of the chaos harness's pure logic: schedules, workload plans, bounds, summary, proxy.

Nothing here starts Redis or the service; the workload client runs against a tiny fake API.
"""

from __future__ import annotations

import json
import random
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.checkers import FaultsInjected, Verdict
from harness.defaults import DEFAULT_SLACK_S, FAST_LEASES, MAX_SOAK_MINUTES, SOAK_JOBS_ENV, SOAK_MINUTES_ENV
from harness.nemesis import (
    OOM,
    OOM_LOCAL_MODE,
    ApiCrash,
    FaultContext,
    KillHorse,
    KillWorker,
    NoTarget,
    PauseWorker,
    RedisPartition,
    RedisRestart,
    TermWorker,
    fault_label,
    running_jobs,
)
from harness.nemesis.proxy import TcpProxy
from harness.report import RunSummary, validate_summary
from harness.run import (
    PROFILES,
    WHEN_RUNNING,
    NemesisThread,
    Profile,
    Scenario,
    ScenarioResult,
    Soak,
    nemesis,
    recovery_bound_s,
)
from harness.wait import eventually
from harness.workload import Workload, WorkloadRun
from harness.workload.history import FAULT_HEALED, FAULT_INJECTED, NOTE, History

POOL = [KillWorker(restart=True), KillHorse(), PauseWorker(for_s=4), TermWorker(), ApiCrash(for_s=1)]


def _nemesis_scenario() -> Scenario:
    return Scenario(
        name="nemesis",
        workload=Workload(jobs=30, mix={"light": 3, "slow": 1}),
        faults=nemesis(POOL, count=5, start_s=2, every_s=(3, 5)),
    )


# -- schedules ------------------------------------------------------------------------------


def _plain(schedule):
    return [(at, type(f).__name__, f) for at, f in schedule]


def test_nemesis_schedule_is_the_same_for_the_same_seed():
    scenario = _nemesis_scenario()
    assert _plain(scenario.schedule(42)) == _plain(scenario.schedule(42))
    assert _plain(scenario.schedule("42")) == _plain(scenario.schedule(42))  # seeds are text-stable


def test_nemesis_schedule_changes_with_the_seed():
    scenario = _nemesis_scenario()
    schedules = {json.dumps([(at, name) for at, name, _ in _plain(scenario.schedule(s))]) for s in range(10)}
    assert len(schedules) > 5


def test_nemesis_schedule_spacing_and_pool():
    sched = _nemesis_scenario().schedule(7)
    times = [at for at, _ in sched]
    assert len(sched) == 5 and times[0] == 2
    assert all(3 <= b - a <= 5.001 for a, b in zip(times, times[1:], strict=False))
    assert all(type(f) in {type(p) for p in POOL} for _, f in sched)


def test_schedule_gives_fresh_faults_each_run():
    pause = PauseWorker()
    scenario = Scenario(name="s", workload=Workload(jobs=1), faults=[(WHEN_RUNNING, pause), (5, KillHorse())])
    first, second = scenario.schedule(1), scenario.schedule(1)
    assert [at for at, _ in first] == [0.0, 5.0]
    assert first[0][1] is not pause and first[0][1] is not second[0][1]
    assert first[0][1] == pause  # same settings, no shared run state


def test_schedule_rejects_bad_times_and_non_faults():
    with pytest.raises(ValueError):
        Scenario(name="s", workload=Workload(jobs=1), faults=[("soon", KillHorse())])
    with pytest.raises(TypeError):
        Scenario(name="s", workload=Workload(jobs=1), faults=[(1, object())])


def test_fault_labels_and_stack_options():
    assert fault_label(OOM()) == f"oom: {OOM_LOCAL_MODE}" == "oom: rss-watchdog (no delegated cgroup v2)"
    scenario = Scenario(
        name="s",
        workload=Workload(jobs=1),
        faults=[(1, RedisRestart()), (2, RedisPartition())],
        stack={"redis_password": "pw"},
    )
    assert scenario.stack_options() == {"redis_aof": True, "worker_redis_via_proxy": True, "redis_password": "pw"}
    config = scenario.stack_config(fix="none", profile=PROFILES["ci"], log_dir=None)
    assert config.redis_aof and config.worker_redis_via_proxy and config.fix == "none"
    assert config.env["LIVENESS_TTL"] == FAST_LEASES["LIVENESS_TTL"]
    assert scenario.fault_names() == "redis-restart, redis-partition"
    assert _nemesis_scenario().fault_names().startswith("nemesis: kill-worker, kill-horse")
    assert "redis_aof" not in _nemesis_scenario().stack_options()


# -- soak -----------------------------------------------------------------------------------


def _soak_scenario() -> Scenario:
    return Scenario(
        name="nemesis",
        workload=Workload(jobs=30, mix={"light": 3, "slow": 1}),
        faults=nemesis(POOL, count=5, start_s=2, every_s=(3, 5)),
        soak=Workload(concurrency=6, rate=3.5, mix={"light": 16, "heavy": 2, "slow": 2}, slow_s=2),
    )


def _soak_profile(**size) -> Profile:
    return Profile("soak", FAST_LEASES, job_scale=10, deadline_scale=8, soak=Soak(**size))


def test_soak_schedule_is_deterministic_and_covers_the_whole_span():
    scenario, prof = _soak_scenario(), _soak_profile(jobs=5000, minutes=30)
    plan = scenario.plan(prof, 42)
    assert _plain(plan.schedule) == _plain(scenario.plan(prof, 42).schedule)
    assert _plain(plan.schedule) != _plain(scenario.plan(prof, 43).schedule)
    times = [at for at, _ in plan.schedule]
    assert times[0] == 2 and times[-1] < 30 * 60 and times[-1] > 30 * 60 - 5  # faults until the time cap
    assert all(3 <= b - a <= 5.002 for a, b in zip(times, times[1:], strict=False))
    assert 1800 / 5 <= len(times) <= 1800 / 3 + 1
    assert {type(f) for _, f in plan.schedule} == {type(p) for p in POOL}  # every kind, over 30 minutes
    assert len({id(f) for _, f in plan.schedule}) == len(times)  # fresh instances, no shared state


def test_soak_schedule_starts_like_the_ci_one_and_a_shorter_soak_is_a_prefix():
    scenario = _soak_scenario()
    full = _plain(scenario.plan(_soak_profile(minutes=30), 7).schedule)
    short = _plain(scenario.plan(_soak_profile(minutes=2), 7).schedule)
    ci = _plain(scenario.plan(PROFILES["ci"], 7).schedule)
    key = [(at, name) for at, name, _ in full]
    assert [(at, name) for at, name, _ in short] == key[: len(short)] and short[-1][0] < 120
    assert [(at, name) for at, name, _ in ci] == key[:5]


def test_soak_plan_respects_the_job_target_and_the_time_cap():
    scenario = _soak_scenario()
    plan = scenario.plan(_soak_profile(jobs=300, minutes=2, drain_s=60), 1)
    assert plan.open_ended and plan.workload.jobs == 300 and len(plan.workload.plan(1)) == 300
    assert plan.submit_s == 120 and plan.deadline_s == 180
    assert plan.workload.rate == 3.5 and plan.workload.mix == scenario.soak.mix
    ci = scenario.plan(PROFILES["ci"], 1)
    assert not ci.open_ended and ci.submit_s is None and ci.workload == scenario.workload and len(ci.schedule) == 5
    # A scenario without a soak workload keeps the profile's plain scaling.
    plain = Scenario(name="k", workload=Workload(jobs=8), faults=[(WHEN_RUNNING, KillWorker())], deadline_s=25)
    p = plain.plan(_soak_profile(), 1)
    assert not p.open_ended and p.workload.jobs == 80 and p.deadline_s == 200 and len(p.schedule) == 1
    with pytest.raises(ValueError, match="nemesis"):
        Scenario(name="k", workload=Workload(), faults=[(1, KillWorker())], soak=Workload())


def test_the_nemesis_soak_can_submit_5000_jobs_within_30_minutes():
    from harness.defaults import SCENARIO_TIMEOUT_S
    from scenarios.test_nemesis import SCENARIO

    soak = Soak()
    assert (soak.jobs, soak.minutes) == (5000, 30)
    plan = SCENARIO.plan(_soak_profile(), 0)
    w = plan.workload
    assert w.jobs == 5000 and w.rate is not None and w.jobs / w.rate < 0.85 * soak.span_s
    kinds = [s.kind for s in w.plan(0)]
    assert kinds.count("light") > 0.7 * len(kinds) and kinds.count("slow") >= 400 and kinds.count("heavy") >= 400
    # ci bound + the capacity allowance: one more slow job (2 s) and the longest outage (pause 4 s)
    assert SCENARIO.bound_s(_soak_profile()) == 2 + 0.5 + 2 + DEFAULT_SLACK_S + 2 + 4
    assert SCENARIO.bound_s(PROFILES["ci"]) == 2 + 0.5 + 2 + DEFAULT_SLACK_S
    # pytest-timeout must outlast the longest soak a run may ask for, with its drain and final read.
    longest = Soak(minutes=MAX_SOAK_MINUTES)
    assert SCENARIO_TIMEOUT_S["soak"] >= longest.span_s + longest.drain_s + 300


def test_soak_size_comes_from_the_environment():
    assert Soak.from_env({}) == Soak()
    assert Soak.from_env({SOAK_JOBS_ENV: "300", SOAK_MINUTES_ENV: "2.5"}) == Soak(jobs=300, minutes=2.5)
    assert Soak.from_env({SOAK_JOBS_ENV: " "}) == Soak()
    for bad in ({SOAK_JOBS_ENV: "many"}, {SOAK_JOBS_ENV: "0"}, {SOAK_MINUTES_ENV: str(MAX_SOAK_MINUTES + 1)}):
        with pytest.raises(ValueError, match=SOAK_JOBS_ENV):
            Soak.from_env(bad)
    assert PROFILES["soak"].soak is not None and PROFILES["ci"].soak is None


# -- workload plan --------------------------------------------------------------------------


def test_workload_plan_is_deterministic_and_proportional():
    w = Workload(jobs=12, mix={"light": 2, "heavy": 1, "slow": 1})
    plan = w.plan(3)
    assert [s.body for s in plan] == [s.body for s in w.plan(3)]
    assert [s.body for s in plan] != [s.body for s in w.plan(4)]
    kinds = [s.kind for s in plan]
    assert (kinds.count("light"), kinds.count("heavy"), kinds.count("slow")) == (6, 3, 3)
    heavy = next(s for s in plan if s.kind == "heavy").body
    assert heavy["explainer"] == "kernel" and heavy["nsamples"] == 200 and len(heavy["rows"]) == 3
    slow = next(s for s in plan if s.kind == "slow").body
    assert slow["chaos"] == {"sleep_s": 3.0} and len(slow["rows"]) == 5 and len(slow["rows"][0]) == 10


def test_every_weighted_kind_gets_a_job():
    kinds = [s.kind for s in Workload(jobs=5, mix={"light": 20, "hungry": 1}).plan(0)]
    assert kinds.count("hungry") == 1 and len(kinds) == 5


def test_workload_validation():
    with pytest.raises(ValueError):
        Workload(mix={"medium": 1})
    with pytest.raises(ValueError):
        Workload(concurrency=0)
    assert Workload(jobs=4).scaled(10).jobs == 40


# -- bounds ---------------------------------------------------------------------------------


def test_bound_is_lease_plus_sweep_plus_slack():
    assert recovery_bound_s({"LIVENESS_TTL": "2", "SWEEP_INTERVAL": "0.5"}, slack_s=1) == 3.5
    assert recovery_bound_s({}, slack_s=1) == 6 + 2 + 1  # the service's production defaults


def test_scenario_bound_defaults_to_the_slowest_job_plus_slack():
    ci = PROFILES["ci"]
    slow = Scenario(name="s", workload=Workload(mix={"slow": 1}, slow_s=3))
    assert slow.bound_s(ci) == 2 + 0.5 + 3 + DEFAULT_SLACK_S
    hang = Scenario(
        name="h",
        workload=Workload(mix={"hang": 1}),
        env={"JOB_TIMEOUT": "2", "MAX_ATTEMPTS": "2", "LIVENESS_TTL": "4"},
    )
    assert hang.bound_s(ci) == 4 + 0.5 + (2 + 0.5) * 2 + DEFAULT_SLACK_S
    assert Scenario(name="x", workload=Workload(), slack_s=1).bound_s(ci) == 3.5


# -- checkers added by the scenario runner --------------------------------------------------


def test_faults_injected_is_unknown_when_the_nemesis_missed_or_could_not_heal():
    h = History()
    h.record(FAULT_INJECTED, "j1", fault="kill-worker")
    h.record(NOTE, text="fault pause-worker not injected: no target", fault="pause-worker")
    v = FaultsInjected(["kill-worker", "pause-worker"]).check(h)
    assert v.valid is None and v.details["missing"] == {"pause-worker": 1}
    assert FaultsInjected(["kill-worker"]).check(h).details["unhealed"] == {"kill-worker": 1}
    h.record(FAULT_HEALED, fault="kill-worker")
    assert FaultsInjected(["kill-worker"]).check(h).valid is True


@dataclass
class _FakeFault:
    name: str
    for_s: float | None = None
    target: bool = True
    calls: list = field(default_factory=list)

    def inject(self, ctx):
        if not self.target:
            raise NoTarget("nothing runs")
        self.calls.append("inject")
        return {"target": "w1", "job_id": "j1"}

    def heal(self, ctx):
        self.calls.append("heal")


def test_nemesis_injects_on_time_heals_once_and_notes_misses():
    history = History()
    ctx = FaultContext(stack=None, history=history, rng=random.Random(1))  # type: ignore[arg-type]
    quick, held, missed = _FakeFault("quick", for_s=0.05), _FakeFault("held"), _FakeFault("missed", target=False)
    nem = NemesisThread([(0.0, quick), (0.1, held), (0.1, missed)], ctx)
    nem.start()
    nem.join(timeout=5)
    time.sleep(0.2)  # quick's for_s timer heals it
    nem.heal_all()  # the final phase heals the rest, never twice
    assert quick.calls == ["inject", "heal"] and held.calls == ["inject", "heal"] and missed.calls == []
    injected = [e for e in history.events if e.kind == FAULT_INJECTED]
    assert [(e.data["fault"], e.job_id, e.data["target"]) for e in injected] == [
        ("quick", "j1", "w1"),
        ("held", "j1", "w1"),
    ]
    assert [e.data["fault"] for e in history.events if e.kind == FAULT_HEALED] == ["quick", "held"]
    v = FaultsInjected(["quick", "held", "missed"]).check(history)
    assert v.valid is None and v.details["missing"] == {"missed": 1}
    assert "nothing runs" in v.details["notes"][0]


@dataclass
class _WaitsUntilTheEnd(_FakeFault):
    """Waits for a target until `end` is set, then finds none (as at the end of a run)."""

    end: threading.Event = field(default_factory=threading.Event)

    def inject(self, ctx):
        time.sleep(0.2)
        self.end.set()
        raise NoTarget("nothing runs")


def test_soak_nemesis_stops_when_submitting_ends_and_expects_only_what_came_due():
    history = History()
    ctx = FaultContext(stack=None, history=history, rng=random.Random(1))  # type: ignore[arg-type]
    over = threading.Event()
    first, later = _FakeFault("first"), _FakeFault("later")
    waiting = _WaitsUntilTheEnd("waiting", end=over)  # the workload stops submitting while it waits
    nem = NemesisThread([(0.0, first), (0.05, waiting), (30.0, later)], ctx, until=over)
    t0 = time.monotonic()
    nem.start()
    nem.join(timeout=5)
    assert time.monotonic() - t0 < 5 and later.calls == []  # not due: the nemesis stopped
    nem.heal_all()
    assert nem.expected() == ["first"]
    assert FaultsInjected(nem.expected()).check(history).valid is True
    texts = [e.data["text"] for e in history.events if e.kind == NOTE]
    assert any("cut off" in t for t in texts) and any("last 1 faults were left" in t for t in texts)
    # Without `until` (ci), the whole schedule is expected: a miss is unknown, never a pass.
    assert NemesisThread([(0.0, first), (1.0, later)], ctx).expected() == ["first", "later"]


# -- summary --------------------------------------------------------------------------------


def _result(verdict: bool | None = True) -> ScenarioResult:
    return ScenarioResult(
        name="kill-worker",
        fault="kill-worker",
        fix="bundled",
        seed="1",
        overall=Verdict("overall", verdict),
        verdicts=[Verdict("all_terminal", True), Verdict("recovery_time", verdict)],
        jobs={"accepted": 8, "finished": 8, "failed": 0, "stuck": 0, "lost": 0, "duplicates": 1},
        recovery_s={"p50": 3.1, "p99": 3.9, "max": 3.9},
        bound_s=7.5,
        duration_s=12.0,
        history=History(),
        faults={"injected": 2, "by_kind": {"kill-worker": 2}},
        recoveries=2,
    )


def test_summary_has_exactly_the_documented_shape(tmp_path: Path):
    summary = RunSummary(run_id="r1", backend="local", seed=42, fix="bundled")
    summary.add(_result(True))
    summary.add(_result(None))
    path = summary.write(tmp_path / "out")
    data = json.loads(path.read_text())
    assert list(data) == ["run_id", "backend", "seed", "fix", "started_at", "duration_s", "scenarios"]
    assert (data["run_id"], data["backend"], data["seed"], data["fix"]) == ("r1", "local", 42, "bundled")
    first = data["scenarios"][0]
    keys = ["name", "fault", "verdict", "jobs", "recovery_s", "bound_s", "checkers", "faults", "recoveries"]
    assert list(first) == keys
    assert first["faults"] == {"injected": 2, "by_kind": {"kill-worker": 2}} and first["recoveries"] == 2
    assert list(first["jobs"]) == ["accepted", "finished", "failed", "stuck", "lost", "duplicates"]
    assert list(first["recovery_s"]) == ["p50", "p99", "max"]
    assert first["checkers"] == {"all_terminal": "pass", "recovery_time": "pass"}
    assert [s["verdict"] for s in data["scenarios"]] == ["pass", "unknown"]
    validate_summary(data)


def test_summary_validation_rejects_other_shapes():
    good = RunSummary(run_id="r", backend="local", seed=1, fix="none")
    good.add(_result())
    data = good.to_dict()
    validate_summary(data)
    bad = json.loads(json.dumps(data))
    bad["scenarios"][0]["verdict"] = "ok"
    with pytest.raises(ValueError, match="verdict"):
        validate_summary(bad)
    bad = json.loads(json.dumps(data))
    del bad["scenarios"][0]["jobs"]["lost"]
    with pytest.raises(ValueError, match="jobs"):
        validate_summary(bad)
    with pytest.raises(ValueError):
        good.add({"name": "x"})
    broken = json.loads(json.dumps(data))  # a scenario that broke off has no totals: still valid
    del broken["scenarios"][0]["faults"], broken["scenarios"][0]["recoveries"]
    validate_summary(broken)
    bad = json.loads(json.dumps(data))
    bad["scenarios"][0]["faults"] = {"injected": "many", "by_kind": {}}
    with pytest.raises(ValueError, match="faults"):
        validate_summary(bad)


def test_failure_message_names_the_failing_checker():
    r = _result(False)
    r.verdicts[1] = Verdict("recovery_time", False, {"over_bound": ["j1"], "samples": {"j1": 99}})
    text = r.explain()
    assert "recovery_time: fail" in text and "j1" in text and "samples" not in text


# -- targets from Redis ---------------------------------------------------------------------


class FakeRedis:
    def __init__(self, zsets=None, hashes=None):
        self.zsets = zsets or {}
        self.hashes = hashes or {}

    def zrange(self, key, start, end):
        return list(self.zsets.get(key, []))

    def hmget(self, key, *fields):
        h = self.hashes.get(key, {})
        return [h.get(f) for f in fields]


def test_running_jobs_from_rq_data_and_the_fix():
    r = FakeRedis(
        zsets={"rq:wip:q": [b"a:e1", b"b:e2", b"c:e3"]},
        hashes={
            "rq:job:a": {"status": b"started", "worker_name": b"w1"},
            "rq:job:b": {"status": b"started", "worker_name": b"w2"},
            "rq:job:c": {"status": b"finished", "worker_name": b"w3"},
            "shap:track:a": {"state": b"running", "worker": b"w1"},
            "shap:track:b": {"state": b"recovering", "worker": b"w2"},  # presumed dead
        },
    )
    assert [(x.worker, x.job_id) for x in running_jobs(r, "q")] == [("w1", "a")]
    # stock RQ: the fix's hash is not consulted (it would say "queued" forever)
    assert [(x.worker, x.job_id) for x in running_jobs(r, "q", fix="none")] == [("w1", "a"), ("w2", "b")]


def test_running_jobs_reads_the_fix_under_the_services_key_prefix():
    # A target whose workers run with KEY_PREFIX=app: : the harness's own "shap:" is not theirs.
    r = FakeRedis(
        zsets={"rq:wip:q": [b"a:e1"]},
        hashes={
            "rq:job:a": {"status": b"started", "worker_name": b"w1"},
            "app:track:a": {"state": b"recovering", "worker": b"w1"},  # presumed dead
        },
    )
    assert running_jobs(r, "q", key_prefix="app:") == []
    assert [(x.worker, x.job_id) for x in running_jobs(r, "q")] == [("w1", "a")]  # no shap:track


def test_fault_context_takes_the_key_prefix_the_workers_get():
    class _Stack:
        def __init__(self, env):
            self.env = env

        def service_env(self, **extra):
            return dict(self.env)

    history = History()
    ctx = FaultContext(stack=_Stack({"KEY_PREFIX": "app:"}), history=history, rng=random.Random(1))  # type: ignore[arg-type]
    assert ctx.key_prefix == "app:"
    ctx = FaultContext(stack=_Stack({}), history=history, rng=random.Random(1))  # type: ignore[arg-type]
    assert ctx.key_prefix == "shap:"


# -- waiting --------------------------------------------------------------------------------


def test_eventually_spaces_its_polls_out_as_a_wait_lasts():
    # A 13.5-minute wait of stock RQ's trials polled 50 times a second beside the other
    # benchmarks; relative= spaces the polls by a fraction of the time waited.
    calls = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    assert not eventually(never, timeout=1.5, interval=0.01)
    fixed = len(calls)
    calls.clear()
    assert not eventually(never, timeout=1.5, interval=0.01, relative=0.5)
    assert fixed > 60 and len(calls) < 25, (fixed, len(calls))
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[-2] >= 0.5 * (calls[-3] - calls[0]) - 0.01  # a gap: half the wait so far...
    assert calls[-1] - calls[0] < 1.5 + 0.1, calls[-1] - calls[0]  # ...but the last poll is at the deadline


def test_eventually_polls_a_last_time_at_its_deadline_not_a_gap_after_it():
    # A gap longer than the time left used to be slept whole: a 0.3 s wait with 5 s between
    # polls took 5 s (and relative= could overshoot by a fraction of the wait).
    calls = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    t0 = time.monotonic()
    assert not eventually(never, timeout=0.3, interval=5.0)
    assert len(calls) == 2 and 0.3 <= calls[1] - t0 < 4, [c - t0 for c in calls]  # the second poll: at the deadline


# -- TCP proxy ------------------------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        return s.recv(4096)


def test_proxy_forwards_cuts_and_restores(echo_server):
    with TcpProxy("127.0.0.1", echo_server) as proxy:
        assert _roundtrip(proxy.port) == b"ping"
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"a")
        assert live.recv(10) == b"a"
        eventually(lambda: proxy.open_connections() >= 1, timeout=2, interval=0.01)
        assert proxy.cut() >= 1 and proxy.is_cut
        # the open connection is torn down ...
        with pytest.raises(OSError):
            live.sendall(b"b")
            if not live.recv(10):
                raise ConnectionResetError("closed")
        live.close()
        # ... and new ones are closed at once
        with pytest.raises(OSError):
            if not _roundtrip(proxy.port):
                raise ConnectionResetError("closed")
        assert proxy.stats.refused >= 1
        proxy.restore()
        assert _roundtrip(proxy.port, b"back") == b"back"


# -- workload client against a fake API -----------------------------------------------------


class _FakeApi(BaseHTTPRequestHandler):
    """POST /analyze: 503 once (Redis away), then 202; GET /jobs/<id>: queued, started, finished."""

    state: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        s = self.state
        with s["lock"]:
            s["posts"] += 1
            if s["posts"] == 1:
                return self._send(503, {"error": "queue unavailable: ConnectionError"})
            job_id = f"job{s['posts']}"
            s["polls"][job_id] = 0
        self._send(202, {"job_id": job_id, "status": "queued"})

    def do_GET(self):
        job_id = self.path.rsplit("/", 1)[-1]
        s = self.state
        with s["lock"]:
            if job_id not in s["polls"]:
                return self._send(404, {"error": "no job"})
            s["polls"][job_id] += 1
            n = s["polls"][job_id]
        status = "queued" if n < 2 else "started" if n < 4 else "finished"
        view = {"job_id": job_id, "status": status, "attempts": 1 if n >= 2 else 0, "worker": "w1" if n >= 2 else None}
        view["late_completions_rejected"] = 0
        if status == "finished":
            view["result"] = {"base_value": 1.0, "shap_values": [[0.5, 0.5]], "predictions": [2.0]}
        self._send(200, view)


@pytest.fixture
def fake_api():
    """A `_FakeApi` with fresh state on a free port; yields its URL."""
    _FakeApi.state = {"lock": threading.Lock(), "posts": 0, "polls": {}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_workload_client_records_the_documented_events(fake_api):
    history = History()
    w = Workload(jobs=2, concurrency=1, poll_interval=0.01)
    run = WorkloadRun(w, api_url=fake_api, history=history, seed=1, deadline=time.monotonic() + 20)
    run.start()
    assert run.join(timeout=20)
    run.final_pass()
    kinds = [e.kind for e in history.events]
    assert kinds.count("submitted") == 3  # the 503 was retried
    assert kinds.count("accepted") == 2 and kinds.count("terminal") == 2
    job = history.jobs()[0]
    statuses = [e.data["status"] for e in history.events if e.kind == "status" and e.job_id == job]
    assert statuses == ["queued", "started", "finished", "finished"]  # last one: the final pass
    terminal = next(e for e in history.events if e.kind == "terminal" and e.job_id == job)
    assert terminal.data["status"] == "finished" and terminal.data["result"]["predictions"] == [2.0]
    assert terminal.data["late_completions"] == 0 and terminal.data["executions"] == 1
    assert run.kind_of(job) == "light"
    assert run.submissions_over.is_set()


def test_workload_stops_submitting_at_the_time_cap_and_watches_what_is_in_flight(fake_api):
    history = History()
    w = Workload(jobs=1000, concurrency=2, rate=20, poll_interval=0.01)
    now = time.monotonic()
    run = WorkloadRun(w, api_url=fake_api, history=history, seed=1, deadline=now + 20, submit_until=now + 0.5)
    run.start()
    assert run.submissions_over.wait(5)
    assert run.join(timeout=10)
    accepted = len(history.jobs())
    assert 3 <= accepted <= 12  # ~0.5 s at 20 a second, not 1000
    assert len({e.job_id for e in history.events if e.kind == "terminal"}) == accepted  # all watched to the end


def test_services_come_from_tool_harness_and_the_command_line(tmp_path: Path):
    """The StackConfig fields naming the service: its target (tests/test_targets.py has the rules)."""
    from harness.backends.config import services_from

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.harness]\nqueues = ["q1"]\n[tool.harness.worker]\ncommand = "w --name {name}"\n')
    got = services_from(pyproject)
    assert got["queue"] == "q1" and got["target"].worker == "w --name {name}"
    got = services_from(pyproject, worker_cmd="my-worker --x 'a b' -n {name}", queue="q2")
    assert got["target"].worker_argv(name="n", redis_url="r") == ["my-worker", "--x", "a b", "-n", "n"]
    assert got["queue"] == "q2"
    assert services_from(tmp_path / "missing.toml")["target"].name == "shap-service"
