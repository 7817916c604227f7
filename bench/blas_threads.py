"""BLAS threads on the driver: the demo-shaped logistic fits and a 1280 x 1280 ``eigh``, quiet and busy.

Why ``fruits.analysis.blas`` limits them to one thread. Each case runs in a fresh process
with OpenBLAS on its default threads or on one (``OPENBLAS_NUM_THREADS=1`` set before
numpy loads), first on a quiet machine, then with one busy loop per core in the background
(what other tests, Spark jobs or other users' notebooks do to a driver). Prints seconds and
the ratio one thread / default, per round.

    python bench/blas_threads.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

#: The measured code: run in a child process so the thread count is fixed before numpy loads.
#: The fits call the private ``_fit`` so that the library's own one-thread limit does not apply.
CASE = r"""
import sys, time
import numpy as np
from fruits.analysis.logistic import REG_PARAM, DRIVER_MAX_ITER, _fit
rng = np.random.default_rng(0)
if sys.argv[1] == "fits":  # the demo's shape: 6 classes, 120 training images, its sweep's k
    classes, rows = 6, 120
    y = np.repeat(np.arange(classes), rows // classes)
    x = np.maximum(rng.standard_normal((classes, 1280))[y] * 0.5 + rng.standard_normal((rows, 1280)), 0)
    start = time.perf_counter()
    for k in (10, 20, 50, 100, 200, 1280):
        _fit(x[:, :k], y, classes, reg_param=REG_PARAM, max_iter=DRIVER_MAX_ITER)
else:  # the PCA's decomposition: a 1280 x 1280 covariance
    a = rng.standard_normal((3000, 1280))
    covariance = a.T @ a
    start = time.perf_counter()
    np.linalg.eigh(covariance)
print(time.perf_counter() - start)
"""


def timed(case: str, threads: str | None) -> float:
    env = {key: value for key, value in os.environ.items() if key not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if threads:
        env["OPENBLAS_NUM_THREADS"] = threads
    done = subprocess.run([sys.executable, "-c", CASE, case], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; seconds, default BLAS threads vs one, {args.rounds} interleaved rounds")
    for load in ("quiet", "busy"):
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)] \
            if load == "busy" else []
        try:
            time.sleep(1 if loops else 0)
            for case in ("fits", "eigh"):
                for round_ in range(1, args.rounds + 1):
                    default, one = timed(case, None), timed(case, "1")
                    print(f"{load:5} {case:4} round {round_}: default {default:6.2f} s, one thread {one:6.2f} s, "
                          f"one/default {one / default:5.2f}", flush=True)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
