"""Spark session with the settings the pipeline relies on, for any master.

On EMR the Livy kernel hands the notebook a ready ``spark`` session; elsewhere
(the local notebook, ``fruits run``, ``fruits project``) we build one with the
same relevant settings, so library code never needs to know where it runs.

Where the driver runs decides how it must be reached: a ``local[...]`` driver and
its executors share one JVM and talk over loopback, whereas executors on other
machines (``spark://HOST:PORT``, ``yarn``) call back to the address the driver
advertises, which must therefore be one they can route to. Those settings are
all made by :func:`fruits.spark.placement.driver_settings`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Mapping, MutableMapping

from fruits import config
from fruits.spark import jvm_archive
from fruits.spark import settings as spark_settings
from fruits.spark.executors import wait_for_executors
from fruits.spark.placement import driver_settings, is_local_master, set_environ

#: Settings of every session built here, from :mod:`fruits.spark.settings` (EMR's
#: ``emr-config/`` and the cloud notebook's ``%%configure`` cell derive from it too).
SPARK_SETTINGS = spark_settings.library_session()

#: How long a cluster session waits for its first executor, unless told otherwise.
DEFAULT_EXECUTOR_WAIT_SECONDS = 120.0
EXECUTOR_WAIT_VARIABLE = "FRUITS_EXECUTOR_WAIT_SECONDS"
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


@contextlib.contextmanager
def _scoped_environ(changes: Mapping[str, str | None], environ: MutableMapping[str, str] = os.environ):
    """Apply ``changes`` while PySpark launches its JVM, then put the environment back."""
    saved = {name: environ.get(name) for name in changes}
    try:
        set_environ(changes, environ)
        yield
    finally:
        set_environ(saved, environ)


def executor_wait_seconds(value: float | None = None, *, environ: Mapping[str, str] | None = None) -> float:
    """The bound on waiting for executors: ``value``, else ``$FRUITS_EXECUTOR_WAIT_SECONDS``, else 120.

    Raises
    ------
    ValueError
        Not a positive number, naming where it came from.
    """
    return config.positive_seconds(value, name="executor_wait", variable=EXECUTOR_WAIT_VARIABLE,
                                   default=DEFAULT_EXECUTOR_WAIT_SECONDS, environ=environ)


#: Where EMR installs Spark; its PySpark is in ``python/`` and py4j in a zip beside it.
EMR_SPARK_HOME = "/usr/lib/spark"


def spark_python_paths(spark_home: str) -> list[str]:
    """The entries a Python needs on ``sys.path`` to import a Spark installation's own PySpark.

    EMR ships PySpark inside Spark (``/usr/lib/spark/python`` and
    ``python/lib/py4j-*-src.zip``), not in any interpreter's site-packages, and the
    bootstrap must not pip-install another one.

    Raises
    ------
    FileNotFoundError
        ``spark_home`` holds no ``python/pyspark`` or no py4j zip.
    """
    import glob

    python = os.path.join(spark_home, "python")
    zips = sorted(glob.glob(os.path.join(python, "lib", "py4j-*-src.zip")))
    if not os.path.isdir(os.path.join(python, "pyspark")) or not zips:
        raise FileNotFoundError(f"no PySpark in {spark_home} (expected python/pyspark and python/lib/py4j-*-src.zip)")
    return [python, zips[-1]]


def short_run_java_options(extra_java_options: str, master: str) -> str:
    """``spark.driver.extraJavaOptions`` of a short run's session on ``master``.

    :data:`fruits.spark.settings.SHORT_RUN_JAVA_OPTIONS` are added for a ``local[N]``
    master only: on a cluster the work runs in the executors, other and longer-lived
    JVMs. The caller's own value is kept first, and returned as it is when it already
    chooses the JIT compilers itself.

    Examples
    --------
    >>> short_run_java_options("-Xss4m", "local[2]")
    '-Xss4m -XX:TieredStopAtLevel=1'
    >>> short_run_java_options("-XX:-TieredCompilation", "local[2]")
    '-XX:-TieredCompilation'
    >>> short_run_java_options("", "spark://head:7077")
    ''
    """
    if not is_local_master(master) or any(
            option in extra_java_options for option in ("TieredStopAtLevel", "TieredCompilation")):
        return extra_java_options
    return " ".join((extra_java_options, *spark_settings.SHORT_RUN_JAVA_OPTIONS)).strip()


def runs_short_run_jvm(spark) -> bool:
    """True when ``spark``'s driver JVM started with the short-run options (C1 only).

    Read from the session, not from a run's plan: a session Livy or a caller started
    has whatever options it was given.
    """
    options = (spark.sparkContext.getConf().get(DRIVER_JAVA_OPTIONS, "") or "").split()
    return all(option in options for option in spark_settings.SHORT_RUN_JAVA_OPTIONS)


def use_installed_spark() -> None:
    """Make ``import pyspark`` work with the machine's Spark (EMR) when no pyspark package is installed.

    Uses ``SPARK_HOME``, else :data:`EMR_SPARK_HOME` when it exists; does nothing when
    pyspark is importable already (the local environment's wheel).
    """
    import importlib.util

    if importlib.util.find_spec("pyspark") is not None:
        return
    home = os.environ.get("SPARK_HOME") or (EMR_SPARK_HOME if os.path.isdir(EMR_SPARK_HOME) else None)
    if home is None:
        raise ModuleNotFoundError("pyspark is not installed and no Spark installation was found "
                                  f"(set SPARK_HOME; EMR's is {EMR_SPARK_HOME})")
    os.environ.setdefault("SPARK_HOME", home)
    sys.path[:0] = [p for p in spark_python_paths(home) if p not in sys.path]


def local_spark(master: str = spark_settings.LOCAL_MASTER, *, app_name: str = "fruits",
                driver_memory: str = spark_settings.DRIVER_MEMORY,
                conf: Mapping[str, str] | None = None, executor_wait: float | None = None,
                short_run: bool = False):
    """Return a ``SparkSession`` configured for featurization, for any master.

    Parameters
    ----------
    master : str
        ``local[N]`` / ``local[N,RETRIES]`` on this machine, ``spark://HOST:PORT`` for a
        standalone cluster, ``yarn`` on a cluster node.
    app_name : str
        Name shown in the Spark UI.
    driver_memory : str
        Heap of the driver JVM (driver and executors share it in local mode); default
        :data:`fruits.spark.settings.DRIVER_MEMORY`.
    conf : mapping, optional
        Further Spark settings; they win over the project's. For example
        ``{"spark.executor.pyspark.memory": "2g"}`` caps each Python worker's address
        space (``RLIMIT_AS``) at that value divided by ``spark.executor.cores``
        (unset counts as 1), in local mode as on a cluster.
    executor_wait : float, optional
        Seconds a cluster session waits for an executor to run a first task
        (default ``$FRUITS_EXECUTOR_WAIT_SECONDS``, else 120). Ignored for local masters.
    short_run : bool
        The session serves a short run (``PreparedRun.short_run``: a local input of fewer than
        :data:`fruits.spark.settings.SHORT_RUN_MAX_FILES` files): a ``local[N]`` JVM then
        starts with :data:`fruits.spark.settings.SHORT_RUN_JAVA_OPTIONS`, which cut a small
        run's seconds and cost a large one's. Ignored for other masters.

    Returns
    -------
    pyspark.sql.SparkSession

    Raises
    ------
    ValueError
        A bad master, wait or unreachable master host, before any JVM starts.
    fruits.spark.executors.ExecutorsUnavailable
        No executor ran a task within the wait; the session is stopped and the
        message names the driver address executors were told to call.
    """
    conf = dict(conf or {})
    placement = driver_settings(master, user_conf=conf)
    wait = None if placement.local else executor_wait_seconds(executor_wait)
    # Workers must run this interpreter (and see this environment's packages), not
    # whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    use_installed_spark()
    from pyspark.sql import SparkSession

    settings = {**SPARK_SETTINGS, **placement.conf, **conf}
    java = settings.get(DRIVER_JAVA_OPTIONS, "")
    if short_run:
        java = short_run_java_options(java, master)
    # The driver JVM maps the class archive `make env` recorded, when there is one: it starts warm.
    java = jvm_archive.java_options(java)
    if java:
        settings[DRIVER_JAVA_OPTIONS] = java
    builder = SparkSession.builder.master(master).appName(app_name).config("spark.driver.memory", driver_memory)
    for key, value in settings.items():
        builder = builder.config(key, value)
    with _scoped_environ(placement.environ):
        spark = builder.getOrCreate()
    running = spark.sparkContext.master
    if running != master:
        raise RuntimeError(f"a Spark session on master {running} is already running in this process; "
                           f"stop it (spark.stop()) before starting one on {master}")
    spark.sparkContext.setLogLevel("ERROR")
    if wait is not None:
        wait_for_executors(spark, timeout=wait)
    return spark
