"""`env.json`: what a reader needs to trust or repeat a run (versions, machine, settings),
and the `harness run` command line that repeats it."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.defaults import ENV_FILE, REPORT_PACKAGES

__all__ = ["ENV_FILE", "collect_environment", "rerun_command", "write_environment"]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        return None


def rerun_command(
    *,
    seed: Any,
    fix: str,
    profile: str = "ci",
    backend: str = "local",
    scenarios: Sequence[str] = (),
    repair_cmd: str | None = None,
    report_dir: str | None = None,
    redis_auth: str | None = None,
) -> str:
    """The `harness run` command line that repeats a run's schedule."""
    argv = ["harness", "run"]
    for name in scenarios:
        argv += ["--scenario", name]
    argv += ["--seed", str(seed), "--fix", fix]
    if profile != "ci":
        argv += ["--profile", profile]
    if backend != "local":
        argv += ["--backend", backend]
    if repair_cmd:
        argv += ["--repair-cmd", repair_cmd]
    if redis_auth and redis_auth != "none":
        argv += ["--redis-auth", redis_auth]
    if report_dir:
        argv += ["--report-dir", report_dir]
    return shlex.join(argv)


def collect_environment(
    *,
    backend: str,
    seed: Any,
    fix: str,
    profile: str,
    profile_env: Mapping[str, str],
    scenarios_selected: bool = False,
    repair_cmd: str | None = None,
    redis_auth: str = "none",
) -> dict[str, Any]:
    """What a reader needs to trust or repeat a run: versions, machine, settings.

    `redis_auth` is the --redis-auth mode (none, password, tls), never the password."""
    try:
        cores_usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores_usable = None
    return {
        "backend": backend,
        "seed": seed,
        "fix": fix,
        "profile": profile,
        "profile_env": dict(profile_env),
        "scenarios_selected": scenarios_selected,
        "repair_cmd": repair_cmd,
        "redis_auth": redis_auth,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in REPORT_PACKAGES},
        "cpu_count": os.cpu_count(),
        "cpu_usable": cores_usable,
        "memory_bytes": _memory_bytes(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_environment(report_dir: str | Path, env: Mapping[str, Any]) -> Path:
    """Write `<report_dir>/env.json` (the page reads it; a run without one still renders)."""
    path = Path(report_dir) / ENV_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    return path
