"""redis-restart-empty: SIGKILL Redis mid-job and start it again without persistence.

Redis comes back empty, as after a failover to an empty replica: every job it held is lost, and
no recovery layer can bring them back. What is expected is that loss, reported: the jobs
accepted before it read as missing, the service records the loss (diagnose-worker reports it),
and the jobs accepted after it run as usual.
"""

import pytest

from harness.defaults import AVAILABILITY_DURING_OUTAGE, AVAILABILITY_OUTSIDE
from harness.nemesis import RedisRestartEmpty
from harness.run import Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="redis-restart-empty",
    availability=(AVAILABILITY_OUTSIDE, AVAILABILITY_DURING_OUTAGE),  # its fault refuses submissions
    workload=Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=3),
    # 4 s in, when each client's first job (3 s at most) has ended and another runs: Redis loses
    # finished jobs as well as running ones, and both must read as lost, not as conflicts.
    faults=[(4.0, RedisRestartEmpty(for_s=1.0))],  # asks for StackConfig(redis_aof=False)
    # The jobs Redis lost are missing by design: judged by data_loss_reported, not no_lost.
    checkers=("data_loss_reported", "duplicates", "availability", "final_read"),
    deadline_s=20,
    backends=("local",),  # the docker backend's Redis keeps its AOF on a volume
)


def test_redis_restart_empty(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
