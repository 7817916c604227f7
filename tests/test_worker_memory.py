"""Executor sizing of the default EMR cluster, and Python workers under its memory cap.

``spark.executor.pyspark.memory`` caps each Python worker's address space: Spark
passes ``pyspark.memory / spark.executor.cores`` (MiB) to every worker as
``PYSPARK_EXECUTOR_MEMORY_MB`` (``BasePythonRunner.compute``), and ``worker.py`` sets
``RLIMIT_AS`` to it at each task, in local mode as on a cluster. ``RLIMIT_AS`` counts
virtual memory, not RSS: ONNX Runtime and TensorFlow reserve far more than they touch,
and Arrow's default allocator (mimalloc) reserves 1 GiB at its first allocation, which is
why the workers use the system allocator (``spark_settings.FEATURIZATION``). The cap must
clear the workers' measured virtual peak, not their RSS.

On YARN the same setting is also part of the executor's container (heap +
memoryOverhead + pyspark.memory), so it has to fit the node's YARN memory as well.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import copy_slice

ROOT = Path(__file__).resolve().parents[1]

#: vCPUs and YARN memory (yarn.nodemanager.resource.memory-mb, MiB) per instance type.
#: Source: Amazon EMR Release Guide, "Task configuration" (emr-hadoop-task-config), m5.xlarge
#: table; 16 GiB of RAM of which EMR gives YARN 12288 MiB.
INSTANCE_TYPES = {"m5.xlarge": {"vcpus": 4, "yarn_mb": 12288}}
#: The YARN ApplicationMaster of a client-mode session (Livy is pinned to client mode):
#: spark.yarn.am.memory 512m + its overhead max(384m, 10%), Spark's defaults.
APPLICATION_MASTER_MB = 512 + 384
#: Container sizes are rounded up to yarn.scheduler.minimum-allocation-mb; any value up to
#: 1 GiB keeps the sizing valid.
YARN_ROUNDING_MB = 1024
#: Each engine's Python workers measured at EMR's executor shape (4 cores, 1 GiB heap, 4 tasks
#: at once, 1,100 real Test images): ``bench/results/emr-shape/emr_shape.json``, written by
#: ``python bench/emr_shape.py`` (docs/emr-sizing.md). VmPeak is what RLIMIT_AS caps.
MEASURED = json.loads((ROOT / "bench" / "results" / "emr-shape" / "emr_shape.json").read_text())
WORKER_VM_PEAK_MB = {result["engine"]: result["vm_peak_mib"] for result in MEASURED["results"]}
#: Headroom the cap leaves over every engine's measured peak (other images, another libc, more threads).
MARGIN = 1.25


def mib(size: str) -> int:
    """A Spark memory setting (``1536m``, ``9g``; no unit means MiB) in MiB."""
    match = re.fullmatch(r"(\d+)([kmgt]?)b?", size.strip().lower())
    if not match:
        raise ValueError(f"not a Spark memory size: {size!r}")
    number, unit = int(match.group(1)), match.group(2) or "m"
    return math.ceil(number * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}[unit])


def classification(name: str) -> dict:
    configurations = json.loads((ROOT / "emr-config" / "configurations.json").read_text())
    return next(c for c in configurations if c["Classification"] == name).get("Properties", {})


def worker_nodes() -> tuple[str, int]:
    """Instance type and count of the nodes that run executors (core + task)."""
    groups = json.loads((ROOT / "emr-config" / "cluster.json").read_text())["Instances"]["InstanceGroups"]
    workers = [g for g in groups if g["InstanceRole"] in ("CORE", "TASK")]
    types = {g["InstanceType"] for g in workers}
    assert len(types) == 1, f"one instance type for all worker nodes, got {types}"
    return types.pop(), sum(g["InstanceCount"] for g in workers)


def configure_cell() -> dict:
    """The ``%%configure -f`` body of the cloud notebook."""
    import jupytext

    cell = next(c for c in jupytext.read(ROOT / "notebooks" / "02-featurize-emr.py").cells
                if c.source.startswith("%%configure"))
    return json.loads(cell.source.split("\n", 1)[1])


def sizing(settings: dict) -> dict:
    heap = mib(settings["spark.executor.memory"])
    overhead = mib(settings.get("spark.executor.memoryOverhead", f"{max(384, heap // 10)}m"))
    python = mib(settings["spark.executor.pyspark.memory"])
    cores = int(settings["spark.executor.cores"])
    return {"cores": cores, "container_mb": heap + overhead + python, "worker_rlimit_mb": python // cores}


def round_up(mb: int) -> int:
    return -(-mb // YARN_ROUNDING_MB) * YARN_ROUNDING_MB


def test_default_cluster_uses_every_vcpu_and_fits_yarn_memory():
    instance, nodes = worker_nodes()
    node = INSTANCE_TYPES[instance]
    size = sizing(classification("spark-defaults"))
    per_node = node["vcpus"] // size["cores"]
    assert per_node * size["cores"] == node["vcpus"], "executors x cores must use every vCPU of a node"
    assert classification("livy-conf").get("livy.spark.deploy-mode") == "client", \
        "sized for client mode: a cluster-mode driver would take a node's executor room"
    # The node that also hosts the session's ApplicationMaster must still fit all its executors.
    assert per_node * round_up(size["container_mb"]) + round_up(APPLICATION_MASTER_MB) <= node["yarn_mb"]
    assert set(WORKER_VM_PEAK_MB) == {"onnx", "onnx-int8", "tflite", "keras"}, "every engine measured"
    for engine, peak in WORKER_VM_PEAK_MB.items():
        assert size["worker_rlimit_mb"] >= MARGIN * peak, f"{engine}: less than 25 % over its measured peak {peak} MiB"
    assert MEASURED["sizing"]["configured_per_worker_mib"] == size["worker_rlimit_mb"], \
        "the measured figures were taken under the configured cap: rerun bench/emr_shape.py"


def test_cloud_notebook_asks_for_the_cluster_defaults_and_an_achievable_executor_count():
    defaults = classification("spark-defaults")
    body = configure_cell()
    asked = {**body["conf"], "spark.executor.memory": body["executorMemory"],
             "spark.executor.cores": str(body["executorCores"])}
    assert asked["spark.executor.cores"] == defaults["spark.executor.cores"]
    for key in ("spark.executor.memory", "spark.executor.memoryOverhead", "spark.executor.pyspark.memory"):
        assert mib(asked[key]) == mib(defaults[key]), key
    instance, nodes = worker_nodes()
    per_node = INSTANCE_TYPES[instance]["vcpus"] // int(body["executorCores"])
    assert body["numExecutors"] == per_node * nodes, "every node's executors, no more than can start"


def test_sizes_are_read_like_spark_reads_them():
    assert [mib(s) for s in ("1536m", "9g", "512", "2048k", "1t")] == [1536, 9216, 512, 2, 1024**2]
    with pytest.raises(ValueError, match="not a Spark memory size: '1.5g'"):
        mib("1.5g")


WORKER = textwrap.dedent("""
    import json, os, sys
    from fruits.spark.session import local_spark

    settings, images, weights = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    spark = local_spark("local[2]", driver_memory="1g", conf={**settings, "spark.task.maxFailures": "1"})

    def rlimit(_):
        import resource
        import pyarrow
        yield resource.getrlimit(resource.RLIMIT_AS)[0], pyarrow.default_memory_pool().backend_name

    found = spark.sparkContext.parallelize(range(4), 4).mapPartitions(rlimit).collect()
    result = {"rlimits": sorted({limit for limit, _ in found}), "arrow_pools": sorted({pool for _, pool in found})}
    if images:
        from fruits.featurize.step import featurize
        from fruits.inputs.listing import check_input, list_files
        from fruits.inputs.reading import read_images
        from fruits import engines

        listing = list_files(spark, check_input(images), images.rstrip("/") + "-listing")
        onnx = engines.get("onnx")
        engine = onnx.prepare(onnx.resolve(weights, allow_random=False), input_size=224)
        frame = read_images(listing.images(), partitions=1)
        rows = featurize(frame, engine, batch_size=32, threads_per_task=1, partitions=1).collect()
        result.update(featurized=sum(r.features is not None for r in rows), errors=[r.error for r in rows if r.error],
                      dims=sorted({len(r.features) for r in rows if r.features is not None}))
    spark.stop()
    print("RESULT " + json.dumps(result))
