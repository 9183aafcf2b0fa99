"""kill-worker: SIGKILL a busy worker's whole process tree (a container OOM kill, a platform restart).

The job must move on within the bound: stock RQ leaves it `started` for ~15 min (fails here).
"""

import pytest

from harness.nemesis import KillWorker
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="kill-worker",
    workload=Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=3),
    faults=[(WHEN_RUNNING, KillWorker(restart=True))],
    workers=3,
    deadline_s=20,
)


def test_kill_worker(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
