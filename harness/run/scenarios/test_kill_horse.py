"""kill-horse: SIGKILL only the work-horse of a busy worker (the kernel OOM killer's usual pick).

The worker parent survives and sees the horse die; the job is retried, or failed with the reason.
"""

import pytest

from harness.nemesis import KillHorse
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="kill-horse",
    workload=Workload(jobs=6, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=3),
    faults=[(WHEN_RUNNING, KillHorse())],
    deadline_s=20,
)


def test_kill_horse(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
