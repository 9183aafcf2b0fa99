"""A throw-away CA and a server certificate for a TLS-only local Redis (`--redis-auth tls`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.backends.base import EnvironmentMissing

__all__ = ["tls_files"]


def tls_files(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 in `directory`, made once with openssl."""
    d = directory
    files = {"ca": d / "ca.crt", "cert": d / "redis.crt", "key": d / "redis.key"}
    if files["cert"].exists():
        return files
    if not shutil.which("openssl"):
        raise EnvironmentMissing("redis_tls needs openssl to make a certificate (apt-get install openssl)")
    d.mkdir(parents=True, exist_ok=True)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=harness test CA",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ):
        subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True)
    return files
