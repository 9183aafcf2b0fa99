"""The `harness` command: run, report, up, demo, reproduce, verify, bench, images (see `main`)."""

from harness.cli.commands import main

__all__ = ["main"]
