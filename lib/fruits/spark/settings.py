"""Spark settings: the one source for local sessions, the EMR cluster and the notebook's Livy session.

Settings that must agree wherever the pipeline runs (kedro keeps them in one
``conf/base/spark.yml``) are written once, here, and every copy is derived:

- sessions this library builds (:func:`fruits.spark.session.local_spark`: the local notebook,
  ``fruits run``, ``fruits project``, the Livy double's drivers) use
  :func:`library_session` and :data:`DRIVER_MEMORY`;
- ``emr-config/configurations.json`` (a plain EMR configuration list, read by
  ``aws emr create-cluster --configurations file://...`` and ``fruits emr``) holds
  :func:`emr_classifications` as its ``spark-defaults`` and ``spark-env``;
- the ``%%configure`` cell of ``notebooks/02-featurize-emr.py`` is :func:`livy_session`.

The two files are written by ``tools/sync_derived.py --write`` (``make sync-notebooks``);
``tests/test_single_sources.py`` fails when either drifts, and checks the local session.

A Python module rather than a YAML file: the wheel carries it to every EMR node with no
package-data declaration, reading it needs no YAML parser on nodes that install only
the run-time dependencies (PyYAML is not one), and a mistake fails at import, not at the
first session. Values are strings where Spark reads strings.
"""

from __future__ import annotations

#: What featurization relies on, in every session wherever it runs.
FEATURIZATION = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # The UDF sub-batches images itself; Arrow batches only bound how many raw
    # files a worker holds at once.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "256",
    # Reused Python workers keep the cached model across tasks (the default, made explicit).
    "spark.python.worker.reuse": "true",
    # Arrow's default allocator in the Python workers (mimalloc) reserves about 1 GiB of
    # address space at its first allocation, which counts against each worker's RLIMIT_AS
    # (spark.executor.pyspark.memory / cores) though it is never touched; the system
    # allocator reserves none. Measured at EMR's executor shape (bench/emr_shape.py,
    # docs/emr-sizing.md): about 1 GiB less peak virtual memory per worker, the same RSS.
    "spark.executorEnv.ARROW_DEFAULT_MEMORY_POOL": "system",
}

#: Only the sessions this library builds (not the cluster's defaults, which other jobs share):
#: few shuffle partitions for a small driver, no console progress bar in notebooks, UTC times.
LIBRARY_SESSION = {
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}

#: Sessions this library configures (its own and the notebook's Livy session; not the
#: cluster's defaults, which other jobs share) start their Python workers from
#: :mod:`fruits.spark.python_daemon`: PySpark's daemon without Spark's jar on the workers'
#: import path, which cost every task 0.10-0.14 s of a worker's CPU. It needs ``fruits``
#: importable by the workers' interpreter, as every featurization already does.
PYTHON_WORKERS = {"spark.python.daemon.module": "fruits.spark.python_daemon"}

#: Java options of a ``local[N]`` session's JVM for a short run: HotSpot's first compiler only
#: (C1). A short run's JVM spends its life warming up (planning each query, Parquet and Arrow
#: code compiled once); the second compiler (C2) competes for the same cores and makes fast code
#: that a short run barely uses. Measured on 2 cores, session start and run, fresh processes,
#: interleaved (``bench/results/jit/session11.md``): the demo's 181 images 30.0 -> 23.7 s,
#: a 2,040-image slice 44.0 -> 38.4 s, 6,000 images 89.2 -> 87.3 s; the whole Test split
#: (20,622) 250 -> 265 s, slower: its Parquet and Arrow loops want C2's code. Hence
#: :data:`SHORT_RUN_MAX_FILES`.
SHORT_RUN_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1",)

#: A local run is short when its input and training set are local and hold fewer files than this,
#: together (below the 6,000 images where C1 alone still won by 2 %).
SHORT_RUN_MAX_FILES = 5_000

#: The master of a session built here unless told otherwise: this machine, two cores.
LOCAL_MASTER = "local[2]"

#: Driver JVM heap: the default of local sessions (driver and executors share it there)
#: and the Livy session's ``driverMemory``.
DRIVER_MEMORY = "4g"

#: One executor per worker node of the default cluster (``emr-config/cluster.json``:
#: m5.xlarge, 4 vCPU and 12288 MiB of YARN memory each): 1g heap + 512m overhead + 9728m
#: for Python = 11264 MiB, which leaves room for a session's ApplicationMaster (896 MiB).
#: Spark caps each Python worker's address space (``RLIMIT_AS``) at pyspark.memory / cores
#: = 2432 MiB, above the default engine's measured peak (``tests/test_worker_memory.py``).
EXECUTOR = {
    "spark.executor.cores": "4",
    "spark.executor.memory": "1g",
    "spark.executor.pyspark.memory": "9728m",
    "spark.executor.memoryOverhead": "512m",
}

#: Executors the notebook's Livy session asks for: one per worker node (2 core + 1 task).
EXECUTORS = 3

#: Cluster-wide defaults that a session does not ask for itself.
CLUSTER = {"spark.task.maxFailures": "4"}

#: The interpreter of EMR's drivers and Python workers, where the bootstrap installs ``fruits``.
CLUSTER_PYTHON = "/usr/bin/python3.11"

#: ``%%configure`` fields Livy turns into these Spark settings; the rest go in its ``conf``.
_LIVY_FIELDS = {"spark.executor.memory": "executorMemory", "spark.executor.cores": "executorCores"}


def library_session() -> dict[str, str]:
    """Settings of every session :func:`fruits.spark.session.local_spark` builds.

    Examples
    --------
    >>> library_session()["spark.sql.execution.arrow.maxRecordsPerBatch"]
    '256'
    """
    return {**FEATURIZATION, **PYTHON_WORKERS, **LIBRARY_SESSION}


def emr_classifications() -> list[dict]:
    """The ``spark-defaults`` and ``spark-env`` classifications of ``emr-config/configurations.json``.

    ``spark.pyspark.python`` reaches Livy-launched sessions, where ``spark-env`` alone
    may not; ``spark-env`` covers other launches.
    """
    python = {"spark.pyspark.python": CLUSTER_PYTHON, "spark.pyspark.driver.python": CLUSTER_PYTHON}
    return [
        {"Classification": "spark-defaults", "Properties": {**FEATURIZATION, **EXECUTOR, **CLUSTER, **python}},
        {"Classification": "spark-env", "Configurations": [{
            "Classification": "export",
            "Properties": {"PYSPARK_PYTHON": CLUSTER_PYTHON, "PYSPARK_DRIVER_PYTHON": CLUSTER_PYTHON},
        }]},
    ]


def livy_session() -> dict:
    """The body of the cloud notebook's ``%%configure -f`` cell (Livy's ``POST /sessions``).

    The session asks for the cluster's executor sizing and the featurization settings
    itself, so it gets them on any cluster, not only on one built from ``emr-config/``.

    Examples
    --------
    >>> body = livy_session()
    >>> body["executorCores"], body["numExecutors"], body["conf"]["spark.executor.pyspark.memory"]
    (4, 3, '9728m')
    """
    conf = {key: value for key, value in EXECUTOR.items() if key not in _LIVY_FIELDS}
    return {
        "driverMemory": DRIVER_MEMORY,
        "executorMemory": EXECUTOR["spark.executor.memory"],
        "executorCores": int(EXECUTOR["spark.executor.cores"]),
        "numExecutors": EXECUTORS,
        "conf": {**conf, **FEATURIZATION, **PYTHON_WORKERS},
    }
