"""Redis answers bytes unless its client decodes them; the harness reads them as text through one helper."""

from __future__ import annotations

from typing import Any

__all__ = ["text"]


def text(value: Any) -> str | None:
    """`value` as str (bytes decoded as UTF-8), None kept as None (a missing key or field)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
