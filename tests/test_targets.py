"""Target files: the service under test described in TOML, and runs against a worker nobody here wrote.

The unit tests check the file's rules and the pure pieces (placeholders, body templates, the
witness's reading). The runs start RQ's own `rq worker` as the target, enqueue probe jobs with
pickle, and judge from the harness's witness: stock RQ must go red on kill-worker and
pause-worker, naming the stuck jobs; the same command with the fix's worker class, green.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends.config import resolve_target
from harness.checkers import Duplicates, ResultCorrect
from harness.targets import TargetError, load_target, shipped_targets, target_from_table
from harness.targets.http_submit import render_body
from harness.targets.probes import expected_value, run_probe
from harness.targets.witness import Witness, parse_entries
from harness.workload import Workload
from harness.workload.history import ACCEPTED, FAULT_INJECTED, NOTE, TERMINAL, WITNESS, History
from harness.workload.plan import JobSpec

FIXED_WORKER = "rq worker -w rq_recovery.worker_process_fix.RecoveringWorker --name {name} {queues}"


def _write(tmp_path: Path, text: str, name: str = "target.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- the file -------------------------------------------------------------------------------------


def test_shipped_targets_load_and_fill_their_placeholders():
    assert {"shap-service", "plain-rq"} <= set(shipped_targets())
    ours = load_target("shap-service")
    assert ours.submit == "http" and ours.result_check == "shap" and ours.queues == ("shap-jobs",)
    argv = ours.worker_argv(name="w1", redis_url="redis://r", python="/py")
    assert argv == ["/py", "-m", "shap_service.worker", "--name", "w1"]
    assert ours.worker_argv(name="w1", redis_url="r", fix="none", python="/py")[-2:] == ["--fix", "none"]
    mutant = ours.worker_argv(name="w1", redis_url="r", fix="no-fencing", python="/py")
    assert mutant == ["/py", "-m", "harness.testing.worker", "--name", "w1", "--fix", "no-fencing"]
    plain = load_target("plain-rq")
    assert plain.api is None and plain.submit == "rq" and plain.serializer == "pickle"
    assert plain.worker_argv(name="w2", redis_url="redis://:pw@x/0") == ["rq", "worker", "--name", "w2", "default"]
    assert plain.env_for(redis_url="redis://:pw@x/0") == {"RQ_REDIS_URL": "redis://:pw@x/0"}  # not in argv
    assert "-w" in plain.worker_argv(name="w2", redis_url="r", fix="recovering")
    with pytest.raises(TargetError, match="no worker variant 'bogus'"):
        plain.worker_argv(name="w2", redis_url="r", fix="bogus")


def test_queues_placeholder_gives_one_word_per_queue(tmp_path):
    t = load_target(_write(tmp_path, 'queues = ["high", "low"]\n[worker]\ncommand = "rq worker -n {name} {queues}"\n'))
    assert t.worker_argv(name="a b", redis_url="r") == ["rq", "worker", "-n", "a b", "high", "low"]
    assert t.queue == "high" and t.name == "target"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('api_cmd = "x"\n[worker]\ncommand = "w {name}"\n', "api_cmd / worker_cmd / queue became"),
        ('[worker]\ncommand = "rq worker"\n', "must contain {name}"),
        ('[worker]\ncommand = "w {name} {redis}"\n', "unknown placeholder"),
        ('serializer = "msgpack"\n[worker]\ncommand = "w {name}"\n', "serializer must be one of"),
        ('[worker]\ncommand = "w {name}"\n[submit]\nmode = "http"\n', "needs an [api] command"),
        ('[worker]\ncommand = "w {name}"\n[api]\ncommand = "a"\n[submit]\nmode = "http"\nstatus_path = "/s"\n', "{id}"),
        ('result_check = "shap"\n[worker]\ncommand = "w {name}"\n', "needs submit.mode = 'http'"),
        ('[worker]\ncommand = "w {name}"\n[submit]\nmode = "grpc"\n', "submit.mode must be one of"),
        ('queues = []\n[worker]\ncommand = "w {name}"\n', "queues must be a list"),
        ('ports = [80, 90]\n[worker]\ncommand = "w {name}"\n', "ports must be 1024"),
        ("[worker]\ncommand = 'w {name} \"unclosed'\n", "No closing quotation"),
        ("name = [\n", "not valid TOML"),
        ("[api]\ncommand = 'a'\n", "[worker] with a command is required"),
        ('witness_env = "W"\n[worker]\ncommand = "w {name}"\n', "http submission only"),
        ('env = { A = "{port}" }\n[worker]\ncommand = "w {name}"\n', "env.A uses unknown placeholder"),
    ],
)
def test_a_bad_target_file_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(TargetError, match=None) as info:
        load_target(_write(tmp_path, text))
    assert message in str(info.value) and "target.toml" in str(info.value)


def test_a_missing_target_names_the_shipped_ones(tmp_path):
    with pytest.raises(TargetError, match="plain-rq"):
        load_target(tmp_path / "nope.toml")
    with pytest.raises(TargetError, match="no \\[tool.harness\\] table"):
        load_target(_write(tmp_path, "[project]\nname = 'x'\n", "pyproject.toml"))


def test_resolve_target_prefers_the_option_then_tool_harness_then_ours(tmp_path):
    assert resolve_target(None).name == "shap-service"
    assert resolve_target(tmp_path / "pyproject.toml").name == "shap-service"  # no such file
    pyproject = _write(
        tmp_path, '[tool.harness]\nname = "mine"\nqueues = ["q1"]\n[tool.harness.worker]\ncommand = "w --n {name}"\n',
        "pyproject.toml",
    )  # fmt: skip
    assert resolve_target(pyproject).name == "mine"
    assert resolve_target(pyproject, target="plain-rq").name == "plain-rq"
    got = resolve_target(pyproject, worker_cmd="my-worker --x 'a b' --name {name}", queue="q2")
    assert got.worker_argv(name="n", redis_url="r") == ["my-worker", "--x", "a b", "--name", "n"]
    assert got.queues == ("q2",)
    with pytest.raises(TargetError, match="--worker-cmd: the command must contain {name}"):
        resolve_target(pyproject, worker_cmd="my-worker")


def test_http_headers_come_from_the_environment_only(tmp_path):
    t = load_target(
        _write(
            tmp_path,
            """
            [worker]
            command = "w {name}"
            [api]
            command = "a --port {port}"
            [submit]
            mode = "http"
            path = "/enqueue"
            status_path = "/job_status/{id}"
            headers_from_env = { "X-API-Key" = "MY_SERVICE_KEY" }
            [submit.body]
            light = '{"rows": {rows}, "tag": {request_id}}'
            """,
        )
    )
    with pytest.raises(TargetError, match="set MY_SERVICE_KEY"):
        t.headers({})
    assert t.headers({"MY_SERVICE_KEY": "s3cret"}) == {"X-API-Key": "s3cret"}
    assert "s3cret" not in repr(t)  # the value is read at run time, never kept in the target
    spec = JobSpec(0, "light", "r0000-light", {"rows": [[1.0, 2.0]]})
    assert render_body(t.http.body["light"], spec, Workload()) == {"rows": [[1.0, 2.0]], "tag": "r0000-light"}
    assert t.skip_reason(faults=["kill-worker"], kinds=["light", "slow"]) == (
        "target target has no submit.body for job kind(s) slow"
    )
    assert load_target("plain-rq").skip_reason(faults=["api-crash"], kinds=["light"]) is not None


def test_a_nemesis_draws_only_faults_the_target_can_take():
    from harness.run.runner import for_target, target_skip_reason
    from harness.run.scenarios.test_api_crash import SCENARIO as API_CRASH
    from harness.run.scenarios.test_nemesis import SCENARIO as NEMESIS

    plain, ours = load_target("plain-rq"), load_target("shap-service")
    drawn = {f.name for f in for_target(NEMESIS, plain).fault_pool()}
    assert "api-crash" not in drawn and {"kill-worker", "pause-worker", "redis-restart"} <= drawn
    assert target_skip_reason(NEMESIS, plain) is None
    assert for_target(NEMESIS, ours) is NEMESIS  # this service has an API: the whole pool
    assert "no API" in (target_skip_reason(API_CRASH, plain) or "")  # a fixed schedule is skipped


def test_body_kinds_are_the_workload_kinds(tmp_path):
    with pytest.raises(TargetError, match="unknown job kind"):
        target_from_table(
            {
                "worker": {"command": "w {name}"},
                "api": {"command": "a"},
                "submit": {"mode": "http", "body": {"x": "{}"}},
            }
        )


# -- the witness and the checkers that read it -----------------------------------------------------


def test_probe_records_start_and_end_in_a_real_witness(tmp_path):
    with Witness(tmp_path, run_id="t-witness") as witness:
        result = run_probe("compute", {"seed": "s", "rounds": 10}, witness=witness.url, probe_id="p1")
        assert result["value"] == expected_value("s", 10)
        with pytest.raises(RuntimeError, match="on purpose"):
            run_probe("raise", {}, witness=witness.url, probe_id="p1")
        (runs,) = witness.executions().values()
    assert [(r.outcome, r.pid) for r in runs] == [("returned", os.getpid()), ("raised", os.getpid())]
    assert runs[0].execution_id == result["execution_id"] and runs[0].ended >= runs[0].started


def test_parse_entries_pairs_starts_and_ends_and_keeps_the_unended():
    entries = ["1.5 start a 10 h", "2.0 start b 11 h", "2.5 end b 11 h returned", "garbage", "x start c 1 h"]
    runs = parse_entries(entries)
    assert [(r.execution_id, r.outcome) for r in runs] == [("a", None), ("b", "returned")]


def _witnessed_history(result: dict, executions: list[dict], expect: str | None = "v") -> History:
    h = History()
    h.record(NOTE, text="scenario started", witness=True)
    h.record(ACCEPTED, "j1", request_id="r1", job_kind="light", expect={"probe": "compute", "value": expect})
    h.record(TERMINAL, "j1", status="finished", result=result, executions=1)
    h.record(WITNESS, "j1", executions=executions)
    return h


def _exec(eid: str, t: float, outcome: str | None) -> dict:
    return {"execution_id": eid, "started": t, "ended": t + 1 if outcome else None, "outcome": outcome}


def test_duplicates_counts_from_the_witness_and_catches_a_zombie_result():
    zombie_first = [_exec("old", 1.0, "returned"), _exec("new", 2.0, "returned")]
    good = Duplicates().check(_witnessed_history({"execution_id": "new", "value": "v"}, zombie_first))
    assert good.valid is True and good.details["duplicates"]["j1"]["executions"] == 2
    bad = Duplicates().check(_witnessed_history({"execution_id": "old", "value": "v"}, zombie_first))
    assert bad.valid is False and "superseded" in bad.details["stale_results"]["j1"]
    forged = Duplicates().check(_witnessed_history({"execution_id": "zzz", "value": "v"}, zombie_first))
    assert forged.valid is False and "never saw" in forged.details["stale_results"]["j1"]


def test_fencing_untested_is_unknown_when_the_zombie_never_acted():
    def run(old_outcome: str | None) -> History:
        h = History()
        h.record(NOTE, text="scenario started", witness=True)
        h.record(ACCEPTED, "j1", request_id="r1", job_kind="slow")
        h.record(FAULT_INJECTED, "j1", fault="pause-worker", target="w1", pids=[10, 11])
        h.record(TERMINAL, "j1", status="finished", result={"execution_id": "new", "value": "v"})
        old = {**_exec("old", 1.0, old_outcome), "pid": 11}  # the frozen horse
        h.record(WITNESS, "j1", executions=[old, {**_exec("new", 2.0, "returned"), "pid": 20}])
        return h

    idle = Duplicates().check(run(None))
    assert idle.status == "unknown" and idle.details["zombies_that_never_acted"] == ["j1"]
    assert Duplicates().check(run("returned")).status == "pass"  # it acted, and was fenced off


def test_probe_result_check_ties_the_value_to_the_request():
    runs = [_exec("e1", 1.0, "returned")]
    assert ResultCorrect(mode="probe").check(_witnessed_history({"execution_id": "e1", "value": "v"}, runs)).valid
    wrong = ResultCorrect(mode="probe").check(_witnessed_history({"execution_id": "e1", "value": "w"}, runs))
    assert wrong.valid is False and "its request computes" in wrong.details["reasons"]["j1"]
    shapeless = ResultCorrect(mode="probe").check(_witnessed_history({"value": "v"}, runs))
    assert shapeless.valid is False
    none = ResultCorrect(mode="none").check(_witnessed_history({"value": "w"}, runs))
    assert none.valid is True and none.details["mode"] == "none"


# -- runs against RQ's own worker ------------------------------------------------------------------


def _summary(report_dir: Path) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


@pytest.mark.timeout(300)
def test_plain_rq_worker_goes_red_and_names_the_stuck_jobs(tmp_path, harness_cli):
    out = harness_cli(
        "run", "--target", "plain-rq", "--scenario", "kill-worker", "--scenario", "pause-worker",
        "--report-dir", str(tmp_path), timeout=290,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    by_name = {s["name"]: s for s in _summary(tmp_path)["scenarios"]}
    assert set(by_name) == {"kill-worker", "pause-worker"}
    for s in by_name.values():
        assert s["verdict"] == "fail" and s["jobs"]["stuck"] >= 1 and s["checkers"]["all_terminal"] == "fail"
    assert [line for line in out.stdout.splitlines() if "stuck_jobs" in line], out.stdout[-3000:]
    events = [json.loads(line) for line in (tmp_path / "kill-worker" / "history.jsonl").read_text().splitlines()]
    witnessed = [e for e in events if e["kind"] == "witness"]
    assert witnessed and all(e["data"]["executions"] for e in witnessed)
    started = [e for e in events if e["kind"] == "note" and "started" in str(e["data"].get("text"))]
    assert started[0]["data"]["target"] == "plain-rq" and started[0]["data"]["witness"] is True


@pytest.mark.timeout(300)
def test_plain_rq_worker_with_the_fix_worker_class_goes_green(tmp_path, harness_cli):
    out = harness_cli(
        "run", "--target", "plain-rq", "--worker-cmd", FIXED_WORKER, "--scenario", "kill-worker",
        "--scenario", "pause-worker", "--report-dir", str(tmp_path), "--seed", "11", timeout=290,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    for s in _summary(tmp_path)["scenarios"]:
        assert s["verdict"] == "pass" and s["jobs"]["stuck"] == 0 and s["checkers"]["result_correct"] == "pass"
        assert s["recovery_s"]["max"] is not None and s["recovery_s"]["max"] <= s["bound_s"]
    notes = (tmp_path / "pause-worker" / "history.jsonl").read_text()
    assert "zombies acted" in notes  # the frozen execution resumed and ended: fencing was put to the test


def test_a_worker_command_that_cannot_start_is_reported_not_a_traceback(tmp_path, harness_cli):
    target = _write(tmp_path, f"[worker]\ncommand = \"{sys.executable} -c 'import sys; sys.exit(4)' {{name}}\"\n")
    out = harness_cli("run", "--target", str(target), "--scenario", "kill-worker", "--report-dir", str(tmp_path / "r"))
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "kill-worker" in out.stdout and "unknown" in out.stdout


def test_a_bad_target_file_stops_harness_run_before_anything_starts(tmp_path, harness_cli):
    out = harness_cli("run", "--target", str(_write(tmp_path, "[worker]\ncommand = 'rq worker'\n")), timeout=30)
    assert out.returncode == 2 and "must contain {name}" in out.stderr and "Traceback" not in out.stderr
    out = harness_cli("run", "--target", "plain-rq", "--fix", "none", timeout=30)
    assert out.returncode == 2 and "no worker variant 'none'" in out.stderr and "recovering" in out.stderr


# -- a Flask + RQ service behind an API key (examples/flask_rq) ------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "flask_rq"


def test_the_example_result_check_ties_the_total_to_the_request():
    h = History()
    h.record(ACCEPTED, "j1", request_id="r1", job_kind="light", expect={"body": {"numbers": [[1, 2], [3.5]]}})
    h.record(TERMINAL, "j1", status="finished", result={"total": 6.5, "count": 3})
    h.record(ACCEPTED, "j2", request_id="r2", job_kind="light", expect={"body": {"numbers": [[1, 2]]}})
    h.record(TERMINAL, "j2", status="finished", result={"total": 4.0, "count": 2})
    v = ResultCorrect(mode="checks:total_matches_request", path=EXAMPLE).check(h)
    assert v.valid is False and v.details["bad_jobs"] == ["j2"] and "is not 3.0" in v.details["reasons"]["j2"]


def test_a_header_variable_that_is_not_set_is_named_before_anything_starts(harness_cli, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    out = harness_cli("run", "--target", str(EXAMPLE / "target.toml"), timeout=30)
    assert out.returncode == 2 and "set API_KEY" in out.stderr, out.stderr


@pytest.mark.timeout(300)
def test_flask_rq_example_red_with_stock_rq_green_with_one_word_changed(tmp_path, monkeypatch, harness_cli):
    secret = "k3y-" + os.urandom(8).hex()
    monkeypatch.setenv("API_KEY", secret)
    target = str(EXAMPLE / "target.toml")
    red = harness_cli("run", "--target", target, "--scenario", "kill-worker", "--report-dir", str(tmp_path / "red"))
    assert red.returncode == 1, red.stdout[-3000:] + red.stderr[-2000:]
    (kill,) = _summary(tmp_path / "red")["scenarios"]
    assert kill["jobs"]["stuck"] >= 1 and kill["checkers"]["all_terminal"] == "fail"
    green = harness_cli(
        "run", "--target", target, "--fix", "recovering", "--scenario", "kill-worker", "--seed", "5",
        "--report-dir", str(tmp_path / "green"),
    )  # fmt: skip
    assert green.returncode == 0, green.stdout[-3000:] + green.stderr[-2000:]
    (kill,) = _summary(tmp_path / "green")["scenarios"]
    assert kill["verdict"] == "pass" and kill["checkers"]["result_correct"] == "pass"
    assert kill["jobs"]["accepted"] == kill["jobs"]["finished"] >= 1  # every request got through the key
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []  # the key is never logged nor written to a report
