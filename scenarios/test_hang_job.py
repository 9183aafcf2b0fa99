"""hang_job, from the harness's own scenarios (harness/run/scenarios/test_hang_job.py)."""

from harness.run.scenarios.test_hang_job import *  # noqa: F403
