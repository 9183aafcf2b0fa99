"""oom: a job allocates past the memory limit; its worker is killed for it, and restarted.

Locally an RSS watchdog plays the OOM killer (no delegated cgroup v2 here). On the docker backend
the kernel does it: worker containers get a `mem_limit` so tight that the worker parent is the
victim, and the whole container dies (exit 137, OOMKilled). The job is retried and then failed
for good ("attempts exhausted"); the other jobs are not affected.

oom-horse (docker only): a roomier limit, so the kernel kills just the allocating work-horse;
the container survives and RQ's parent sees the horse die. Locally that is kill-horse again.
"""

import pytest

from harness.nemesis import OOM
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="oom",
    workload=Workload(jobs=5, concurrency=2, mix={"light": 4, "hungry": 1}, alloc_mb=300, hold_s=3),
    faults=[(WHEN_RUNNING, OOM(limit_mb=380, restart=True))],
    env={"MAX_ATTEMPTS": "2"},
    deadline_s=25,
)

HORSE = Scenario(
    name="oom-horse",
    workload=Workload(jobs=5, concurrency=2, mix={"light": 4, "hungry": 1}, alloc_mb=300, hold_s=3),
    faults=[(WHEN_RUNNING, OOM(limit_mb=380, kill="horse"))],
    env={"MAX_ATTEMPTS": "2"},
    deadline_s=25,
    backends=("docker",),
)


def test_oom(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()


def test_oom_horse(run_scenario):
    result = run_scenario(HORSE)
    assert result.passed, result.explain()
