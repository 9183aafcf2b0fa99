"""The backend interface (harness/backends.py): no engine, no processes needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from harness.backends.base import BACKENDS, Backend, WorkerControl, make_stack
from harness.backends.config import StackConfig
from harness.backends.local.stack import Stack
from harness.backends.local.worker import WorkerHandle
from harness.defaults import OOM_TREE_LIMIT_MB
from harness.nemesis import OOM, OOM_DOCKER_MODE, OOM_LOCAL_MODE, KillWorker, fault_label
from harness.run import WHEN_RUNNING, Scenario
from harness.workload import Workload


def test_make_stack_gives_each_backend_and_rejects_others(tmp_path):
    local = make_stack("local", StackConfig(workers=0, log_dir=tmp_path), run_id="r1")
    assert isinstance(local, Stack) and local.backend == "local" and local.run_id == "r1"
    assert isinstance(local, Backend)
    docker_stack = pytest.importorskip("harness.backends.docker.stack")
    docker = make_stack("docker", StackConfig(workers=0, log_dir=tmp_path), run_id="r2")
    assert isinstance(docker, docker_stack.DockerStack) and docker.backend == "docker"
    assert isinstance(docker, Backend)
    with pytest.raises(ValueError, match="unknown backend"):
        make_stack("remote", StackConfig())
    assert BACKENDS == ("local", "docker")


def test_both_worker_kinds_have_every_worker_control_method():
    methods = [n for n, v in vars(WorkerControl).items() if callable(v) and not n.startswith("_")]
    assert {"kill", "kill_horse", "pause", "resume", "terminate", "partition", "heal_partition"} <= set(methods)
    docker_stack = pytest.importorskip("harness.backends.docker.stack")
    for cls in (WorkerHandle, docker_stack.DockerWorker):
        assert all(callable(getattr(cls, n, None)) for n in methods), cls


@dataclass
class LocalOnly:
    name: ClassVar[str] = "local-only"
    backends: ClassVar[tuple[str, ...]] = ("local",)

    def inject(self, ctx: Any) -> dict[str, Any]:
        return {}

    def heal(self, ctx: Any) -> None:
        pass


def test_skip_reason_names_the_backend_and_the_fault():
    w = Workload(jobs=1)
    both = Scenario(name="s", workload=w, faults=[(WHEN_RUNNING, KillWorker())])
    assert both.skip_reason("local") is None and both.skip_reason("docker") is None
    only = Scenario(name="d", workload=w, backends=("docker",))
    assert only.skip_reason("local") == "scenario d runs on backends docker, not local"
    fault = Scenario(name="f", workload=w, faults=[(WHEN_RUNNING, LocalOnly())])
    assert fault.skip_reason("local") is None
    assert fault.skip_reason("docker") == "fault local-only has no docker form (it runs on local)"


def test_oom_limits_and_labels_per_backend():
    tree, horse = OOM(limit_mb=380), OOM(limit_mb=380, kill="horse")
    # docker: a tight limit makes the worker parent the kernel's victim, a roomy one the horse
    assert tree.stack_options == {"worker_mem_limit_mb": OOM_TREE_LIMIT_MB}
    assert horse.stack_options == {"worker_mem_limit_mb": 380}
    assert fault_label(tree) == f"oom: {OOM_LOCAL_MODE}"
    assert fault_label(tree, "docker") == f"oom: {OOM_DOCKER_MODE}"
    scenario = Scenario(name="o", workload=Workload(jobs=1), faults=[(WHEN_RUNNING, tree)])
    assert scenario.stack_config(fix="bundled", profile=_ci(), log_dir=None).worker_mem_limit_mb == OOM_TREE_LIMIT_MB
    assert scenario.fault_names("docker") == f"oom: {OOM_DOCKER_MODE}"


def _ci():
    from harness.run import PROFILES

    return PROFILES["ci"]
