"""What is under test: the target file, how jobs are submitted (`rq` or `http`), probe jobs, the witness.

Importing this package is light (no redis, rq or requests until a client is made); the probe
jobs live in `harness.targets.probes`, which a target's workers must be able to import.
"""

from __future__ import annotations

from harness.targets.target import HttpSubmit, Target, TargetError, load_target, shipped_targets, target_from_table

__all__ = ["HttpSubmit", "Target", "TargetError", "load_target", "shipped_targets", "target_from_table"]
