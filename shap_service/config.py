"""The SHAP service's settings: the recovery layer's (`rq_recovery.config`) plus the API's own.

Values come from the environment so that Render, the harness and a laptop configure the
service the same way; `Settings.from_env()` validates them once at start-up.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rq_recovery.config import DEFAULTS as RECOVERY_DEFAULTS
from rq_recovery.config import Settings as RecoverySettings
from rq_recovery.config import SettingsError, default, markdown_table, redact_url

__all__ = ["DEFAULTS", "Settings", "SettingsError", "redact_url", "settings_for", "settings_table"]

#: Name -> (default, meaning): the recovery layer's variables and the service's.
DEFAULTS: dict[str, tuple[object, str]] = {
    **RECOVERY_DEFAULTS,
    "REDIS_URL": (
        "redis://localhost:6379/0",
        "Redis (or Valkey) URL; `rediss://` for TLS (`rq worker -w` uses its own `--url`)",
    ),
    "QUEUE_NAME": ("shap-jobs", "queue the API enqueues to and `shap-worker` listens on; the tools' default `--queue`"),
    "ADMIN_TOKEN": ("", "bearer token for `/admin/*`; unset: the admin endpoints answer 403"),
    "API_KEY": ("", "when set, `/analyze` requires `X-API-Key`"),
    "HOST": ("127.0.0.1", "interface the API binds (`0.0.0.0` on Render)"),
    "PORT": (8000, "HTTP port of the API"),
    "RESULT_TTL": (86400, "seconds a finished job's result is kept"),
    "FAILURE_TTL": (7 * 86400, "seconds a failed job is kept"),
    "IDEMPOTENCY_TTL": (86400, "seconds a request's `Idempotency-Key` keeps naming its job (a retry gets that job)"),
    "WAIT_AOF_MS": (
        1000,
        "ms a 202 waits for the job to reach the AOF on disk (WAITAOF: Redis >= 7.2, Valkey; AOF on); 0: never",
    ),
    "API_SWEEPER": (True, "the API sweeps too, so jobs move on when no worker survives"),
    "MODEL_CACHE_DIR": ("", "trained model cache; unset: `~/.cache/shap-service`"),
    "CHAOS_HOOKS": (False, "test-only job hooks (sleep, hang, allocate); the harness sets it, production never"),
    "CHAOS_WITNESS_URL": ("", "test-only, with CHAOS_HOOKS: a Redis where each job execution records itself"),
    "LOG_LEVEL": ("INFO", "log level of the API and the workers"),
    "LOG_FORMAT": ("json", "`json`: one JSON object per job transition / recovery action; `text`: `key=value`"),
}


def _d(name: str) -> Any:
    return default(name, DEFAULTS)


@dataclass(frozen=True, kw_only=True)
class Settings(RecoverySettings):
    DEFAULTS: ClassVar[dict[str, tuple[object, str]]] = DEFAULTS

    admin_token: str = _d("ADMIN_TOKEN")
    api_key: str = _d("API_KEY")
    host: str = _d("HOST")
    port: int = _d("PORT")
    result_ttl: int = _d("RESULT_TTL")
    failure_ttl: int = _d("FAILURE_TTL")
    idempotency_ttl: int = _d("IDEMPOTENCY_TTL")
    wait_aof_ms: int = _d("WAIT_AOF_MS")
    api_sweeper: bool = _d("API_SWEEPER")
    model_cache_dir: str = _d("MODEL_CACHE_DIR")
    chaos_hooks: bool = _d("CHAOS_HOOKS")
    chaos_witness_url: str = _d("CHAOS_WITNESS_URL")
    log_level: str = _d("LOG_LEVEL")
    log_format: str = _d("LOG_FORMAT")

    @property
    def model_cache_path(self) -> Path:
        if self.model_cache_dir:
            return Path(self.model_cache_dir)
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shap-service"


def settings_for(prog: str, **overrides: Any) -> Settings | None:
    """The settings of command `prog` (its command-line values over the environment), with logging
    set up; None after printing which variable is wrong (the command then exits 2)."""
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return settings


def settings_table() -> str:
    """The README's configuration table: every variable, its default and meaning (*fix*: the
    recovery layer's). `python -m shap_service.config` prints it."""
    return markdown_table(DEFAULTS, marked=frozenset(RECOVERY_DEFAULTS) - {"REDIS_URL", "QUEUE_NAME"}, mark="*fix*")


if __name__ == "__main__":
    print(settings_table(), end="")
