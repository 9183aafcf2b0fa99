"""rq-recovery: every RQ job reaches `finished` or `failed` within seconds, whatever happens to its worker.

Adopt it by changing one word of the worker command:

    rq worker -w rq_recovery.worker_process_fix.RecoveringWorker [queues]

Settings come from the environment (`rq_recovery.config.DEFAULTS`). The package imports rq,
redis, psutil and prometheus-client only.
"""

from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["__version__"]
