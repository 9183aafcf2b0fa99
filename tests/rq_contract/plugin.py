"""pytest plugin for RQ's own test suite: run it with rq_recovery's worker classes in place of rq's.

scripts/rq_contract.sh loads it as ``-p rq_contract_plugin`` (a symlink to this file on PYTHONPATH: inside the
rq sdist the name ``tests`` is RQ's test package, not ours). ``RQ_CONTRACT_WORKER=fix`` swaps the classes at
pytest_configure, before any test module runs ``from rq import Worker``; ``stock`` (the default) swaps nothing.

What is rebound, and why: the names in ``rq``, ``rq.worker``, ``rq.worker.worker_classes`` and ``rq.worker_pool``
(module attributes, looked up when a test module is imported); the ``worker_class`` defaults of ``WorkerPool``
and ``run_worker`` (bound when rq was imported). The CLI needs nothing more: its default ``rq.defaults.
DEFAULT_WORKER_CLASS`` is the string ``'rq.Worker'``, resolved with getattr(rq, 'Worker') when a command runs.
``RQ_WORKER_CLASS`` is set for the ``rqworker`` subprocesses some tests start, which never load this plugin.
Both the mode and the swapped names go into the JUnit report, so compare.py can tell the two runs apart.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

SWAPS = {
    "Worker": "RecoveringWorker",
    "HerokuWorker": "RecoveringHerokuWorker",
    "RoundRobinWorker": "RecoveringRoundRobinWorker",
    "RandomWorker": "RecoveringRandomWorker",
}
MODULES = ("rq", "rq.worker", "rq.worker.worker_classes", "rq.worker_pool")
FIX_MODULE = "rq_recovery.worker_process_fix"
_state: dict[str, Any] = {"mode": "stock", "swapped": []}


def _mode() -> str:
    mode = os.environ.get("RQ_CONTRACT_WORKER", "stock")
    if mode not in ("stock", "fix"):
        raise pytest.UsageError(f"RQ_CONTRACT_WORKER must be stock or fix, not {mode!r}")
    return mode


def swap() -> list[str]:
    """Rebind rq's worker classes to rq_recovery's; returns what was rebound (module.name)."""
    import rq.worker.worker_classes as classes
    import rq.worker_pool as pool

    fix = importlib.import_module(FIX_MODULE)  # before rebinding: it subclasses rq's own Worker
    old = {name: getattr(classes, name) for name in SWAPS}
    new = {name: getattr(fix, repl) for name, repl in SWAPS.items()}
    for name, cls in new.items():
        if not (isinstance(cls, type) and issubclass(cls, old[name])):
            raise pytest.UsageError(f"{FIX_MODULE}.{SWAPS[name]} must subclass rq's {name}")
    done = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in SWAPS:
            if getattr(module, name, None) is old[name]:
                setattr(module, name, new[name])
                done.append(f"{module_name}.{name}")
    by_id = {id(old[name]): new[name] for name in SWAPS}
    for fn in (pool.WorkerPool.__init__, pool.run_worker):
        if fn.__defaults__ and any(id(v) in by_id for v in fn.__defaults__):
            fn.__defaults__ = tuple(by_id.get(id(v), v) for v in fn.__defaults__)
            done.append(f"{fn.__module__}.{fn.__qualname__}(worker_class=)")
        if fn.__kwdefaults__ and any(id(v) in by_id for v in fn.__kwdefaults__.values()):
            fn.__kwdefaults__ = {k: by_id.get(id(v), v) for k, v in fn.__kwdefaults__.items()}
            done.append(f"{fn.__module__}.{fn.__qualname__}(kw worker_class=)")
    os.environ["RQ_WORKER_CLASS"] = f"{FIX_MODULE}.{SWAPS['Worker']}"
    return done


def pytest_configure(config: pytest.Config) -> None:
    import rq

    rq_file = Path(rq.__file__).resolve()
    if rq_file.is_relative_to(config.rootpath.resolve()):
        raise pytest.UsageError(f"rq was imported from the sdist ({rq_file}), not the installed package")
    _state["mode"] = _mode()
    _state["rq"] = f"rq {rq.__version__} from {rq_file.parent}"
    if _state["mode"] == "fix":
        _state["swapped"] = swap()


def pytest_report_header(config: pytest.Config) -> str:
    swapped = (
        f"swapped for {FIX_MODULE}'s classes: {', '.join(_state['swapped'])}"
        if _state["swapped"]
        else "nothing swapped"
    )
    return f"rq-contract: mode={_state['mode']}, {swapped}; {_state['rq']}"


@pytest.fixture(scope="session", autouse=True)
def _rq_contract_properties(record_testsuite_property: Any) -> None:
    """Stamp the report with the mode, so a stock report can never pass for a fix one."""
    import rq

    record_testsuite_property("rq_contract_mode", _state["mode"])
    record_testsuite_property("rq_version", rq.__version__)
    record_testsuite_property("rq_contract_swapped", ",".join(_state["swapped"]))


def end_leftover_children() -> list[int]:
    """Kill the multiprocessing children still alive; returns their pids.

    A pool worker that a test could not stop (its shutdown command came before it listened, see
    docs/RECOVERY.md) is a non-daemon multiprocessing child: the interpreter would join it at exit
    and wait until the run's timeout, with the report long written.
    """
    import multiprocessing
    import sys

    ended = []
    for child in multiprocessing.active_children():
        print(f"rq-contract: ending leftover child process {child.pid} ({child.name})", file=sys.stderr)
        child.kill()
        child.join(5)
        ended.append(child.pid)
    return ended


def pytest_unconfigure(config: pytest.Config) -> None:
    end_leftover_children()
