"""Run a notebook headlessly and render its report: papermill, then nbconvert.

``fruits run`` (and an EMR step, through it) converts a percent-format notebook with
jupytext, executes it with papermill in a local kernel or sparkmagic's PySpark kernel, and
renders the executed notebook to one self-contained HTML file (:mod:`fruits.report.html`).
Parameter values follow papermill's conventions: ``-p NAME VALUE`` is read as YAML, and a
notebook's parameters are the ones of its cell tagged ``parameters``.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from typing import Any, Mapping
from fruits.report.html import render

#: The kernel of the local notebook (``fruits run`` without ``--livy``).
LOCAL_KERNEL = "python3"


def execute_notebook(source: str, output: str, parameters: Mapping[str, Any], *, cwd: str | None = None,
                     kernel_name: str = LOCAL_KERNEL, log_output: bool = True) -> None:
    """Convert a percent-format ``.py`` notebook with jupytext and execute it with papermill.

    Raises
    ------
    papermill.PapermillExecutionError
        A cell failed: carries the cell's execution count, exception name and value.
    """
    import jupytext
    import papermill

    notebook = jupytext.read(source)
    with tempfile.TemporaryDirectory() as scratch:
        converted = os.path.join(scratch, os.path.basename(source).replace(".py", ".ipynb"))
        jupytext.write(notebook, converted)
        if log_output:
            logging.getLogger("papermill").setLevel(logging.INFO)
        papermill.execute_notebook(
            converted, output, parameters=dict(parameters), kernel_name=kernel_name,
            cwd=cwd, log_output=log_output, progress_bar=log_output,
            **({"kernel_manager_class": _quick_shutdown_manager()} if kernel_name == LOCAL_KERNEL else {}),
        )


#: Seconds the local kernel gets to end after its last cell: half of it after the shutdown
#: request, then half after SIGTERM (jupyter_client's ``shutdown_wait_time``; its default is 5).
LOCAL_KERNEL_SHUTDOWN_SECONDS = 0.5


@functools.cache
def _quick_shutdown_manager():
    """A kernel manager that ends the local kernel in half a second instead of 2.6 s.

    At shutdown jupyter_client sends SIGINT to the kernel's process group, which holds
    the Spark JVM: the JVM starts its own shutdown (its hooks stop Spark and delete its
    temporary folders). Asked to stop, ipykernel then sends SIGTERM to its children and
    sleeps until they are gone, but the JVM's hooks take longer than its first sleeps, so
    the kernel waited 2.6 s (until jupyter_client's own SIGTERM, at half of the default
    5 s). Here that SIGTERM comes after 0.25 s; the kernel ends at once, and the JVM
    finishes its hooks by itself. Killing the group outright (papermill's "immediate"
    shutdown) would cut those hooks short and leave Spark's folders in the temporary
    directory; this manager sends SIGKILL only to a kernel still alive 0.25 s after SIGTERM.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Float

    class QuickShutdownKernelManager(AsyncKernelManager):
        shutdown_wait_time = Float(LOCAL_KERNEL_SHUTDOWN_SECONDS, config=True)

    return QuickShutdownKernelManager


def render_html(notebook_path: str, html_path: str, *, map_builder=None) -> None:
    """Render an executed notebook to a self-contained HTML report without code cells.

    No request leaves the file (no CDN script, style or font), every figure has an alt
    text, and a successful run gets its interactive PCA map (see :mod:`fruits.report.html`),
    from ``map_builder`` when given (:class:`fruits.report.early_map.EarlyMap`).
    """
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    body = render(notebook, map_builder=map_builder)
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(body)
