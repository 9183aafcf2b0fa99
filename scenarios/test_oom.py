"""oom: a job allocates past the memory limit; its worker is killed for it, and restarted.

Locally an RSS watchdog plays the OOM killer (no delegated cgroup v2 here). The job is retried
and then failed for good ("attempts exhausted"); the other jobs are not affected.
"""

import pytest

from harness.faults import OOM
from harness.scenario import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="oom",
    workload=Workload(jobs=5, concurrency=2, mix={"light": 4, "hungry": 1}, alloc_mb=300, hold_s=3),
    faults=[(WHEN_RUNNING, OOM(limit_mb=380, restart=True))],
    env={"MAX_ATTEMPTS": "2"},
    deadline_s=25,
)


def test_oom(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
