"""The HTML report, rendered from real runs and opened in a real browser (Debian's chromium).

Two short real runs (kill-worker with the fix, and with `--fix none`) are made once per
session through the `harness run` CLI; the report of each is opened in headless Chromium driven
by Playwright (Debian's /usr/bin/chromium as its executable: Playwright's own browser download
is never used): the page must load with no console error, no network request, the verdict
banner and the stuck job ids in the DOM, and a non-trivial screenshot. Without chromium (or
Playwright) the browser tests skip, except under CI=true where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fixtures.cli import run_harness
from harness.report import ENV_FILE, REPORT_FILE, ReportError, render, rerun_command

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
    ci = os.environ.get("CI", "").lower() == "true"
    if path is None:
        if ci:
            pytest.fail("chromium is not installed (CI=true: .ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); the browser test needs it")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if ci:
            pytest.fail("playwright is not installed (CI=true: it is in the [dev] extra)")
        pytest.skip("playwright is not installed (pip install -e '.[dev]'); the browser test needs it")
    return path


# -- the browser ------------------------------------------------------------------------------


class Browser:
    """Headless Chromium with a fresh profile, driven by Playwright; it keeps what the page logged
    as an error and every URL it requested."""

    def __init__(self, binary: str, *, width: int = 1400, height: int = 2000) -> None:
        from playwright.sync_api import sync_playwright

        self.errors: list[str] = []
        self.urls: list[str] = []
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=binary,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars"],
            )
            self.page = self._browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        except Exception:
            self._playwright.stop()
            raise
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(f"console.{m.type}: {m.text} {m.location.get('url', '')}")
                if m.type in ("error", "assert")
                else None
            ),
        )
        self.page.on("request", lambda r: self.urls.append(r.url))

    def open(self, url: str) -> None:
        self.errors.clear()
        self.urls.clear()
        self.page.goto(url, wait_until="load")

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def screenshot(self, path: Path, *, selector: str | None = None, full: bool = False) -> Path:
        """The viewport (or one element, or the whole page) as PNG."""
        if selector:
            self.page.locator(selector).screenshot(path=path)
        else:
            self.page.screenshot(path=path, full_page=full)
        return path

    def console_errors(self) -> list[str]:
        return list(self.errors)

    def requested_urls(self) -> list[str]:
        return list(self.urls)

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()


def _visit(binary: str, report: Path, png: Path, *expressions: str) -> tuple[Path, list[str], list[str], list[Any]]:
    """Open `report` in a fresh browser: its screenshot, console errors, requested URLs and the
    value of each JavaScript expression, in that order."""
    browser = Browser(binary)
    try:
        browser.open(report.as_uri())
        shot = browser.screenshot(png)
        values = [browser.evaluate(e) for e in expressions]
        return shot, browser.console_errors(), browser.requested_urls(), values
    finally:
        browser.close()


# -- real runs ---------------------------------------------------------------------------------


def _harness_run(report_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_harness(
        "run",
        "--scenario",
        "kill-worker",
        "--seed",
        "7",
        "--report-dir",
        str(report_dir),
        *extra,
        timeout=400,
        cwd=REPO,
    )


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
    proc = run_harness("report", str(runs["red"]), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert page.is_file()
    after = page.read_text(encoding="utf-8")
    strip = re.compile(r"Generated [^ ]+ by")
    assert strip.sub("", before) == strip.sub("", after)
    empty = run_harness("report", str(tmp_path), timeout=60)
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
    png, errors, urls, (banner, dom, top) = _visit(
        binary,
        runs["red"] / REPORT_FILE,
        tmp_path / "red.png",
        "document.querySelector('#verdict').innerText",
        "document.documentElement.outerHTML",
        "document.querySelector('#verdict').getBoundingClientRect().bottom",
    )
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
    png, errors, urls, (banner, bars, tips) = _visit(
        binary,
        runs["green"] / REPORT_FILE,
        tmp_path / "green.png",
        "document.querySelector('#verdict').innerText",
        "document.querySelectorAll('svg.timeline g.bar').length",
        "[...document.querySelectorAll('svg.timeline g.bar title')].map(t => t.textContent)",
    )
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
