"""How the report writes values as text: numbers, byte sizes, anchors, event data.

Plain strings, never markup: the templates and svg.py escape what they insert. The page's
Jinja environment registers these as filters (`|num`, `|bytes`, `|anchor`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from harness.defaults import MAX_EVENT_DATA_CHARS

__all__ = ["anchor", "cell", "data_text", "human_bytes", "num", "short"]


def num(value: Any, digits: int = 1, unit: str = "") -> str:
    """A count as is, a float with `digits` decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def human_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def anchor(name: str) -> str:
    """A scenario's id on the page (`#s-kill-worker`)."""
    return "s-" + "".join(c if c.isalnum() else "-" for c in name)


def short(job_id: str) -> str:
    return job_id[:8]


def cell(v: Any) -> str:
    """One table cell of diagnose-worker output: dashes for null, JSON for nested values."""
    if v is None:
        return "–"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def data_text(data: Mapping[str, Any]) -> str:
    """Event data for a trail row: bulky results summarised, the rest as compact JSON."""
    shown: dict[str, Any] = {}
    for k, v in data.items():
        if v in (None, "", [], {}):
            continue
        if k == "result" and isinstance(v, dict):
            rows = v.get("shap_values")
            shown[k] = f"<SHAP result, {len(rows) if isinstance(rows, list) else '?'} rows>"
            continue
        shown[k] = v
    text = json.dumps(shown, sort_keys=True, default=str)
    return text if len(text) <= MAX_EVENT_DATA_CHARS else text[:MAX_EVENT_DATA_CHARS] + " …"
