"""Every tunable of the service and its recovery layer: one place, named, documented.

Values come from the environment so that Render, the harness and a laptop configure the
service the same way. ``Settings.from_env()`` validates them once at start-up and fails with
a message that names the variable, instead of a traceback deep inside a worker.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["Settings", "SettingsError", "DEFAULTS"]

#: Name -> (default, meaning). The README's configuration table is generated from this.
DEFAULTS: dict[str, tuple[object, str]] = {
    "REDIS_URL": ("redis://localhost:6379/0", "Redis (or Valkey) URL; rediss:// for TLS"),
    "QUEUE_NAME": ("shap-jobs", "RQ queue the API enqueues to and workers listen on"),
    "ADMIN_TOKEN": ("", "bearer token for /admin/*; unset = admin endpoints answer 403"),
    "API_KEY": ("", "when set, /analyze requires header X-API-Key"),
    "HOST": ("127.0.0.1", "interface the API binds; 0.0.0.0 on Render"),
    "PORT": (8000, "HTTP port of the API"),
    "HEARTBEAT_INTERVAL": (2.0, "seconds between liveness beats of a running job"),
    "LIVENESS_TTL": (6.0, "a running job whose worker is silent this long is presumed dead"),
    "SWEEP_INTERVAL": (2.0, "seconds between recovery sweeps in each worker and the API"),
    "MAX_ATTEMPTS": (3, "attempts per job before a lost job is failed for good"),
    "JOB_TIMEOUT": (180, "seconds a job may run; past it the horse is killed (hung job code)"),
    "HARD_KILL_GRACE": (10.0, "extra seconds past JOB_TIMEOUT before the parent SIGKILLs the horse"),
    "RESULT_TTL": (86400, "seconds a finished job's result is kept"),
    "FAILURE_TTL": (7 * 86400, "seconds a failed job is kept"),
    "CONNECTION_CHECK": (True, "requeue at once when a running job's worker has no Redis connection"),
    "CONNECTION_GRACE": (0.6, "seconds a worker's connection must be missing before that counts"),
    "SHUTDOWN_GRACE": (20.0, "on SIGTERM, seconds to let the running job finish before handing it back"),
    "API_SWEEPER": (True, "the API also sweeps, so jobs recover even when no worker survives"),
    "MODEL_CACHE_DIR": ("", "where trained models are cached; default ~/.cache/shap-service"),
    "CHAOS_HOOKS": (False, "test-only job hooks (sleep, hang, allocate); never set in production"),
    "LOG_LEVEL": ("INFO", "log level of API and workers"),
    "LOG_FORMAT": ("json", "json: one JSON object per transition; text: key=value for humans"),
    "LONG_RUNNING_FACTOR": (3.0, "flag a job running longer than this multiple of its model's recent p95"),
    "LONG_RUNNING_MIN_S": (5.0, "never flag a job as long-running before this many seconds"),
    "MEMORY_LIMIT_MB": (0.0, "worker memory limit when no cgroup limit is visible (0 = unknown)"),
    "MEMORY_WARN_SHARE": (0.8, "warn when a work-horse's RSS passes this share of the memory limit"),
}


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names it."""


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name}={raw!r}: expected true/false")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected a number of seconds") from None
    return raw


@dataclass(frozen=True, kw_only=True)
class Settings:
    redis_url: str = str(DEFAULTS["REDIS_URL"][0])
    queue_name: str = str(DEFAULTS["QUEUE_NAME"][0])
    admin_token: str = ""
    api_key: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    heartbeat_interval: float = 2.0
    liveness_ttl: float = 6.0
    sweep_interval: float = 2.0
    max_attempts: int = 3
    job_timeout: int = 180
    hard_kill_grace: float = 10.0
    result_ttl: int = 86400
    failure_ttl: int = 7 * 86400
    connection_check: bool = True
    connection_grace: float = 0.6
    shutdown_grace: float = 20.0
    api_sweeper: bool = True
    model_cache_dir: str = ""
    chaos_hooks: bool = False
    log_level: str = "INFO"
    log_format: str = "json"
    long_running_factor: float = 3.0
    long_running_min_s: float = 5.0
    memory_limit_mb: float = 0.0
    memory_warn_share: float = 0.8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{f.name.upper()}={value}: must be a finite number")
        if self.heartbeat_interval <= 0 or self.sweep_interval <= 0:
            raise SettingsError("HEARTBEAT_INTERVAL and SWEEP_INTERVAL must be > 0")
        if self.liveness_ttl < 2 * self.heartbeat_interval:
            raise SettingsError(
                f"LIVENESS_TTL={self.liveness_ttl} must be at least twice HEARTBEAT_INTERVAL="
                f"{self.heartbeat_interval}, or one late beat makes a live job look dead"
            )
        if self.max_attempts < 1:
            raise SettingsError("MAX_ATTEMPTS must be >= 1")
        if self.job_timeout < 1:
            raise SettingsError("JOB_TIMEOUT must be >= 1 second")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.name.upper()
            default = DEFAULTS[name][0]
            raw = env.get(name)
            values[f.name] = default if raw is None else _parse(name, raw, default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def recovery_bound_s(self) -> float:
        """Worst case from a worker's death to its job being requeued."""
        return self.liveness_ttl + self.sweep_interval

    @property
    def redis_io_timeout_s(self) -> float:
        """Connect and read timeout of the recovery layer's own Redis connections.

        A beat stuck on a dead socket (Redis restarted, worker's network reconnected) must fail
        and be retried on a fresh connection well inside the lease: beat interval + this + a
        reconnect stays under LIVENESS_TTL (2 + 1.5 + 1.5 < 6 by default).
        """
        return max(0.25, min(self.heartbeat_interval, self.liveness_ttl / 4))

    @property
    def model_cache_path(self) -> Path:
        if self.model_cache_dir:
            return Path(self.model_cache_dir)
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shap-service"

    def redacted_url(self) -> str:
        """The Redis URL without its password, safe for logs."""
        return redact_url(self.redis_url)


def redact_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"
