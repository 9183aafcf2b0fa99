"""kill_worker, from the harness's own scenarios (harness/run/scenarios/test_kill_worker.py)."""

from harness.run.scenarios.test_kill_worker import *  # noqa: F403
