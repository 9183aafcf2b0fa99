"""kill_horse, from the harness's own scenarios (harness/run/scenarios/test_kill_horse.py)."""

from harness.run.scenarios.test_kill_horse import *  # noqa: F403
