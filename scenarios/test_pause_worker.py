"""pause_worker, from the harness's own scenarios (harness/run/scenarios/test_pause_worker.py)."""

from harness.run.scenarios.test_pause_worker import *  # noqa: F403
