"""The docker backend (harness/backends/docker/): a real container stack, its cleanup, no pulls.

Marked `docker`: skipped with how to enable it when no engine answers, a failure under CI=true or
HARNESS_REQUIRE_DOCKER=1 (the `docker_images` fixture builds missing images first).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.backends.base import Backend, WorkerControl, make_stack
from harness.backends.config import StackConfig, new_run_id
from harness.backends.docker import images
from harness.backends.docker.engine import DockerUnavailable
from harness.backends.docker.reaper import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_RUN,
    owner_label,
    reap_leftovers,
    remove_run,
    run_objects,
)
from harness.backends.docker.stack import DockerStack
from harness.checkers import additivity_errors
from harness.defaults import FAST_LEASES
from harness.wait import eventually

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, *, env: dict[str, str] | None = None, **kw) -> StackConfig:
    return StackConfig(env={**FAST_LEASES, **(env or {})}, log_dir=tmp_path / "logs", **kw)


def test_stack_comes_up_and_a_job_finishes_additive(docker_images, tmp_path):
    import docker

    client = docker.from_env()
    t0 = time.monotonic()
    with make_stack("docker", _config(tmp_path, workers=1)) as stack:
        up_s = time.monotonic() - t0
        assert isinstance(stack, Backend) and isinstance(stack.workers[0], WorkerControl)
        run_id = stack.run_id
        # every object is labelled with the run; ports are mapped to 127.0.0.1 only
        containers = client.containers.list(filters={"label": f"{LABEL_RUN}={run_id}"})
        assert {c.labels["harness.role"] for c in containers} == {"redis", "api", "worker"}
        assert all(c.labels[LABEL_MANAGED] == "true" and c.labels[LABEL_OWNER] for c in containers)
        bindings = [b for c in containers for bs in (c.attrs["HostConfig"]["PortBindings"] or {}).values() for b in bs]
        assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}
        assert len(run_objects(run_id, client)) == 3 + 1 + 1  # containers, network, volume
        assert stack.redis.ping()
        assert stack.api_url.startswith("http://127.0.0.1:")

        rows = [[0.038, 0.05, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]] * 3
        view = stack.wait_terminal(stack.submit(rows)["job_id"], timeout=60)
        assert view["status"] == "finished", view
        worker = stack.workers[0].name
        assert view["worker"] == worker
        for err, pred in additivity_errors(view["result"]):
            assert err <= 1e-6 * max(1.0, abs(pred))
    assert run_objects(run_id, client) == []
    # the containers' logs and docker events are kept in log_dir
    assert worker in (tmp_path / "logs" / f"{worker}.log").read_text()
    assert (tmp_path / "logs" / "docker-events.jsonl").read_text().count('"action": "start"') == 3
    print(f"docker stack (redis + api + 1 worker) up in {up_s:.2f} s: {stack.startup_s}")


def test_cleanup_after_an_exception_inside_the_with(docker_images, tmp_path):
    stack = DockerStack(_config(tmp_path, workers=0))
    with pytest.raises(RuntimeError, match="boom"), stack:
        assert run_objects(stack.run_id)  # redis + api containers, network, volume
        raise RuntimeError("boom")
    assert run_objects(stack.run_id) == []


def test_cleanup_when_start_fails(docker_images, tmp_path):
    """A worker that exits at once (bad command) fails readiness; nothing of the run stays."""
    stack = DockerStack(_config(tmp_path, workers=1), worker_command=("sh", "-c", "exit 7", "--"))
    with pytest.raises(Exception, match="exited"), stack:
        pass
    assert run_objects(stack.run_id) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cleanup_on_ctrl_c_and_sigterm(docker_images, tmp_path, sig):
    run_id = new_run_id()
    script = textwrap.dedent(
        f"""
        import time
        from harness.backends.docker.stack import DockerStack
        from harness.backends.config import StackConfig
        with DockerStack(StackConfig(workers=0), run_id={run_id!r}):
            print("up", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert run_objects(run_id)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert "KeyboardInterrupt" in err  # unwound through the `with`, which removed everything
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run_objects(run_id) == []


def test_leftovers_of_a_dead_owner_are_reaped_and_live_ones_kept(docker_images):
    import docker

    client = docker.from_env()
    dead_run, live_run = f"leftover-{new_run_id()}", f"live-{new_run_id()}"
    dead = {LABEL_RUN: dead_run, LABEL_MANAGED: "true", LABEL_OWNER: f"{socket.gethostname()}:999999999:1"}
    live = {LABEL_RUN: live_run, LABEL_MANAGED: "true", LABEL_OWNER: owner_label()}  # this test process
    try:
        for labels in (dead, live):
            name = f"harness-{labels[LABEL_RUN]}"
            client.networks.create(name, labels=labels)
            client.volumes.create(name=name, labels=labels)
            client.containers.create(docker_images[1], ["true"], name=name, labels=labels)
        assert len(run_objects(dead_run, client)) == len(run_objects(live_run, client)) == 3
        removed = reap_leftovers(client)
        assert run_objects(dead_run, client) == []
        assert len([r for r in removed if dead_run in r]) == 3
        assert len(run_objects(live_run, client)) == 3  # its owner is alive: not a leftover
    finally:
        remove_run(dead_run, client)
        remove_run(live_run, client)


def test_a_pull_attempt_raises(docker_images):
    import docker
    from testcontainers.core.container import DockerContainer

    restore = images.forbid_pulls()
    try:
        client = docker.from_env()
        with pytest.raises(images.PullForbidden, match="harness images build --offline"):
            client.images.pull("redis", tag="7")
        with pytest.raises(images.PullForbidden):
            client.api.pull("python", tag="3.11-slim")
        # testcontainers pulls when the image is missing: that pull is refused, nothing runs
        with pytest.raises(images.PullForbidden):
            DockerContainer("harness-missing-image:never").start()
    finally:
        restore()
    assert client.containers.list(all=True, filters={"ancestor": "harness-missing-image:never"}) == []


def test_missing_images_name_the_build_command(docker_images, tmp_path):
    stack = DockerStack(_config(tmp_path, workers=0), service_image="harness-missing-image:never")
    with pytest.raises(DockerUnavailable, match="harness images build --offline"), stack:
        pass
    assert run_objects(stack.run_id) == []


def test_worker_container_faults(docker_images, tmp_path):
    """kill-horse by exec, pause/unpause, network disconnect/connect, docker kill (exit 137)."""
    with DockerStack(_config(tmp_path, workers=1, env={"MAX_ATTEMPTS": "3"})) as stack:
        worker = stack.workers[0]
        job = stack.submit(chaos={"sleep_s": 30})["job_id"]
        stack.wait_status(job, ("started",), timeout=20)
        eventually(worker.horse_pids, timeout=10, interval=0.1)
        horses = worker.horse_pids()
        assert horses and 1 not in horses  # PID 1 is the worker parent
        assert worker.kill_horse() == horses
        assert worker.alive()  # the container survives its horse

        worker.pause()
        assert worker.state()["status"] == "paused" and worker.alive()
        worker.resume()
        assert worker.state()["status"] == "running"

        worker.partition()
        net = stack.network_client()
        net.reload()
        assert worker.container_id not in {c.id for c in net.containers}
        worker.heal_partition()
        net.reload()
        assert worker.container_id in {c.id for c in net.containers}

        killed = worker.kill()
        assert killed["exit_code"] == 137
        assert not worker.alive() and worker.exit_code() == 137
        assert stack.container_events()[0]  # die/kill of the worker were seen
        actions = {e["action"] for e in stack.container_events()[0] if e.get("worker") == worker.name}
        assert {"pause", "unpause", "kill", "die"} <= actions
