"""sparkmagic's side of a Livy run: its configuration and its PySpark kernel.

The cloud notebook runs in sparkmagic's ``pysparkkernel``, which sends every cell to a
Livy server. sparkmagic reads its settings from ``$SPARKMAGIC_CONF_DIR/config.json``
(``~/.sparkmagic`` by default); :func:`sparkmagic_environment` writes one into a folder
of the run's own, so a headless run never depends on (or changes) a user's file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The kernel sparkmagic registers for PySpark through Livy.
KERNEL_NAME = "pysparkkernel"


def sparkmagic_config(url: str, *, startup_timeout: int = 600) -> dict[str, Any]:
    """sparkmagic settings for a headless run against the Livy server at ``url``.

    ``all_errors_are_fatal`` makes a failing statement fail the cell, so papermill stops
    and reports it (sparkmagic's default only prints the error);
    ``shutdown_session_on_spark_statement_errors`` frees the cluster's resources then.
    The same two keys are set on EMR through ``jupyter-sparkmagic-conf``.
    """
    return {
        "kernel_python_credentials": {"username": "", "password": "", "url": url, "auth": "None"},
        "all_errors_are_fatal": True,
        "shutdown_session_on_spark_statement_errors": True,
        "livy_session_startup_timeout_seconds": startup_timeout,
        "wait_for_idle_timeout_seconds": 15,
        "heartbeat_refresh_seconds": 30,
        "livy_server_heartbeat_timeout_seconds": 0,
        "session_configs": {},
    }


def write_sparkmagic_config(folder: str | Path, url: str, **options) -> Path:
    """Write ``config.json`` for :func:`sparkmagic_config` into ``folder`` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(sparkmagic_config(url, **options), indent=2), encoding="utf-8")
    return path


def sparkmagic_environment(folder: str | Path, url: str, **options) -> dict[str, str]:
    """Environment variables that point sparkmagic at a config for ``url`` written into ``folder``."""
    write_sparkmagic_config(folder, url, **options)
    return {"SPARKMAGIC_CONF_DIR": str(folder), "SPARKMAGIC_CONF_FILE": "config.json"}


def check_kernel() -> None:
    """Raise ``RuntimeError`` with the fix when the ``pysparkkernel`` is not registered."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL_NAME not in KernelSpecManager().find_kernel_specs():
        raise RuntimeError(
            f"the Jupyter kernel {KERNEL_NAME!r} (sparkmagic) is not registered for this Python: run "
            "`make env` (the bootstrap action does it on EMR)")
