"""One BLAS thread for the driver's linear algebra made of many small steps.

numpy's OpenBLAS runs each call on every core and its threads meet at a barrier after each
step. When the cores are busy with anything else (the test suite's workers, a Spark job, other
users' notebooks on an EMR primary node) a thread waits at every barrier for one the kernel has
descheduled, and a computation of many small steps stalls. On this project's 2-core host
(``bench/blas_threads.py``, ``bench/results/blas_threads/``), with one busy loop per core: the
demo's six logistic fits 3.0-6.0 s on two threads against 0.85-1.06 s on one, a 1280 x 1280
``eigh`` up to 12.6 s against 0.9-1.15 s; with a single busy loop one thread still won (0.67 s
against 1.3-1.9 s for the fits). Quiet, one thread costs nothing on the fits and 0.27 s on the
``eigh`` (0.44 -> 0.71 s, once per run): a bounded cost against a stall of seconds.

Large single products (a partition's Gram matrix in the Python workers) keep the default: their
work per barrier is large, and two threads stay ahead under the same load.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with BLAS limited to one thread in this process, restored afterwards.

    Examples
    --------
    >>> import numpy as np
    >>> with one_blas_thread():
    ...     float(np.linalg.eigh(np.diag([2.0, 1.0]))[0].max())
    2.0
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield
