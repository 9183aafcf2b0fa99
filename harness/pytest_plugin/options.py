"""The plugin's command-line options and markers, and what `--redis-auth` means for a stack."""

from __future__ import annotations

import secrets
import string
from typing import Any

import pytest

from harness.backends.base import BACKENDS

__all__ = ["MARKERS", "REDIS_AUTH_MODES", "REDIS_PASSWORD_ENV", "URL_SAFE", "add_options", "redis_auth_fields"]

#: Markers this plugin uses; pyproject.toml declares the same (keep both in step).
MARKERS = {
    "chaos": "injects faults into a running stack",
    "docker": "needs a Docker engine",
    "slow": "takes more than ~30 s",
}
#: --redis-auth modes. tls = a password and TLS only (rediss://, a CA made for the run).
REDIS_AUTH_MODES = ("none", "password", "tls")
#: Sets the password --redis-auth uses (default: a random one per run, never shown).
REDIS_PASSWORD_ENV = "HARNESS_REDIS_PASSWORD"
#: What a password may hold: it goes into REDIS_URL as is.
URL_SAFE = set(string.ascii_letters + string.digits + "-._~")


def add_options(parser: pytest.Parser) -> None:
    """The harness group of options (one place)."""
    group = parser.getgroup("harness", "chaos harness")
    group.addoption(
        "--backend",
        default="local",
        choices=list(BACKENDS),
        help="how stacks are realised: local processes (default) or docker containers (testcontainers)",
    )
    group.addoption(
        "--fix",
        default="bundled",
        help="recovery layer under test, passed to the worker command as --fix: bundled (default), none (stock RQ),"
        " or a deliberately broken one (python -m harness.testing.worker --help lists them)",
    )
    group.addoption(
        "--profile",
        default="ci",
        choices=["ci", "soak"],
        help="ci: short leases, few jobs (default); soak: nemesis for 5,000 jobs or 30 min (others 10x jobs)",
    )
    group.addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="seed for workloads and fault schedules (default: random, shown in the header)",
    )
    group.addoption("--report-dir", default=None, help="where reports go (default: reports/out/<run-id>)")
    group.addoption(
        "--target",
        default=None,
        help="the service under test: a target file (TOML), a pyproject.toml, or a shipped target's name"
        " (default: [tool.harness] of the rootdir's pyproject.toml, else shap-service; docs/TARGETS.md)",
    )
    group.addoption("--api-cmd", default=None, help="replaces the target's API command")
    group.addoption("--worker-cmd", default=None, help="replaces the target's worker command ({name}, {redis_url} ...)")
    group.addoption("--queue", default=None, help="replaces the target's queues with this one")
    group.addoption(
        "--repair-cmd",
        default=None,
        help="external repair command run every 2 s during each scenario ({redis_url} and {queue} are filled in)",
    )
    group.addoption(
        "--redis-auth",
        default="none",
        choices=list(REDIS_AUTH_MODES),
        help="Redis of every stack: none (default); password (requirepass, a random password per run, never"
        f" shown; ${REDIS_PASSWORD_ENV} sets it); tls (password + TLS only, rediss://; local backend only)",
    )


def redis_auth_fields(mode: str, *, password: str | None = None) -> dict[str, Any]:
    """The StackConfig fields of `--redis-auth mode`: none -> {}, password -> a password
    (`password`, else a fresh random one), tls -> the same and TLS only."""
    if mode not in REDIS_AUTH_MODES:
        raise ValueError(f"--redis-auth must be one of {', '.join(REDIS_AUTH_MODES)}, not {mode!r}")
    if mode == "none":
        return {}
    fields: dict[str, Any] = {"redis_password": password or secrets.token_hex(24)}  # argv- and URL-safe
    if mode == "tls":
        fields["redis_tls"] = True
    return fields
