"""The run report: ``index.html`` (self-contained, opens offline), ``summary.json`` and ``env.json``.

    from harness.report import render
    render(report_dir)                  # <report_dir>/index.html from the run saved there

Modules, one thing each: `summary` (the summary.json shape and its writer), `environment`
(env.json and the rerun command), `model` (a run directory read into the view model), `svg`
(charts), `formatting` (values as text), `html` (the page from the Jinja2 templates in
``templates/``, package data).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.report.environment import ENV_FILE, collect_environment, rerun_command, write_environment
    from harness.report.html import REPORT_FILE, page, render
    from harness.report.model import ReportError, RunView, read_run
    from harness.report.summary import SUMMARY_FILE, RunSummary, read_summary, validate_summary

__all__ = [
    "ENV_FILE",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "ReportError",
    "RunSummary",
    "RunView",
    "collect_environment",
    "page",
    "read_run",
    "read_summary",
    "render",
    "rerun_command",
    "validate_summary",
    "write_environment",
]

#: Where each public name lives. Loaded on first use (PEP 562), so that the pytest plugin's
#: `RunSummary` does not bring Jinja2, the view model and the checkers into every session.
_HOME = {
    "ENV_FILE": "environment",
    "collect_environment": "environment",
    "rerun_command": "environment",
    "write_environment": "environment",
    "REPORT_FILE": "html",
    "page": "html",
    "render": "html",
    "ReportError": "model",
    "RunView": "model",
    "read_run": "model",
    "SUMMARY_FILE": "summary",
    "RunSummary": "summary",
    "read_summary": "summary",
    "validate_summary": "summary",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
