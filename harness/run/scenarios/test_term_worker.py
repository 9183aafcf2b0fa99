"""term-worker: SIGTERM a busy worker (a deploy restart) whose job outlives the shutdown grace.

Warm shutdown hands the job back; another worker finishes it. A fresh worker replaces the old.
"""

import pytest

from harness.nemesis import TermWorker
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload

pytestmark = pytest.mark.chaos

SCENARIO = Scenario(
    name="term-worker",
    workload=Workload(jobs=6, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=4),
    faults=[(WHEN_RUNNING, TermWorker(restart=True))],
    workers=3,
    env={"SHUTDOWN_GRACE": "1"},
    deadline_s=20,
)


def test_term_worker(run_scenario):
    result = run_scenario(SCENARIO)
    assert result.passed, result.explain()
