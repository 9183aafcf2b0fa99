"""pause-worker: SIGSTOP a busy worker's whole tree (a frozen VM) until the final phase.

Its job must be recovered elsewhere; when the zombie resumes (SIGCONT) its late result must be
refused, not overwrite the newer attempt. Stock RQ leaves the job `started` (fails here).
"""

import pytest

from harness.nemesis import PauseWorker
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="pause-worker",
    workload=Workload(jobs=6, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=3),
    faults=[(WHEN_RUNNING, PauseWorker())],  # held until the final phase: a zombie then
    workers=3,
    deadline_s=20,
    settle_s=3,
)


def test_pause_worker(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
