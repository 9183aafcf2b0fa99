"""redis-partition: cut a busy worker off Redis (through the harness's TCP proxy) for 3 s.

Its job must be recovered by the others; when the link comes back, the cut-off worker's late
outcome must not overwrite the newer attempt.
"""

import pytest

from harness.nemesis import RedisPartition
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="redis-partition",
    workload=Workload(jobs=6, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=3),
    faults=[(WHEN_RUNNING, RedisPartition(for_s=3))],  # asks for worker_redis_via_proxy
    workers=3,
    deadline_s=20,
)


def test_redis_partition(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
