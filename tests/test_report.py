"""The HTML report, rendered from real runs and opened in a real browser (Debian's chromium).

Two short real runs (kill-worker with the fix, and with `--fix none`) are made once per
session through the `harness run` CLI; the report of each is opened in headless Chromium over
the DevTools protocol (a small stdlib WebSocket client below, no extra package): the page must
load with no console error, no network request, the verdict banner and the stuck job ids in the
DOM, and a non-trivial screenshot. Without chromium the browser tests skip, except under CI=true
where that is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from harness.report.html import ENV_FILE, REPORT_FILE, ReportError, render, rerun_command

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 2 * 1024 * 1024


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _need_chromium() -> str:
    path = _chromium()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (CI=true: .ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); the browser test needs it")
    return path


# -- a tiny DevTools-protocol client (stdlib only) --------------------------------------------


class _WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: text frames, client masking."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def send(self, text: str) -> None:
        data = text.encode()
        header = bytearray([0x81])
        n = len(data)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header.append(0x80 | 126)
            header += n.to_bytes(2, "big")
        else:
            header.append(0x80 | 127)
            header += n.to_bytes(8, "big")
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes(header) + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (9, 10):
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Browser:
    """Headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, binary: str, *, width: int = 1400, height: int = 2000) -> None:
        self.profile = tempfile.mkdtemp(prefix="report-chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.width, self.height = width, height
        self.events: list[dict[str, Any]] = []
        self._id = 0
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.call(method)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        my_id = self._id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e["method"] == method:
                return e
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise TimeoutError(method)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        self.evaluate("1")  # drain what the load produced

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluate failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path, *, selector: str | None = None, full: bool = False) -> Path:
        """The viewport (or one element, or the whole page) as PNG."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": bool(selector or full)}
        if selector or full:
            rect = self.evaluate(
                "(() => { const e = "
                + (f"document.querySelector({json.dumps(selector)})" if selector else "document.documentElement")
                + "; const r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, "
                "r.height]; })()"
            )
            x, y, w, h = rect
            params["clip"] = {"x": max(0, x - 8), "y": max(0, y - 8), "width": w + 16, "height": h + 16, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(f"uncaught: {p.get('exceptionDetails', {}).get('text')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p.get('type')}: {[a.get('value') for a in p.get('args', [])]}")
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


# -- real runs ---------------------------------------------------------------------------------


def _harness_run(report_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--scenario",
        "kill-worker",
        "--seed",
        "7",
        "--report-dir",
        str(report_dir),
        *extra,
    ]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same kill-worker schedule with the fix (green) and with stock RQ (red)."""
    from harness.backends.base import EnvironmentMissing
    from harness.backends.local.redis_server import find_redis_server

    try:
        find_redis_server()
    except EnvironmentMissing as exc:
        pytest.skip(str(exc))
    base = tmp_path_factory.mktemp("report-runs")
    out = {}
    for name, extra in (("green", ()), ("red", ("--fix", "none"))):
        d = base / name
        proc = _harness_run(d, *extra)
        assert (d / "summary.json").exists(), f"harness run wrote no summary:\n{proc.stdout[-3000:]}\n{proc.stderr}"
        want = 0 if name == "green" else 1
        assert proc.returncode == want, f"{name} run exited {proc.returncode}:\n{proc.stdout[-3000:]}"
        out[name] = d
    return out


def test_run_writes_report_and_environment(runs: dict[str, Path]) -> None:
    for d in runs.values():
        page = d / REPORT_FILE
        assert page.is_file(), "harness run must write index.html beside summary.json"
        assert page.stat().st_size < MAX_BYTES
        env = json.loads((d / ENV_FILE).read_text())
        assert env["packages"]["rq"] and env["python"] and env["cpu_count"]
        assert env["seed"] == 7
    red = json.loads((runs["red"] / "summary.json").read_text())
    assert red["scenarios"][0]["jobs"]["stuck"] >= 1
    assert (runs["red"] / "kill-worker" / "diagnose.json").is_file(), "stuck jobs: diagnose-worker output captured"


def test_page_is_self_contained(runs: dict[str, Path]) -> None:
    for d in runs.values():
        text = (d / REPORT_FILE).read_text(encoding="utf-8")
        assert "<script src" not in text and "<link" not in text and "@import" not in text
        # http(s) only as escaped text, never in an attribute that would load something
        assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?https?://""", text, re.I)
        for m in re.finditer(r"https?://", text):
            assert text.rfind("<", 0, m.start()) < text.rfind(">", 0, m.start()), "a URL inside a tag"