""")


def run_worker(settings: dict, images: Path | None = None, weights: Path | None = None) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(settings), str(images or ""), str(weights or "")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def emr_worker_settings() -> dict:
    """The EMR settings Spark derives a worker's cap from, as the cluster has them."""
    defaults = classification("spark-defaults")
    return {key: defaults[key] for key in ("spark.executor.pyspark.memory", "spark.executor.cores")}


def test_a_local_session_caps_python_workers_like_the_emr_configuration():
    result = run_worker(emr_worker_settings())
    assert result["rlimits"] == [sizing(classification("spark-defaults"))["worker_rlimit_mb"] * 2**20]
    # mimalloc, Arrow's default, reserves ~1 GiB of address space per worker against that cap.
    assert result["arrow_pools"] == ["system"]
    assert classification("spark-defaults")["spark.executorEnv.ARROW_DEFAULT_MEMORY_POOL"] == "system"


@pytest.mark.slow
def test_real_images_featurize_under_the_emr_worker_cap(real_images, real_weights, tmp_path):
    """One full default batch (32 images, one partition): ONNX Runtime's largest buffers.

    Under the former cap (2g / 2 cores = 1 GiB), and still at 1792 MiB, this batch
    fails with ONNX Runtime's "Failed to allocate memory"; smaller batches hide it.
    """
    images = copy_slice(real_images / "Test", tmp_path / "Test", classes=2, per_class=16)
    result = run_worker(emr_worker_settings(), images, real_weights)
    assert result["rlimits"] == [sizing(classification("spark-defaults"))["worker_rlimit_mb"] * 2**20]
    assert result["featurized"] == 32 and result["errors"] == [] and result["dims"] == [1280]
