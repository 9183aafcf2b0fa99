"""Which job functions a worker runs: JOB_ALLOWLIST (import paths, or `module.*` patterns).

A job names its function by import path, and anyone who can write to a queue can name any
importable function (`os.system`). A worker with an allowlist fails a job naming anything else,
without importing or running it, and carries on. `shap-worker` allows only the service's own
jobs; `rq worker -w RecoveringWorker` allows what JOB_ALLOWLIST says, or, when it is unset,
anything (RQ's behaviour), with one warning when the worker starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["JobNotAllowed", "allowed_by", "parse_allowlist"]

_ENTRY = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*(\.\*)?")


class JobNotAllowed(RuntimeError):
    """The job names a function this worker was not told to run (it was not run)."""


def parse_allowlist(text: str) -> tuple[str, ...] | None:
    """JOB_ALLOWLIST's entries (comma-separated), or None when it is empty: no allowlist."""
    entries = tuple(e.strip() for e in text.split(",") if e.strip())
    for entry in entries:
        if not _ENTRY.fullmatch(entry):
            raise ValueError(f"JOB_ALLOWLIST: {entry!r} is neither an import path nor a `module.*` pattern")
    return entries or None


def allowed_by(rules: Sequence[str] | None, func_name: str) -> bool:
    """May a worker with `rules` (None: no allowlist) run the function `func_name`?"""
    if rules is None:
        return True
    return any(func_name == r or (r.endswith(".*") and func_name.startswith(r[:-1])) for r in rules)