def test_report_rerenders_and_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    page = runs["red"] / REPORT_FILE
    before = page.read_text(encoding="utf-8")
    page.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(runs["red"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert page.is_file()
    after = page.read_text(encoding="utf-8")
    strip = re.compile(r"Generated [^ ]+ by")
    assert strip.sub("", before) == strip.sub("", after)
    empty = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert empty.returncode == 2 and "summary.json" in empty.stderr
    with pytest.raises(ReportError):
        render(tmp_path)


def test_red_report_in_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    binary = _need_chromium()
    summary = json.loads((runs["red"] / "summary.json").read_text())
    from harness.checkers import AllTerminal
    from harness.workload.history import History

    history = History.load(runs["red"] / "kill-worker" / "history.jsonl")
    stuck = [s["job_id"] for s in AllTerminal().check(history).details["stuck_jobs"]]
    assert stuck
    browser = Browser(binary)
    try:
        browser.open((runs["red"] / REPORT_FILE).as_uri())
        png = browser.screenshot(tmp_path / "red.png")
        banner = browser.evaluate("document.querySelector('#verdict').innerText")
        dom = browser.evaluate("document.documentElement.outerHTML")
        top = browser.evaluate("document.querySelector('#verdict').getBoundingClientRect().bottom")
        errors = browser.console_errors()
        urls = browser.requested_urls()
    finally:
        browser.close()
    assert png.stat().st_size > 20_000, "the screenshot looks empty"
    assert "FAIL" in banner and "1 of 1 scenario failed" in banner, banner
    assert f"{summary['scenarios'][0]['jobs']['stuck']} job" in banner
    assert top < 900, "the verdict must be in the first screen"
    for job_id in stuck:
        assert job_id in banner, "stuck job ids are named in the banner"
        assert f'id="job-{job_id}"' in dom, "each stuck job has its event trail"
    assert "diagnose-worker --json" in dom
    assert rerun_command(seed=7, fix="none", scenarios=["kill-worker"]) in dom
    assert not errors, errors
    assert all(u.startswith(("file:", "data:", "about:")) for u in urls), urls


def test_green_report_in_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    binary = _need_chromium()
    browser = Browser(binary)
    try:
        browser.open((runs["green"] / REPORT_FILE).as_uri())
        png = browser.screenshot(tmp_path / "green.png")
        banner = browser.evaluate("document.querySelector('#verdict').innerText")
        bars = browser.evaluate("document.querySelectorAll('svg.timeline g.bar').length")
        tips = browser.evaluate("[...document.querySelectorAll('svg.timeline g.bar title')].map(t => t.textContent)")
        errors = browser.console_errors()
        urls = browser.requested_urls()
    finally:
        browser.close()
    assert png.stat().st_size > 20_000
    assert banner.startswith("PASS"), banner
    assert bars >= 1 and any("job " in t and "attempt" in t for t in tips)
    assert not errors, errors
    assert all(u.startswith(("file:", "data:", "about:")) for u in urls), urls


# -- fast tests on a synthetic run (no stack, no browser) ----------------------------------------


def _synthetic_run(tmp_path: Path, *, job_id: str = "job-1") -> Path:
    from harness.workload.history import ACCEPTED, FAULT_HEALED, FAULT_INJECTED, NOTE, STATUS, TERMINAL, History

    t = iter(x / 10 for x in range(1000))
    h = History(clock=lambda: next(t))
    h.record(NOTE, text="scenario kill-worker started", workers=["w1", "w2"], env={"LIVENESS_TTL": "2"})
    h.record(ACCEPTED, job_id, request_id="r0", job_kind="slow")
    h.record(STATUS, job_id, status="started", attempts=1, worker="w1")
    h.record(FAULT_INJECTED, job_id, fault="kill-worker", label="kill-worker", target="w1", restarted="w3")
    h.record(ACCEPTED, "stuck<1>", request_id="r1", job_kind="slow")
    h.record(STATUS, "stuck<1>", status="started", attempts=1, worker="w2")
    reason = "abandoned: worker w1 silent for 2.1 s, attempt 1/3"
    h.record(STATUS, job_id, status="queued", attempts=1, worker="w1", recovery=reason)
    h.record(STATUS, job_id, status="started", attempts=2, worker="w3", recovery=reason)
    h.record(STATUS, job_id, status="finished", attempts=2, worker="w3", recovery=reason, peak_rss_bytes=123456789)
    h.record(TERMINAL, job_id, status="finished", attempts=2, worker="w3", executions=2, recovery=reason)
    h.record(FAULT_HEALED, fault="kill-worker", label="kill-worker")
    h.record(NOTE, text="final phase: faults healed")
    h.record(STATUS, "stuck<1>", status="started", attempts=1, worker="w2", final=True, last_heartbeat_at="T1")
    sdir = tmp_path / "kill-worker"
    sdir.mkdir(parents=True)
    h.save(sdir / "history.jsonl")
    (sdir / "logs").mkdir()
    line = json.dumps({"event": "job_requeued", "job_id": job_id, "attempt": 1, "by": "w2-sweeper", "reason": reason})
    (sdir / "logs" / "w2.log").write_text(f"2026-01-01 00:00:00 shap_service.events WARNING {line}\n")
    (sdir / "diagnose.json").write_text(json.dumps({"exit_code": 1, "t": 1.2, "report": {"stuck": []}}))
    summary = {
        "run_id": "r<x>",
        "backend": "local",
        "seed": 3,
        "fix": "bundled",
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 9.0,
        "scenarios": [
            {
                "name": "kill-worker",
                "fault": "kill-worker",
                "verdict": "fail",
                "jobs": {"accepted": 2, "finished": 1, "failed": 0, "stuck": 1, "lost": 0, "duplicates": 1},
                "recovery_s": {"p50": 0.7, "p99": 0.7, "max": 0.7},
                "bound_s": 5.0,
                "checkers": {"all_terminal": "fail", "no_lost": "pass"},
            }
        ],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    return tmp_path


def test_render_synthetic_run(tmp_path: Path) -> None:
    d = _synthetic_run(tmp_path)
    page = render(d).read_text(encoding="utf-8")
    assert "FAIL: 1 of 1 scenario failed" in page
    assert "stuck&lt;1&gt;" in page and "stuck<1>" not in page, "job ids are escaped"
    assert "r&lt;x&gt;" in page
    assert "w3 ↻ w1" in page, "a restarted worker's lane names the one it replaces"
    assert "by: w2-sweeper" in page, "who recovered the job comes from the service log"
    assert "peak RSS 117.7 MiB" in page
    assert 'class="bar stuckbar"' in page
    assert "attempt 2 of 2 on w3" in page
    assert "last heartbeat</dt><dd>T1" in page
    assert "harness run --seed 3 --fix bundled" in page
    assert "no env.json" in page


def test_progress_lines() -> None:
    import io

    from harness.pytest_plugin.progress import Progress
    from harness.workload.history import ACCEPTED, FAULT_INJECTED, NOTE, TERMINAL, History

    out = io.StringIO()
    p = Progress(total=3, out=out, live=False)
    p.start("kill-worker")
    h = History()
    p.attach(h)
    assert "jobs 0/? ended" in p.status_line()  # before the run's start note
    h.record(NOTE, text="scenario kill-worker started", planned_jobs=4, planned_faults=1)
    h.record(ACCEPTED, "a")
    h.record(FAULT_INJECTED, "a", fault="kill-worker")
    h.record(TERMINAL, "a", status="finished")
    assert "jobs 1/4 ended" in p.status_line() and "faults 1/1 injected" in p.status_line()
    p.set_outcome("passed")
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/3] kill-worker: started"
    assert lines[-1].startswith("[1/3] kill-worker  PASSED") and "no result" in lines[-1]


def test_progress_takes_the_plan_from_the_run_itself() -> None:
    """A soak's start note names its job target and no fault count (its nemesis runs while it
    submits): the line shows exactly that."""
    import io

    from harness.pytest_plugin.progress import Progress
    from harness.workload.history import ACCEPTED, NOTE, History

    p = Progress(total=1, out=io.StringIO(), live=False)
    p.start("nemesis")
    h = History()
    p.attach(h)
    h.record(NOTE, text="scenario nemesis started", planned_jobs=300, planned_faults=None, soak={"jobs": 300})
    h.record(ACCEPTED, "a")
    line = p.status_line()
    assert "jobs 0/300 ended" in line and "faults 0 injected" in line, line
    p.finish()
