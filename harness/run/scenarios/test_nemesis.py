"""nemesis: faults drawn from the chaos seed, a few seconds apart, over 36 mixed jobs.

The same --chaos-seed gives the same schedule (and the same workload). Under `--profile soak`
it is the soak: 5,000 jobs (mostly light, some slow and heavy so that faults hit running jobs)
at 3.5 a second, or submissions stop at 30 minutes, with faults from the same seed every few
seconds the whole time (harness.run.scenario.Soak; HARNESS_SOAK_JOBS / HARNESS_SOAK_MINUTES resize it).
"""

import pytest

from harness.defaults import AVAILABILITY_DURING_OUTAGE, AVAILABILITY_OUTSIDE
from harness.nemesis import (
    ApiCrash,
    Fault,
    KillHorse,
    KillWorker,
    PauseWorker,
    RedisPartition,
    RedisRestart,
    TermWorker,
)
from harness.run import Scenario, nemesis
from harness.workload import Workload

pytestmark = pytest.mark.chaos

POOL: list[Fault] = [
    KillWorker(restart=True),
    KillHorse(),
    PauseWorker(for_s=4),
    TermWorker(restart=True),
    ApiCrash(for_s=1.5),
    RedisRestart(for_s=0.5),
    RedisPartition(for_s=3),
]

SCENARIO = Scenario(
    name="nemesis",
    availability=(AVAILABILITY_OUTSIDE, AVAILABILITY_DURING_OUTAGE),  # its faults refuse submissions
    workload=Workload(jobs=36, concurrency=3, rate=2.0, mix={"light": 6, "heavy": 2, "slow": 2}, slow_s=2),
    faults=nemesis(POOL, count=4, start_s=2, every_s=(3, 4.5)),
    workers=3,
    deadline_s=40,
    # 5,000 jobs at 3.5/s take ~24 min: inside the soak's 30-minute cap with room for fault stalls.
    soak=Workload(concurrency=6, rate=3.5, mix={"light": 16, "heavy": 2, "slow": 2}, slow_s=2),
)


def test_nemesis(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
