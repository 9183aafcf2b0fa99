"""The seed's import path, kept: the recovery layer is its own package, `rq_recovery`."""

from rq_recovery.worker_process_fix import *  # noqa: F403
from rq_recovery.worker_process_fix import __all__  # noqa: F401
