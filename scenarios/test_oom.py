"""oom, from the harness's own scenarios (harness/run/scenarios/test_oom.py)."""

from harness.run.scenarios.test_oom import *  # noqa: F403
