"""The workload's generator: what the clients will send, as plain data, the same for a seed.

    workload = Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1})
    workload.plan(7)   # 8 JobSpecs (index, kind, request_id, body), the same for seed 7

Bodies are real SHAP requests on rows of scikit-learn's diabetes data; the clients that send
them and watch every job to its end are `harness.workload.client.WorkloadRun`.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from harness.defaults import JOB_KINDS, SERVICE_HARD_KILL_GRACE_S, SERVICE_JOB_TIMEOUT_S, SERVICE_MAX_ATTEMPTS

__all__ = ["JobSpec", "Workload", "diabetes_rows"]

#: What a job can be asked to do. light: TreeExplainer on 5 rows (milliseconds); heavy:
#: KernelExplainer on 3 rows (nsamples 200); slow: sleeps `slow_s` first (a long job to break
#: mid-run); hang: never returns (chaos hang); hungry: allocates `alloc_mb` and holds it `hold_s`.

_rows_cache: list[list[float]] | None = None
_rows_lock = threading.Lock()


def diabetes_rows() -> list[list[float]]:
    """The 442 x 10 rows of scikit-learn's diabetes data (ships with sklearn, no network)."""
    global _rows_cache
    with _rows_lock:
        if _rows_cache is None:
            from sklearn.datasets import load_diabetes

            _rows_cache = [[float(v) for v in row] for row in load_diabetes().data]
        return _rows_cache


@dataclass(frozen=True)
class JobSpec:
    """One planned request: which kind, and the exact body sent."""

    index: int
    kind: str
    request_id: str
    body: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What the clients do; plain data, deterministic for a seed (see `plan`)."""

    jobs: int = 10
    concurrency: int = 2
    rate: float | None = None  # submissions per second over all clients; None = as fast as they go
    mix: Mapping[str, float] = field(default_factory=lambda: {"light": 1.0})
    slow_s: float = 3.0
    alloc_mb: int = 300
    hold_s: float = 3.0
    hang: str = "python"  # "python" (interruptible) | "c" (ignores SIGALRM)
    poll_interval: float = 0.1
    missing_grace_s: float = 5.0  # a job reported missing this long is given up on

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mix) - set(JOB_KINDS))
        if unknown:
            raise ValueError(f"unknown job kinds {unknown}; expected some of {JOB_KINDS}")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix needs positive weights, got {dict(self.mix)}")
        if self.jobs < 0 or self.concurrency < 1:
            raise ValueError("jobs must be >= 0 and concurrency >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 (or None)")
        if self.hang not in ("python", "c"):
            raise ValueError("hang must be 'python' or 'c'")

    def scaled(self, factor: float) -> Workload:
        """The same workload with `factor` times the jobs (profiles: soak runs many more)."""
        return replace(self, jobs=max(1, math.ceil(self.jobs * factor)) if self.jobs else 0)

    def kinds_plan(self, rng: random.Random) -> list[str]:
        """Kinds in proportion to `mix` (largest remainder; every weighted kind at least once
        when there are enough jobs), in an order shuffled by `rng`."""
        kinds = [k for k in JOB_KINDS if self.mix.get(k, 0) > 0]
        total = sum(self.mix[k] for k in kinds)
        exact = {k: self.jobs * self.mix[k] / total for k in kinds}
        counts = {k: int(exact[k]) for k in kinds}
        if self.jobs >= len(kinds):
            for k in kinds:
                counts[k] = max(counts[k], 1)
        while sum(counts.values()) < self.jobs:
            k = max(kinds, key=lambda k: (exact[k] - counts[k], -kinds.index(k)))
            counts[k] += 1
        while sum(counts.values()) > self.jobs:
            k = max(kinds, key=lambda k: (counts[k] - exact[k], -kinds.index(k)))
            counts[k] -= 1
        plan = [k for k in kinds for _ in range(counts[k])]
        rng.shuffle(plan)
        return plan

    def body(self, kind: str, rows: list[list[float]]) -> dict[str, Any]:
        if kind == "heavy":
            return {"model": "diabetes", "rows": rows[:3], "explainer": "kernel", "nsamples": 200}
        body: dict[str, Any] = {"model": "diabetes", "rows": rows[:5], "explainer": "tree"}
        if kind == "slow":
            body["chaos"] = {"sleep_s": self.slow_s}
        elif kind == "hang":
            body["chaos"] = {"hang": self.hang}
        elif kind == "hungry":
            body["chaos"] = {"alloc_mb": self.alloc_mb, "hold_s": self.hold_s}
        return body

    def plan(self, seed: int | str) -> list[JobSpec]:
        """Every request this workload sends, the same for the same seed."""
        rng = random.Random(f"workload:{seed}")
        data = diabetes_rows()
        specs = []
        for i, kind in enumerate(self.kinds_plan(rng)):
            rows = [list(data[rng.randrange(len(data))]) for _ in range(5)]
            specs.append(JobSpec(i, kind, f"r{i:04d}-{kind}", self.body(kind, rows)))
        return specs

    def longest_job_s(self, env: Mapping[str, str] | None = None) -> float:
        """How long one clean run of the slowest kind takes (bound slack is built on it)."""
        env = env or {}
        longest = 0.5  # light / heavy: well under a second
        if self.mix.get("slow", 0) > 0:
            longest = max(longest, self.slow_s)
        if self.mix.get("hungry", 0) > 0:
            longest = max(longest, self.hold_s + 1.0)
        if self.mix.get("hang", 0) > 0:
            timeout = float(env.get("JOB_TIMEOUT", SERVICE_JOB_TIMEOUT_S))
            grace = float(env.get("HARD_KILL_GRACE", SERVICE_HARD_KILL_GRACE_S)) if self.hang == "c" else 0.0
            attempts = int(env.get("MAX_ATTEMPTS", SERVICE_MAX_ATTEMPTS))
            longest = max(longest, (timeout + grace + 0.5) * attempts)
        return longest
