"""The shared chaos scenarios on the docker backend, as `make test` runs them (marked `docker`).

One pytest subprocess runs kill-worker, oom (whole container OOM-killed), oom-horse (only the
horse), pause-worker, redis-restart (`docker kill` + `docker start`, AOF on a volume) and
redis-partition (`docker network disconnect` / `connect`) with `--backend docker` and the
bundled fix; every verdict must be a pass, the kernel's OOM kills must be on record, and no container,
network or volume of the run may remain. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.config import new_run_id
from harness.workload.history import FAULT_INJECTED, History

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parent.parent
SELECTION = "kill_worker or oom or pause_worker or redis_restart or redis_partition"
EXPECTED = {"kill-worker", "oom", "oom-horse", "pause-worker", "redis-restart", "redis-partition"}


def _kills(report_dir: Path, scenario: str) -> list[dict]:
    history = History.load(report_dir / scenario / "history.jsonl")
    return [e.data for e in history.events if e.kind == FAULT_INJECTED]


@pytest.mark.timeout(480)
def test_docker_scenarios_pass(docker_images, tmp_path):
    import docker

    run_id = new_run_id()
    report_dir = tmp_path / "report"
    argv = [sys.executable, "-m", "pytest", "scenarios", "--backend", "docker", "-k", SELECTION]
    argv += ["--report-dir", str(report_dir), "-p", "no:cacheprovider", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["HARNESS_RUN_ID_HINT"] = run_id
    t0 = time.monotonic()
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=450)
    wall_s = time.monotonic() - t0
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}"

    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["backend"] == "docker"
    verdicts = {s["name"]: s["verdict"] for s in summary["scenarios"]}
    assert verdicts == dict.fromkeys(EXPECTED, "pass"), verdicts

    # oom: the kernel killed the worker parent (PID 1): the whole container died, OOMKilled
    whole = [k for k in _kills(report_dir, "oom") if k.get("killed") == "container"]
    assert whole, _kills(report_dir, "oom")
    assert all(k["oom_killed"] is True and k["exit_code"] == 137 and k["oom_events"] >= 1 for k in whole), whole
    # oom-horse: the kernel killed only the horse; the container kept running
    horse = _kills(report_dir, "oom-horse")
    assert horse and all(k["killed"] == "horse" and k["container_status"] == "running" for k in horse), horse
    kill = _kills(report_dir, "kill-worker")
    assert kill and kill[0]["exit_code"] == 137

    client = docker.from_env()
    flt = {"label": "harness.run"}
    ours = [
        *(
            c.name
            for c in client.containers.list(all=True, filters=flt, ignore_removed=True)
            if c.labels["harness.run"].startswith(run_id)
        ),
        *(n.name for n in client.networks.list(filters=flt) if n.attrs["Labels"]["harness.run"].startswith(run_id)),
        *(v.name for v in client.volumes.list(filters=flt) if v.attrs["Labels"]["harness.run"].startswith(run_id)),
    ]
    assert ours == [], f"left behind: {ours}"
    print(f"docker scenarios: {len(verdicts)} passed in {wall_s:.1f} s (pytest: {summary['duration_s']} s)")
