"""redis_partition, from the harness's own scenarios (harness/run/scenarios/test_redis_partition.py)."""

from harness.run.scenarios.test_redis_partition import *  # noqa: F403
