"""Local Spark session with the settings the pipeline relies on.

On EMR the Livy kernel hands the notebook a ready ``spark`` session; locally we
build one with the same relevant settings, so library code never needs to know
where it runs.
"""

from __future__ import annotations

import os
import sys

#: Settings the featurization depends on, applied to local sessions; EMR gets the
#: same values through ``emr-config/``.
SPARK_SETTINGS = {
    # The UDF sub-batches images itself; Arrow batches only bound how many raw
    # files a worker holds at once.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "256",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Reused Python workers keep the cached model across tasks (the default, made explicit).
    "spark.python.worker.reuse": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def local_spark(master: str = "local[2]", *, app_name: str = "fruits", driver_memory: str = "4g"):
    """Return a local ``SparkSession`` configured for featurization.

    Parameters
    ----------
    master : str
        Spark master URL: ``local[N]``, ``local[N,RETRIES]``, or ``yarn`` on a cluster node.
    app_name : str
        Name shown in the Spark UI.
    driver_memory : str
        Heap of the local JVM (driver and executors share it in local mode).

    Returns
    -------
    pyspark.sql.SparkSession
    """
    # The hostname may not resolve to a routable address; local Spark needs loopback.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Workers must run this interpreter (and see this environment's packages), not
    # whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name).config("spark.driver.memory", driver_memory)
    if master.startswith("local"):
        # Executors on a cluster (master "yarn" on EMR) must reach the driver: loopback is for local runs only.
        builder = builder.config("spark.driver.host", os.environ["SPARK_LOCAL_IP"]) \
            .config("spark.driver.bindAddress", os.environ["SPARK_LOCAL_IP"])
    for key, value in SPARK_SETTINGS.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
