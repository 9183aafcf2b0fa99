"""One container of a docker stack (`Box`), and a worker container as faults see it (`DockerWorker`)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from harness.backends.base import Unsupported
from harness.wait import eventually

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

    from harness.backends.docker.stack import DockerStack

__all__ = ["Box", "DockerWorker"]


# One exec script per need; the image has a POSIX sh but not necessarily procps.
#: Children of the worker parent (PID 1 of the container): the work-horse(s). `docker exec`
#: processes have PPID 0 inside the container's pid namespace, so they never match.
_HORSES = 'for d in /proc/[0-9]*; do set -- $(cat "$d/stat" 2>/dev/null); [ "$4" = 1 ] && echo "$1"; done; true'
_KILL_HORSES = (
    'for d in /proc/[0-9]*; do set -- $(cat "$d/stat" 2>/dev/null); '
    '[ "$4" = 1 ] && kill -9 "$1" 2>/dev/null && echo "$1"; done; true'
)


class Box:
    """One container of the stack: its testcontainers object and how to talk about it."""

    def __init__(self, name: str, container: DockerContainer) -> None:
        self.name = name
        self.tc = container

    @property
    def raw(self) -> Any:
        return self.tc.get_wrapped_container()

    @property
    def started(self) -> bool:
        return self.tc._container is not None

    def reload(self) -> Any:
        raw = self.raw
        raw.reload()
        return raw

    def status(self) -> str:
        try:
            return str(self.reload().status)
        except Exception:  # noqa: BLE001 - removed
            return "removed"

    def state(self) -> dict[str, Any]:
        try:
            raw = self.reload()
        except Exception:  # noqa: BLE001
            return {"status": "removed"}
        st = raw.attrs.get("State", {})
        return {
            "id": raw.short_id,
            "status": raw.status,
            "oom_killed": st.get("OOMKilled"),
            "exit_code": st.get("ExitCode"),
            "pid": st.get("Pid"),
        }

    def alive(self) -> bool:
        return self.started and self.status() in ("running", "paused", "restarting")

    def wait_exit(self, timeout: float) -> int | None:
        """The container's exit code once it has exited, or None after `timeout` s."""
        state: dict[str, Any] = {}

        def exited() -> bool:
            state.update(self.state())
            return state["status"] in ("exited", "dead", "removed")

        return state.get("exit_code") if eventually(exited, timeout=timeout) else None

    def kill(self) -> dict[str, Any]:
        """`docker kill` (SIGKILL to PID 1: the kernel then kills every process of the container)."""
        raw = self.raw
        if raw.status == "paused" or self.status() == "paused":
            raw.unpause()  # a frozen process cannot die until thawed
        raw.kill()
        code = self.wait_exit(10)
        return {"container": raw.short_id, "signal": "SIGKILL", "exit_code": code}

    def start_again(self) -> None:
        self.raw.start()

    def exec_sh(self, script: str, *, user: str = "0") -> str:
        result = self.raw.exec_run(["sh", "-c", script], user=user)
        if result.exit_code != 0:
            raise Unsupported(f"docker exec in {self.name} failed ({result.exit_code}): {result.output[-300:]!r}")
        return result.output.decode(errors="replace")

    def logs(self, lines: int | None = None) -> str:
        try:
            raw = self.raw.logs(tail=lines) if lines else self.raw.logs()
            return raw.decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"(no logs: {type(exc).__name__})"

    def remove(self) -> None:
        if not self.started:
            return
        try:
            if self.status() == "paused":
                self.raw.unpause()
            self.tc.stop(force=True, delete_volume=True)
        except Exception:  # noqa: BLE001 - gone already; remove_run sweeps anyway
            pass


class DockerWorker:
    """A worker container (a `harness.backends.base.WorkerControl`)."""

    def __init__(self, name: str, box: Box, stack: DockerStack, mem_limit_mb: int | None) -> None:
        self.name = name
        self.box = box
        self.stack = stack
        self.mem_limit_mb = mem_limit_mb
        self._stopper: threading.Thread | None = None
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._t0 = time.monotonic()

    def _launch(self) -> None:
        """Create and start the container on a thread: a restart must not delay the fault's record."""

        def run() -> None:
            try:
                self.box.tc.start()
            except BaseException as exc:  # noqa: BLE001 - raised by wait_started
                self._start_error = exc

        self._starter = threading.Thread(target=run, name=f"docker-start-{self.name}", daemon=True)
        self._starter.start()

    def wait_started(self, timeout: float = 60.0) -> None:
        """The container exists and was started (raises what starting it raised)."""
        if self._starter is not None:
            self._starter.join(timeout)
            if self._starter.is_alive():
                raise TimeoutError(f"starting container {self.name} took over {timeout:.0f} s")
        if self._start_error is not None:
            raise self._start_error

    def __repr__(self) -> str:
        return f"DockerWorker({self.name!r})"

    @property
    def container_id(self) -> str:
        return str(self.box.raw.id)

    def alive(self) -> bool:
        if self._starter is not None and self._starter.is_alive():
            return True  # being started: it will run (readiness waits for it)
        return self.box.alive()

    def state(self) -> dict[str, Any]:
        """Container id, status, State.OOMKilled, exit code, host pid of PID 1."""
        return self.box.state()

    def exit_code(self) -> int | None:
        state = self.box.state()
        return state.get("exit_code") if state["status"] in ("exited", "dead") else None

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        return self.box.wait_exit(timeout)

    def horse_pids(self) -> list[int]:
        if self.box.status() != "running":
            return []
        try:
            return [int(p) for p in self.box.exec_sh(_HORSES).split()]
        except Exception:  # noqa: BLE001 - exited meanwhile
            return []

    def kill(self) -> dict[str, Any]:
        return self.box.kill()

    def kill_horse(self) -> list[int]:
        """`docker exec` (as root) a `kill -9` of PID 1's children: the horse only."""
        return [int(p) for p in self.box.exec_sh(_KILL_HORSES).split()]

    def pause(self) -> dict[str, Any]:
        self.box.raw.pause()
        return {"container": self.box.raw.short_id, "how": "docker pause"}

    def resume(self) -> None:
        if self.box.status() == "paused":
            self.box.raw.unpause()

    def terminate(self, grace_s: float = 30.0) -> dict[str, Any]:
        """`docker stop -t grace_s` in the background: SIGTERM now, SIGKILL after the grace."""
        raw = self.box.raw

        def stop() -> None:
            try:
                raw.stop(timeout=int(grace_s))
            except Exception:  # noqa: BLE001 - removed at teardown meanwhile
                pass

        self._stopper = threading.Thread(target=stop, name=f"docker-stop-{self.name}", daemon=True)
        self._stopper.start()
        return {"container": raw.short_id, "how": f"docker stop -t {int(grace_s)}"}

    def partition(self) -> dict[str, Any]:
        """`docker network disconnect`: the container has no route to Redis (nor anything else)."""
        self.stack.network_client().disconnect(self.container_id, force=True)
        return {"container": self.box.raw.short_id, "how": "docker network disconnect"}

    def heal_partition(self) -> None:
        net = self.stack.network_client()
        net.reload()
        if self.container_id not in {c.id for c in net.containers}:
            net.connect(self.container_id, aliases=[self.name])

    def log_tail(self, lines: int = 30) -> str:
        return self.box.logs(lines)
