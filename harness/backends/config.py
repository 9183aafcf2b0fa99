"""What a stack is made of (`StackConfig`), and where the service under test is named.

Backend-neutral and light: the pytest plugin reads it at start-up without importing a backend.
"""

from __future__ import annotations

import secrets
import shlex
import socket
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StackConfig", "free_port", "harness_table", "new_run_id", "services_from"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    workers: int = 2
    fix: str = "bundled"  # "bundled" | "none" (plain RQ worker, same job code, no sweeper)
    queue: str = "shap-jobs"
    api_cmd: tuple[str, ...] = (sys.executable, "-m", "shap_service.api")
    worker_cmd: tuple[str, ...] = (sys.executable, "-m", "shap_service.worker")
    env: dict[str, str] = field(default_factory=dict)  # extra settings for API and workers
    redis_aof: bool = False
    redis_password: str = ""
    redis_tls: bool = False  # Redis speaks only TLS (rediss://, a CA made for the run)
    chaos_hooks: bool = True
    ready_timeout: float = 60.0
    log_dir: Path | None = None  # default: a temp dir removed at exit
    # Each worker reaches Redis through its own harness-owned TcpProxy (WorkerHandle.proxy), so a
    # fault can cut one worker off Redis (a network partition) while the API and others stay.
    # Local only: the docker backend partitions with `docker network disconnect` instead.
    worker_redis_via_proxy: bool = False
    # Docker: each worker container's memory limit (`mem_limit`), which the kernel enforces.
    # Local: not enforced (no delegated cgroup here); the OOM fault's RSS watchdog plays the limit.
    worker_mem_limit_mb: int | None = None

    def service_env(self, *, redis_url: str, admin_token: str, port: int, host: str, **extra: str) -> dict[str, str]:
        """The settings the API and the workers get, on every backend (the backend adds its own
        address for Redis and the API)."""
        env = {
            "REDIS_URL": redis_url,
            "QUEUE_NAME": self.queue,
            "ADMIN_TOKEN": admin_token,
            "PORT": str(port),
            "HOST": host,
            "CHAOS_HOOKS": "1" if self.chaos_hooks else "0",
            "PYTHONUNBUFFERED": "1",
        }
        if self.fix != "bundled":
            # Stock RQ or a deliberately broken layer: the workers' layer is judged alone.
            env["API_SWEEPER"] = "0"
        env.update(self.env)
        env.update(extra)
        return env


def harness_table(pyproject: Path | None) -> dict[str, Any]:
    """`[tool.harness]` of a pyproject.toml ({} when there is none)."""
    if pyproject is None or not pyproject.exists():
        return {}
    table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("harness", {})
    return dict(table) if isinstance(table, dict) else {}


def services_from(
    pyproject: Path | None, *, api_cmd: str | None = None, worker_cmd: str | None = None, queue: str | None = None
) -> dict[str, Any]:
    """StackConfig fields naming the service under test: `[tool.harness]` in pyproject.toml,
    overridden by command-line values. `{python}` in a command is this interpreter, so the
    commands run in the same environment as the harness."""
    table = harness_table(pyproject)
    out: dict[str, Any] = {}
    for key, value in (("api_cmd", api_cmd), ("worker_cmd", worker_cmd)):
        text = value or table.get(key)
        if text:
            out[key] = tuple(w.replace("{python}", sys.executable) for w in shlex.split(str(text)))
    if queue or table.get("queue"):
        out["queue"] = str(queue or table["queue"])
    return out
