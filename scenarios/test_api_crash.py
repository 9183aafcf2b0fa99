"""api_crash, from the harness's own scenarios (harness/run/scenarios/test_api_crash.py)."""

from harness.run.scenarios.test_api_crash import *  # noqa: F403
