"""The result check the target file names: a finished job's total is its request's."""

from __future__ import annotations

import math


def total_matches_request(result: object, expect: dict | None) -> str | None:
    """None when `result` is the total of the numbers the harness sent, else why not."""
    numbers = (expect or {}).get("body", {}).get("numbers")
    if not isinstance(result, dict) or "total" not in result:
        return "no total in the result"
    flat = [float(v) for row in numbers or [] for v in (row if isinstance(row, list) else [row])]
    if result.get("count") != len(flat):
        return f"{result.get('count')} numbers summed, {len(flat)} sent"
    if not math.isclose(result["total"], sum(flat), rel_tol=1e-9, abs_tol=1e-9):
        return f"total {result['total']} is not {sum(flat)}"
    return None
