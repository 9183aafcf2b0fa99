"""api-crash: SIGKILL the API mid-run and restart it 2 s later; clients retry, workers carry on."""

import pytest

from harness.defaults import AVAILABILITY_DURING_OUTAGE, AVAILABILITY_OUTSIDE
from harness.nemesis import ApiCrash
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="api-crash",
    availability=(AVAILABILITY_OUTSIDE, AVAILABILITY_DURING_OUTAGE),  # its faults refuse submissions
    workload=Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=2),
    faults=[(WHEN_RUNNING, ApiCrash(for_s=2))],
    deadline_s=20,
)


def test_api_crash(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
