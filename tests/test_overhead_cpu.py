"""`cpu_by_role` reads /proc as the overhead benchmark needs: threads apart, reaped children
counted with their parent, a process that is gone counted as nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from harness.cli.overhead import CPU_ROLES, cpu_by_role


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_main_thread_other_threads_and_reaped_children_are_told_apart() -> None:
    me = os.getpid()
    before = cpu_by_role([me], me)
    _burn(0.3)
    burnt, done = threading.Event(), threading.Event()

    def thread() -> None:
        _burn(0.3)
        burnt.set()
        done.wait(10)

    worker = threading.Thread(target=thread)
    worker.start()
    burnt.wait(10)
    probe = cpu_by_role([me], me)  # while the thread lives, its CPU is another thread's
    done.set()
    worker.join()
    burn = "import time\nt = time.process_time() + 0.3\nwhile time.process_time() < t: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    after = cpu_by_role([me], me)
    assert after["worker_main"] - before["worker_main"] >= 0.2
    assert probe["worker_threads"] - before["worker_threads"] >= 0.1
    assert after["horses"] - before["horses"] >= 0.2  # the reaped child's CPU joined its parent's
    assert after["redis"] >= after["worker_main"]  # the same process, read as a whole


def test_a_process_that_is_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_by_role([child.pid], child.pid) == dict.fromkeys(CPU_ROLES, 0.0)
