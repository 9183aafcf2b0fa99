"""The app's job functions (pickled by RQ: the worker imports this module)."""

from __future__ import annotations

import time


def total(numbers: list, seconds: float = 0.0) -> dict:
    """Sum every number in `numbers` (nested lists too), after `seconds` of work."""
    time.sleep(seconds)
    flat = []
    stack = [numbers]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            flat.append(float(item))
    return {"total": sum(flat), "count": len(flat)}
