"""Where the driver JVM's class-data-sharing archive is, and the options that let a local session map it.

Why: a fresh driver JVM spends a large part of a small run loading, parsing and
verifying Spark's classes (Spark SQL, Parquet, Arrow, Spark ML), and it does so
again in every run. Measured on 2 cores, a run of 2,040 images in a fresh process
(session and ``execute``): 46.8 and 49.4 s without an archive, 37.7 and 38.0 s with one,
interleaved.

This module is the lookup every session uses: the archive's name is derived from this
Java and this Spark installation (:func:`archive_path`), so another Java or another
Spark never sees it, and :func:`java_options` gives the options that map it;
:func:`fruits.spark.session.local_spark` adds them to every session it launches. The
archive is built by :mod:`fruits.run.jvm_archive_build` (``make env`` runs
``python -m fruits.run.jvm_archive_build --if-missing``), which records a real run.

A JVM that is handed a truncated archive stops with a fatal error, so an archive
is only used when its size is the one recorded when it was checked; any other
mismatch (classpath, JDK build) makes the JVM ignore it (``-Xshare:auto``) and start
as it would without one. Nothing here is needed for correctness: without an
archive, sessions start as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Mapping

from fruits import config

#: JVM options that turn off class-data-sharing messages: an archive made for another
#: classpath is ignored quietly instead of printing warnings into the notebook.
QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
#: Options the caller may already use for its own archive; then ours stay out of the way.
_OWN_ARCHIVE_OPTIONS = ("-XX:SharedArchiveFile", "-XX:ArchiveClassesAtExit", "-Xshare:off")
#: Options that make the JVM hook class loading from its first instant: Java agents (profilers,
#: APM and coverage agents register class file transformers) and Java Flight Recorder started
#: with the JVM. OpenJDK 17.0.15 (Debian 12) maps our dynamic archive, then dies with SIGSEGV in
#: ``KlassFactory::check_shared_class_file_load_hook`` before the gateway answers (measured: JFR
#: in ``spark.driver.extraJavaOptions`` or ``JAVA_TOOL_OPTIONS``, or an agent with a transformer;
#: a recording started later with ``jcmd PID JFR.start`` is fine). With any of them a session
#: starts without the archive: slower, never a crash.
_CLASS_LOAD_HOOK_OPTIONS = ("-javaagent:", "-agentlib:", "-agentpath:", "-XX:StartFlightRecording")
#: Environment variables the ``java`` launcher reads options from, besides its command line.
_JAVA_OPTION_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")


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


def record_path(archive: Path) -> Path:
    """The record beside ``archive``: its size when it was checked and the installation it belongs to."""
    return archive.with_suffix(".json")


def usable_archive(environ: Mapping[str, str] | None = None) -> Path | None:
    """The archive for this Java and Spark when it exists and has the size recorded when it was checked."""
    archive = archive_path(environ)
    if archive is None:
        return None
    try:
        recorded = json.loads(record_path(archive).read_text())
        return archive if archive.stat().st_size == recorded["size"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def java_options(extra_java_options: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    """``spark.driver.extraJavaOptions`` with the archive's options added, when there is a usable archive.

    ``extra_java_options`` (the caller's own value) is kept first; it is returned as
    it is when it already names an archive or turns sharing off, when the JVM starts
    with a Java agent or a flight recording (there or in the launcher's environment
    variables: see :data:`_CLASS_LOAD_HOOK_OPTIONS`), or when there is no usable archive.
    """
    environ = os.environ if environ is None else environ
    if any(option in extra_java_options for option in _OWN_ARCHIVE_OPTIONS):
        return extra_java_options
    if hooks_class_loading(extra_java_options, environ):
        return extra_java_options
    archive = usable_archive(environ)
    if archive is None:
        return extra_java_options
    ours = " ".join((f"-XX:SharedArchiveFile={archive}", "-Xshare:auto", *QUIET))
    return f"{extra_java_options} {ours}".strip()


def hooks_class_loading(extra_java_options: str = "", environ: Mapping[str, str] | None = None) -> bool:
    """Whether a JVM with these options (and the launcher's option variables in ``environ``) hooks class loading.

    Examples
    --------
    >>> hooks_class_loading("-Xss4m -XX:StartFlightRecording=filename=run.jfr", {})
    True
    >>> hooks_class_loading("-Xss4m", {"JAVA_TOOL_OPTIONS": "-javaagent:/opt/apm/agent.jar"})
    True
    >>> hooks_class_loading("-Xss4m -XX:FlightRecorderOptions=stackdepth=96", {})
    False
    """
    environ = os.environ if environ is None else environ
    sources = (extra_java_options, *(environ.get(name, "") for name in _JAVA_OPTION_VARIABLES))
    return any(option in source for source in sources for option in _CLASS_LOAD_HOOK_OPTIONS)
