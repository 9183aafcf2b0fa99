"""redis_restart_empty, from the harness's own scenarios (harness/run/scenarios/test_redis_restart_empty.py)."""

from harness.run.scenarios.test_redis_restart_empty import *  # noqa: F403
