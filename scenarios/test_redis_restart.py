"""redis_restart, from the harness's own scenarios (harness/run/scenarios/test_redis_restart.py)."""

from harness.run.scenarios.test_redis_restart import *  # noqa: F403
