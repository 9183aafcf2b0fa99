"""The nemesis: faults by kind, one injected failure each, with `inject(ctx)` and `heal(ctx)`.

`inject` returns what it did (target worker, job id, pids...); the scenario runner records
it as a ``fault_injected`` event, and ``fault_healed`` after `heal`. A fault whose `for_s`
is set is healed that many seconds after injection; every fault is healed in the final phase.

Faults act through the backend interface (`harness.backends.base`): on the local backend signals
go to the real process tree (psutil), on the docker backend to containers (`docker kill`,
`pause`, `network disconnect`, `exec kill -9` of the horse, the kernel's OOM killer).

    base      the Fault protocol, FaultContext, finding a busy worker (running_jobs)
    process   kill-worker, kill-horse, pause-worker, term-worker, api-crash
    network   redis-partition (through proxy.TcpProxy on the local backend)
    redis     redis-restart, redis-restart-empty
    memory    oom (RSS watchdog locally, the kernel's OOM killer in docker)
    job       hang-job (the job itself blocks)
"""

from __future__ import annotations

from harness.nemesis.base import Fault, FaultContext, FaultError, NoTarget, Running, fault_label, running_jobs
from harness.nemesis.job import HangJob
from harness.nemesis.memory import OOM, OOM_DOCKER_MODE, OOM_LOCAL_MODE, tree_memory_mb
from harness.nemesis.network import RedisPartition
from harness.nemesis.process import ApiCrash, KillHorse, KillWorker, PauseWorker, TermWorker
from harness.nemesis.proxy import ProxyStats, TcpProxy
from harness.nemesis.redis import RedisRestart, RedisRestartEmpty

__all__ = [
    "OOM",
    "OOM_DOCKER_MODE",
    "OOM_LOCAL_MODE",
    "ApiCrash",
    "Fault",
    "FaultContext",
    "FaultError",
    "HangJob",
    "KillHorse",
    "KillWorker",
    "NoTarget",
    "PauseWorker",
    "ProxyStats",
    "RedisPartition",
    "RedisRestart",
    "RedisRestartEmpty",
    "Running",
    "TcpProxy",
    "TermWorker",
    "fault_label",
    "running_jobs",
    "tree_memory_mb",
]
