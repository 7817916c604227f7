"""Build the driver JVM's class-data-sharing archive from a real run: ``python -m fruits.run.jvm_archive_build``.

How: the JDK's dynamic class-data sharing (AppCDS, JDK 13 and later). :func:`build`
runs a representative workload (the demo run: listing, featurization through
Arrow, Parquet, one-pass PCA, the evaluation's classifier, the report's queries)
in a child process whose driver JVM is started with ``-XX:ArchiveClassesAtExit``;
the JVM writes the archive as it exits. The archive is checked by a JVM mapping it
(``-Xshare:on``) and only then moved into the cache, under the name
:func:`fruits.spark.jvm_archive.archive_path` gives, with the record that lets a
session trust it. It lives beside the run because its workload is a run; sessions
only need the lookup in :mod:`fruits.spark.jvm_archive`. ``make env`` builds it
(``--if-missing``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fruits.spark.jvm_archive import (QUIET, archive_path, java_executable, record_path, spark_jars,
                                      usable_archive)
from fruits.params import RunParams
from fruits.report import explore
from fruits.run.execute import execute
from fruits.run.plan import prepare
from fruits.spark.session import local_spark

#: How long the workload and the JVM's writing of the archive may take.
BUILD_TIMEOUT_SECONDS = 1200.0
#: The command the child processes run (this module).
_MODULE = "fruits.run.jvm_archive_build"


def check_archive(archive: Path, *, timeout: float = 300.0) -> None:
    """Raise ``RuntimeError`` unless a Spark session's JVM maps ``archive``.

    The check starts a session as :func:`fruits.spark.session.local_spark` does (the same
    classpath, which the archive records) with ``-Xshare:on``, under which a JVM that
    cannot map the archive refuses to start, and runs one query.
    """
    command = [sys.executable, "-m", _MODULE, "--check", str(archive)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"a Spark session cannot map the class archive {archive}: {done.stderr.strip()[-1000:]}")


def build(*, workload: str = "demo", timeout: float = BUILD_TIMEOUT_SECONDS) -> Path:
    """Run ``workload`` in a child process that records the archive, check it, and move it into the cache.

    Parameters
    ----------
    workload : str
        ``"demo"`` (the demo run and the report's queries: what ``make env`` records)
        or ``"sql"`` (one small Spark SQL query: quick, for tests).
    timeout : float
        Seconds the child process may take, the JVM's writing included.

    Returns
    -------
    pathlib.Path
        The archive, now used by every local session (:func:`fruits.spark.jvm_archive.java_options`).

    Raises
    ------
    RuntimeError
        Java or Spark is not found, the workload failed, or the JVM wrote no
        archive it can map; nothing is moved into the cache then.
    """
    if workload not in _WORKLOADS:
        raise ValueError(f"workload must be one of {sorted(_WORKLOADS)}, got {workload!r}")
    archive, java = archive_path(), java_executable()
    if archive is None or java is None:
        raise RuntimeError("no class archive can be built: Java or the Spark installation was not found")
    archive.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="building-", dir=archive.parent))
    try:
        recording = scratch / archive.name
        command = [sys.executable, "-m", _MODULE, "--record", str(recording), "--workload", workload]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"the class archive's workload failed: {done.stderr.strip()[-2000:]}")
        if not recording.is_file():
            raise RuntimeError(f"the JVM wrote no class archive: {done.stderr.strip()[-2000:]}")
        check_archive(recording)
        size = recording.stat().st_size
        os.replace(recording, archive)
        record_path(archive).write_text(json.dumps({"size": size, "java": os.path.realpath(java),
                                                     "spark_jars": str(spark_jars().resolve()),
                                                     "workload": workload}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    prune_orphans(archive.parent)
    return archive


def prune_orphans(folder: Path) -> list[Path]:
    """Remove the archives (about 190 MB each) whose Spark installation no longer exists; return them.

    Each virtual environment has its own Spark, hence its own archive: without this, every
    clone that ran ``make env`` and was deleted since would leave one behind in the cache.
    An archive whose record does not name its installation (written before records did)
    is kept: nothing says it is unused.
    """
    removed = []
    for record_file in sorted(folder.glob("spark-classes-*.json")):
        try:
            jars = json.loads(record_file.read_text()).get("spark_jars")
        except (OSError, ValueError, AttributeError):
            continue
        if not jars or Path(jars).is_dir():
            continue
        archive = record_file.with_suffix(".jsa")
        for path in (archive, record_file):  # the archive first: a record alone is never trusted
            path.unlink(missing_ok=True)
        removed.append(archive)
    return removed


def record(path: Path, workload: str) -> None:
    """In the child process: run ``workload`` on a session whose JVM writes its classes to ``path`` at exit.

    The JVM writes the archive only as it exits, after this process has stopped
    Spark: so the gateway's standard input is closed (PySpark's JVM exits when it
    reads end of file there) and the JVM is waited for.
    """

    options = " ".join((f"-XX:ArchiveClassesAtExit={path}", *QUIET))
    spark = local_spark(conf={"spark.driver.extraJavaOptions": options})
    _WORKLOADS[workload](spark)
    gateway = spark.sparkContext._gateway
    spark.stop()
    jvm = getattr(gateway, "proc", None)
    if jvm is None:
        raise RuntimeError("PySpark did not launch the JVM itself: no archive can be recorded")
    jvm.stdin.close()
    deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS / 2
    while jvm.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if jvm.poll() is None:
        jvm.kill()
        raise RuntimeError("the JVM did not exit after Spark stopped: no archive recorded")


def _check(archive: Path) -> None:
    """In the child process: a session that must map ``archive`` (``-Xshare:on``) runs one query."""

    spark = local_spark(conf={"spark.driver.extraJavaOptions": f"-XX:SharedArchiveFile={archive} -Xshare:on"})
    try:
        _sql_workload(spark)
    finally:
        spark.stop()


def _sql_workload(spark) -> None:
    """One small query: enough for a test to see classes come from the archive."""
    spark.range(100).selectExpr("id % 7 AS k").groupBy("k").count().collect()


def _demo_workload(spark) -> None:
    """The demo run as ``make demo`` does it, then the report's Spark queries, into a scratch folder."""

    output = tempfile.mkdtemp(prefix="fruits-jvm-archive-")
    try:
        result = execute(spark, prepare(RunParams(output_dir=output)))
        explore.class_counts(spark, result.layout)
        explore.pca_points(spark, result.layout)
        explore.nearest_neighbours(spark, result.layout)
        explore.rejected(spark, result.layout)
    finally:
        shutil.rmtree(output, ignore_errors=True)


_WORKLOADS = {"demo": _demo_workload, "sql": _sql_workload}


def main(argv: list[str] | None = None) -> int:
    """``python -m fruits.run.jvm_archive_build``: build the archive for this Java and Spark (``make env`` does)."""
    parser = argparse.ArgumentParser(prog="python -m fruits.run.jvm_archive_build", description=main.__doc__)
    parser.add_argument("--workload", default="demo", choices=sorted(_WORKLOADS))
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when a usable archive for this Java and Spark exists")
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)  # the child processes' parts
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check is not None:
        _check(args.check)
        return 0
    if args.record is not None:
        record(args.record, args.workload)
        return 0
    if args.if_missing and (existing := usable_archive()) is not None:
        print(f"class archive for the driver JVM: {existing} (already built)")
        return 0
    started = time.monotonic()
    archive = build(workload=args.workload)
    print(f"class archive for the driver JVM: {archive} "
          f"({archive.stat().st_size / 2**20:.0f} MiB, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
