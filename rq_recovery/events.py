"""One log line per job transition and recovery action: JSON by default, `LOG_FORMAT=text` for humans."""

from __future__ import annotations

import json
import logging
import os

__all__ = ["emit"]

log = logging.getLogger("rq_recovery.events")


def emit(event: str, *, level: int = logging.INFO, **fields: object) -> None:
    if os.environ.get("LOG_FORMAT", "json").lower() == "text":
        log.log(level, "%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))
    else:
        log.log(level, json.dumps({"event": event, **fields}, default=str))
