"""nemesis, from the harness's own scenarios (harness/run/scenarios/test_nemesis.py)."""

from harness.run.scenarios.test_nemesis import *  # noqa: F403
