"""Print progress of long Spark stages, for consoles and papermill logs.

A featurization of the full Test split runs for minutes; without a sign of life a
headless run looks hung. A daemon thread polls Spark's status tracker and prints a
line when tasks complete, at most every ``interval`` seconds.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time


@contextlib.contextmanager
def spark_progress(spark, label: str, *, interval: float = 15.0, stream=None):
    """Report task progress of the Spark jobs that run inside the ``with`` block.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    label : str
        Stage name printed on each line.
    interval : float
        Minimum seconds between two lines.
    stream : file, optional
        Where lines go (default ``sys.stdout``).
    """
    stream = stream or sys.stdout
    tracker = spark.sparkContext.statusTracker()
    stop = threading.Event()
    start = time.perf_counter()

    def poll() -> None:
        last = None
        while not stop.wait(interval):
            done = total = 0
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    done += info.numCompletedTasks
                    total += info.numTasks
            if total and (done, total) != last:
                last = (done, total)
                elapsed = time.perf_counter() - start
                print(f"[{label}] {done}/{total} tasks done, {elapsed:.0f} s elapsed", file=stream, flush=True)

    thread = threading.Thread(target=poll, name=f"progress-{label}", daemon=True)
    print(f"[{label}] started", file=stream, flush=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)
        print(f"[{label}] finished in {time.perf_counter() - start:.1f} s", file=stream, flush=True)
