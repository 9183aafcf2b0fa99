"""hang-job: the job itself blocks forever while its worker keeps heart-beating.

Only the job timeout can end it: the job fails at its timeout as in RQ (a timeout is not a worker
death, so it is not retried), with RQ's traceback and the reason.
"""

import pytest

from harness.nemesis import HangJob
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="hang-job",
    workload=Workload(jobs=6, concurrency=2, mix={"light": 2, "hang": 1}, hang="python"),
    faults=[(WHEN_RUNNING, HangJob())],
    env={"JOB_TIMEOUT": "2", "HARD_KILL_GRACE": "1", "MAX_ATTEMPTS": "2"},
    deadline_s=25,
)


def test_hang_job(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
