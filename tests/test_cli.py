"""The harness's person-facing commands, run as a person would (subprocesses, real stacks)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from harness.backends.local.processes import labels_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_reproduce_stuck_job_tells_the_story_and_recovers(harness_cli):
    out = harness_cli("reproduce", "stuck-job", "--wait", "4", timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "status `started`" in text and "(dead)" in text
    assert "untracked; its worker has no Redis connection" in text  # diagnose-worker saw it
    assert "requeued" in text and "`finished`" in text and "attempt 2" in text
    assert "reproduced and recovered" in text


def test_up_serves_until_interrupted_and_leaves_nothing():
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "up", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines, api = [], None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and api is None:
            line = proc.stdout.readline()
            lines.append(line)
            if line.strip().startswith("API"):
                api = line.split()[-1]
        assert api, "".join(lines)
        assert requests.get(f"{api}/ping", timeout=5).json()["status"] == "ok"
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(children) >= 3  # redis, api, worker (+ its horse when busy)
        labels = {labels_of(psutil.Process(p)).get("HARNESS_RUN_ID") for p in children}
        assert len(labels) == 1 and None not in labels  # every process carries the run's label
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "removing every process" in rest
    assert not [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api}/ping", timeout=2)


def test_usage_errors_exit_2_with_a_message(harness_cli):
    out = harness_cli("run", "--profile", "bogus", timeout=30)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_a_run_in_which_every_scenario_was_skipped_fails_and_says_nothing_ran(tmp_path, harness_cli):
    """oom-horse has no local form: a run of it alone judged nothing, which is no pass."""
    out = harness_cli("run", "--scenario", "oom-horse", "--report-dir", str(tmp_path), timeout=60)
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-2000:]
    assert "nothing ran" in out.stderr and "skipped" in out.stderr


def _processes_of_run(run_id: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            label = labels_of(proc).get("HARNESS_RUN_ID", "")
            if label.split(".")[0] == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.mark.timeout(300)
def test_run_without_the_fix_fails_and_names_the_stuck_jobs(tmp_path, harness_cli):
    """A harness that cannot fail is worthless: stock RQ must go red on kill-worker and pause-worker."""
    out = harness_cli(
        "run",
        "--fix",
        "none",
        "--scenario",
        "kill-worker",
        "--scenario",
        "pause-worker",
        "--report-dir",
        str(tmp_path),
        timeout=280,
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fix"] == "none"
    by_name = {s["name"]: s for s in summary["scenarios"]}
    assert set(by_name) == {"kill-worker", "pause-worker"}
    for s in by_name.values():
        assert s["verdict"] == "fail" and s["jobs"]["stuck"] >= 1 and s["checkers"]["all_terminal"] == "fail"
    stuck_ids = [line for line in out.stdout.splitlines() if "stuck_jobs" in line]
    assert stuck_ids, out.stdout[-3000:]
    assert (tmp_path / "junit.xml").exists() and (tmp_path / "kill-worker" / "history.jsonl").exists()
    assert _processes_of_run(summary["run_id"]) == []  # nothing of the run is left running


@pytest.mark.timeout(200)
def test_run_with_the_fix_passes_and_leaves_nothing(tmp_path, harness_cli):
    out = harness_cli("run", "--scenario", "kill-worker", "--report-dir", str(tmp_path), "--seed", "7", timeout=190)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    (kill,) = summary["scenarios"]
    assert (summary["seed"], kill["verdict"], kill["jobs"]["stuck"], kill["jobs"]["lost"]) == (7, "pass", 0, 0)
    assert kill["recovery_s"]["max"] <= kill["bound_s"]
    # The harness's own witness saw the killed execution (never ended) and the one that finished it.
    events = [json.loads(line) for line in (tmp_path / "kill-worker" / "history.jsonl").read_text().splitlines()]
    runs = [[x["outcome"] for x in e["data"]["executions"]] for e in events if e["kind"] == "witness"]
    assert len(runs) == kill["jobs"]["accepted"] and [None, "returned"] in runs, runs
    memory = [e for e in events if e["kind"] == "note" and str(e["data"].get("text")).startswith("redis memory:")]
    assert len(memory) == 1 and all(m > 0 for m in memory[0]["data"]["used_memory"])  # a soak's growth, shown
    assert "redis memory:" in (tmp_path / "index.html").read_text()
    assert _processes_of_run(summary["run_id"]) == []


def test_the_run_summary_keeps_its_columns_for_every_scenario_name():
    """`harness run`'s closing table: a long scenario name (redis-restart-empty) must not push
    its row's figures out from under their headings."""
    from harness.report.summary import summary_table

    jobs = {"accepted": 3, "finished": 3, "failed": 0, "stuck": 0, "lost": 0}
    recovery = {"p50": 0.5, "p99": 1.25, "max": 1.5}
    names = ("kill-worker", "redis-restart-empty", "a-scenario-named-at-length")
    scenarios = [{"name": n, "verdict": "pass", "jobs": jobs, "recovery_s": recovery, "bound_s": 8} for n in names]
    table = summary_table({"run_id": "r", "fix": "bundled", "seed": 1, "duration_s": 2, "scenarios": scenarios})
    header, *rows = table.strip().splitlines()[1:]
    assert len(rows) == len(names)
    for row in rows:
        assert len(row) == len(header), (header, row)
        assert row.index(" pass ") == header.index(" verdict")
