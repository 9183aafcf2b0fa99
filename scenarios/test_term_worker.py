"""term_worker, from the harness's own scenarios (harness/run/scenarios/test_term_worker.py)."""

from harness.run.scenarios.test_term_worker import *  # noqa: F403
