"""A class-data-sharing archive of the driver JVM's classes, so a local Spark session starts warm.

Why: a fresh driver JVM spends a large part of a small run loading, parsing and
verifying Spark's classes (Spark SQL, Parquet, Arrow, Spark ML), and it does so
again in every run. Measured on 2 cores, a run of 2,040 images in a fresh process
(session and ``execute``): 46.8 and 49.4 s without an archive, 37.7 and 38.0 s with one,
interleaved.

How: the JDK's dynamic class-data sharing (AppCDS, JDK 13 and later). :func:`build`
runs a representative workload (the demo run: listing, featurization through
Arrow, Parquet, one-pass PCA, the evaluation's classifier, the report's queries)
in a child process whose driver JVM is started with ``-XX:ArchiveClassesAtExit``;
the JVM writes the archive as it exits. The archive is checked by a JVM mapping it
(``-Xshare:on``) and only then moved into the cache, under a name derived from
this Java and this Spark installation (:func:`archive_path`), so another Java or
another Spark never sees it. :func:`java_options` gives the options that map it,
and :func:`fruits.session.local_spark` adds them to every session it launches.

A JVM that is handed a truncated archive stops with a fatal error, so an archive
is only used when its size is the one recorded when it was checked; any other
mismatch (classpath, JDK build) makes the JVM ignore it (``-Xshare:auto``) and start
as it would without one. Nothing here is needed for correctness: without an
archive, sessions start as before. ``make env`` builds it (``python -m fruits.jvm_archive``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

from fruits import config

#: JVM options that turn off class-data-sharing messages: an archive made for another
#: classpath is ignored quietly instead of printing warnings into the notebook.
QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
#: Options the caller may already use for its own archive; then ours stay out of the way.
_OWN_ARCHIVE_OPTIONS = ("-XX:SharedArchiveFile", "-XX:ArchiveClassesAtExit", "-Xshare:off")
#: How long the workload and the JVM's writing of the archive may take.
BUILD_TIMEOUT_SECONDS = 1200.0


def java_executable(environ: Mapping[str, str] | None = None) -> str | None:
    """The ``java`` PySpark launches: ``$JAVA_HOME/bin/java``, else the first on ``PATH``."""
    environ = os.environ if environ is None else environ
    home = environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("java", path=environ.get("PATH"))


def spark_jars() -> Path | None:
    """The ``jars`` folder of the Spark installation PySpark uses, if one is found."""
    try:
        from pyspark.find_spark_home import _find_spark_home
    except ImportError:
        return None
    try:
        jars = Path(_find_spark_home()) / "jars"
    except (SystemExit, Exception):  # find_spark_home exits when it finds nothing
        return None
    return jars if jars.is_dir() else None


def archive_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the archive for this Java and this Spark lives (it may not exist yet).

    The name is a digest of what the archive depends on: the ``java`` binary (its
    real path, size and modification time), every jar of Spark's ``jars`` folder
    (name, size, modification time) and ``SPARK_CONF_DIR``. ``None`` when Java or
    Spark cannot be found.
    """
    environ = os.environ if environ is None else environ
    java, jars = java_executable(environ), spark_jars()
    if java is None or jars is None:
        return None
    digest = hashlib.sha256()
    real_java = os.path.realpath(java)
    stat = os.stat(real_java)
    digest.update(f"{real_java}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    digest.update(f"{jars.resolve()}\0{environ.get('SPARK_CONF_DIR', '')}\0".encode())
    for jar in sorted(jars.glob("*.jar")):
        jar_stat = jar.stat()
        digest.update(f"{jar.name}\0{jar_stat.st_size}\0{jar_stat.st_mtime_ns}\0".encode())
    return config.cache_dir() / "jvm" / f"spark-classes-{digest.hexdigest()[:24]}.jsa"


def _record_path(archive: Path) -> Path:
    return archive.with_suffix(".json")


def usable_archive(environ: Mapping[str, str] | None = None) -> Path | None:
    """The archive for this Java and Spark when it exists and has the size recorded when it was checked."""
    archive = archive_path(environ)
    if archive is None:
        return None
    try:
        recorded = json.loads(_record_path(archive).read_text())
        return archive if archive.stat().st_size == recorded["size"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def java_options(extra_java_options: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    """``spark.driver.extraJavaOptions`` with the archive's options added, when there is a usable archive.

    ``extra_java_options`` (the caller's own value) is kept first; it is returned as
    it is when it already names an archive or turns sharing off, or when there is
    no usable archive.
    """
    if any(option in extra_java_options for option in _OWN_ARCHIVE_OPTIONS):
        return extra_java_options
    archive = usable_archive(environ)
    if archive is None:
        return extra_java_options
    ours = " ".join((f"-XX:SharedArchiveFile={archive}", "-Xshare:auto", *QUIET))
    return f"{extra_java_options} {ours}".strip()


def check_archive(archive: Path, *, timeout: float = 300.0) -> None:
    """Raise ``RuntimeError`` unless a Spark session's JVM maps ``archive``.

    The check starts a session as :func:`fruits.session.local_spark` does (the same
    classpath, which the archive records) with ``-Xshare:on``, under which a JVM that
    cannot map the archive refuses to start, and runs one query.
    """
    command = [sys.executable, "-m", "fruits.jvm_archive", "--check", str(archive)]
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
        The archive, now used by every local session (:func:`java_options`).

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
        command = [sys.executable, "-m", "fruits.jvm_archive", "--record", str(recording), "--workload", workload]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"the class archive's workload failed: {done.stderr.strip()[-2000:]}")
        if not recording.is_file():
            raise RuntimeError(f"the JVM wrote no class archive: {done.stderr.strip()[-2000:]}")
        check_archive(recording)
        size = recording.stat().st_size
        os.replace(recording, archive)
        _record_path(archive).write_text(json.dumps({"size": size, "java": os.path.realpath(java),
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
    from fruits.session import local_spark

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
    from fruits.session import local_spark

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
    from fruits.params import RunParams
    from fruits.report import explore
    from fruits.run import execute, prepare

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
    """``python -m fruits.jvm_archive``: build the archive for this Java and Spark (``make env`` does)."""
    parser = argparse.ArgumentParser(prog="python -m fruits.jvm_archive", description=main.__doc__)
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
