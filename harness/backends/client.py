"""Talking to the service under test over HTTP, the same on every backend."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any, Self

import requests
from redis import Redis

from harness.backends.config import StackConfig, new_run_id
from harness.defaults import TERMINAL_STATUSES
from harness.wait import eventually

__all__ = ["ServiceClient"]


class ServiceClient:
    """Talking to the service over HTTP, the same on every backend (needs api_url and workers)."""

    workers: list[Any]
    admin_token: str
    api_port: int  # on 127.0.0.1
    _redis: Redis | None = None

    def __init__(self, config: StackConfig | None = None, *, run_id: str | None = None) -> None:
        """What every backend's stack starts from: its config, run id, log dir and admin token."""
        self.config = config or StackConfig()
        self.run_id = run_id or new_run_id()
        self._own_dir = self.config.log_dir is None
        self.log_dir = Path(self.config.log_dir or tempfile.mkdtemp(prefix=f"harness-{self.run_id}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = secrets.token_hex(16)  # no leading "-": it is passed as a CLI argument

    @property
    def redis_url(self) -> str:
        raise NotImplementedError

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def redis(self) -> Redis:
        """A client of the stack's Redis (decoded strings), made on first use."""
        if self._redis is None:
            self._redis = Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)
        return self._redis

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def submit(self, rows: list[list[float]] | None = None, **body: Any) -> dict[str, Any]:
        payload = {"model": "diabetes", "rows": rows or [[0.01] * 10], **body}
        r = requests.post(f"{self.api_url}/analyze", json=payload, timeout=10)
        r.raise_for_status()
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.api_url}/jobs/{job_id}", timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_status(self, job_id: str, statuses: tuple[str, ...], *, timeout: float = 60.0) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> bool:
            last.update(self.job(job_id))
            return last["status"] in statuses

        if not eventually(reached, timeout=timeout):
            raise TimeoutError(f"job {job_id} still {last.get('status')} after {timeout} s: {last}")
        return dict(last)

    def wait_terminal(self, job_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_status(job_id, TERMINAL_STATUSES, timeout=timeout)

    def wait_settled(self, job_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Terminal, with the facts of its last attempt (the recovery layer writes them with the
        outcome); a job that ends without them (a plain RQ worker's) times out here."""
        self.wait_terminal(job_id, timeout=timeout)

        def with_facts() -> dict[str, Any] | None:
            view = self.job(job_id)
            return view if "duration_s" in view.get("facts", {}) else None

        view = eventually(with_facts, timeout=timeout)
        if view is None:
            raise TimeoutError(f"job {job_id} ended but its facts never came: {self.job(job_id)}")
        return view

    def worker(self, name: str) -> Any:
        for handle in self.workers:
            if handle.name == name:
                return handle
        raise KeyError(f"no worker {name} in this stack")

    # -- lifecycle: `with` starts everything and removes everything, even on a failed start --

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _entering(self) -> None:
        """Called before `start` by `with` (DockerStack: SIGTERM then unwinds like Ctrl-C)."""

    def __enter__(self) -> Self:
        self._entering()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
