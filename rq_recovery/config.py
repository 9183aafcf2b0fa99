"""Every tunable of the recovery layer: one place, named, documented, read from the environment.

``Settings.from_env()`` validates the values once at start-up and fails with a message that
names the variable, instead of a traceback deep inside a worker. An app that runs
``rq worker -w rq_recovery.worker_process_fix.RecoveringWorker`` configures the fix with these
variables alone; the worker's own connection, queues, name and serializer come from RQ.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .allowlist import parse_allowlist

__all__ = ["DEFAULTS", "Settings", "SettingsError", "default", "markdown_table", "redact_url"]

#: Name -> (default, meaning). The README's configuration table is generated from these
#: (`python -m shap_service.config`; tests/test_config.py checks that it is current).
DEFAULTS: dict[str, tuple[object, str]] = {
    "REDIS_URL": ("redis://localhost:6379/0", "Redis (or Valkey) URL of the standalone tools; rediss:// for TLS"),
    "QUEUE_NAME": ("shap-jobs", "queue the standalone tools report on (workers use their own queues)"),
    "HEARTBEAT_INTERVAL": (2.0, "seconds between lease refreshes of a running job"),
    "LIVENESS_TTL": (6.0, "a job whose worker is silent this long is presumed dead"),
    "SWEEP_INTERVAL": (2.0, "seconds between sweeps in each worker and the API"),
    "MAX_ATTEMPTS": (3, "attempts before a job whose worker keeps dying is failed for good"),
    "JOB_TIMEOUT": (180, "seconds a job without a timeout of its own may run (RQ's default); `-1` on a job: never"),
    "HARD_KILL_GRACE": (10.0, "past a job's timeout, seconds before the parent SIGKILLs a hung horse"),
    "CONNECTION_CHECK": (True, "recover at once when a worker's Redis connection is gone"),
    "CONNECTION_GRACE": (0.6, "seconds that connection must be gone first (sweepers take turns, 5 looks a second)"),
    "SHUTDOWN_GRACE": (20.0, "on SIGTERM, seconds before the running job is handed back"),
    "LONG_RUNNING_FACTOR": (3.0, "flag a job running longer than this multiple of its function's recent p95"),
    "LONG_RUNNING_MIN_S": (5.0, "never flag a job as long-running before this many seconds"),
    "MEMORY_LIMIT_MB": (0.0, "worker memory limit when no cgroup limit is visible (0: unknown)"),
    "MEMORY_WARN_SHARE": (0.8, "warn when a work-horse's RSS passes this share of the limit"),
    "JOB_ALLOWLIST": ("", "job functions a worker runs: import paths or `module.*`, comma-separated; unset: any"),
    "KEY_PREFIX": ("shap:", "prefix of every Redis key the recovery layer writes"),
    "CONNECTION_PREFIX": ("shapfix:", "prefix of the names of the fix's Redis connections"),
    "METRICS_NAMESPACE": ("shap", "prefix of the Prometheus metric names"),
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


def markdown_table(
    table: dict[str, tuple[object, str]], *, marked: frozenset[str] = frozenset(), mark: str = ""
) -> str:
    """`table` as a Markdown table of variable, default and meaning; names in `marked` get `mark`."""

    def shown(value: object) -> str:
        if value == "":
            return "unset"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"`{value}`"

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, (value, meaning) in table.items():
        label = f"`{name}`" + (f" {mark}" if name in marked else "")
        rows.append(f"| {label} | {shown(value)} | {meaning} |")
    return "\n".join(rows) + "\n"


def default(name: str, table: dict[str, tuple[object, str]] = DEFAULTS) -> Any:
    """The default of one variable, so dataclass fields never restate a number."""
    return table[name][0]


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The recovery layer's settings; `shap_service.config.Settings` extends them."""

    DEFAULTS: ClassVar[dict[str, tuple[object, str]]] = DEFAULTS

    redis_url: str = default("REDIS_URL")
    queue_name: str = default("QUEUE_NAME")
    heartbeat_interval: float = default("HEARTBEAT_INTERVAL")
    liveness_ttl: float = default("LIVENESS_TTL")
    sweep_interval: float = default("SWEEP_INTERVAL")
    max_attempts: int = default("MAX_ATTEMPTS")
    job_timeout: int = default("JOB_TIMEOUT")
    hard_kill_grace: float = default("HARD_KILL_GRACE")
    connection_check: bool = default("CONNECTION_CHECK")
    connection_grace: float = default("CONNECTION_GRACE")
    shutdown_grace: float = default("SHUTDOWN_GRACE")
    long_running_factor: float = default("LONG_RUNNING_FACTOR")
    long_running_min_s: float = default("LONG_RUNNING_MIN_S")
    memory_limit_mb: float = default("MEMORY_LIMIT_MB")
    memory_warn_share: float = default("MEMORY_WARN_SHARE")
    job_allowlist: str = default("JOB_ALLOWLIST")
    key_prefix: str = default("KEY_PREFIX")
    connection_prefix: str = default("CONNECTION_PREFIX")
    metrics_namespace: str = default("METRICS_NAMESPACE")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{f.name.upper()}={value}: must be a finite number")
        try:
            parse_allowlist(self.job_allowlist)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
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
        if not self.key_prefix or not self.connection_prefix:
            raise SettingsError("KEY_PREFIX and CONNECTION_PREFIX must not be empty")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Any:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.name.upper()
            dflt = cls.DEFAULTS[name][0]
            raw = env.get(name)
            values[f.name] = dflt if raw is None else _parse(name, raw, dflt)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]  # parsed to each field's type above

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
