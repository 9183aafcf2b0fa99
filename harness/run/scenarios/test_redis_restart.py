"""redis-restart: SIGKILL Redis mid-job and start it again (AOF on): nothing may be lost or stuck."""

import pytest

from harness.defaults import AVAILABILITY_DURING_OUTAGE, AVAILABILITY_OUTSIDE
from harness.nemesis import RedisRestart
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="redis-restart",
    availability=(AVAILABILITY_OUTSIDE, AVAILABILITY_DURING_OUTAGE),  # its faults refuse submissions
    workload=Workload(jobs=6, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=3),
    faults=[(WHEN_RUNNING, RedisRestart(for_s=1.0))],  # down 1 s; asks for StackConfig(redis_aof=True)
    deadline_s=20,
)


def test_redis_restart(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
