"""Python workers' memory at EMR's executor shape: 1 GiB heap, 4 cores, 4 tasks at once, every engine.

EMR's executors (:data:`fruits.spark.settings.EXECUTOR`) run four tasks at once, so
four Python workers at once, each capped by ``spark.executor.pyspark.memory / 4`` of
address space (``RLIMIT_AS``). This measures, per engine, each Python worker's peak
address space (``VmPeak``, what the cap limits) and peak resident memory (``VmHWM``)
while it featurizes real Fruits-360 ``Test/`` images in four concurrent tasks, on a
Spark standalone executor with those settings (the JVM heap is what a 1 GiB executor
has; a standalone worker does not enforce the overhead, YARN does).

Each engine runs in its own application, so its workers are fresh processes; the
figures are the kernel's high-water marks, read on the executor's host by
:func:`fruits.spark.executors.python_worker_memory` before the application ends.

    python bench/emr_shape.py --images 1100                 # starts a 4-core worker on 127.0.0.1
    python bench/emr_shape.py --master spark://H:7077 ...   # an existing cluster (tests/test_multihost.py)

Unless ``--keep-cap``, the workers run with an address-space cap far above any engine
(``--pyspark-memory``), so that the figure is each engine's own peak, not where the
cap stopped it. It writes ``emr_shape.json`` and ``emr_shape.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENGINES = ("onnx", "onnx-int8", "tflite", "keras")
#: Headroom the cap must leave above the largest measured peak of the engines it is sized for.
HEADROOM = 1.25
MIB = 2**20


def measure_engine(master: str, engine_name: str, images: str, scratch: str, *, pyspark_memory: str | None,
                   weights: str | None, tflite: str | None) -> dict:
    """Featurize ``images`` with ``engine_name`` in 4 concurrent tasks at EMR's shape; the workers' peaks."""
    from fruits import engines
    from fruits.spark import settings as spark_settings
    from fruits.spark.executors import python_worker_memory
    from fruits.featurize.step import featurize
    from fruits.inputs.listing import check_input, list_files
    from fruits.inputs.reading import read_images
    from fruits.spark.session import local_spark

    conf = {**spark_settings.EXECUTOR, "spark.task.maxFailures": "1", "spark.cores.max": "4"}
    if pyspark_memory:
        conf["spark.executor.pyspark.memory"] = pyspark_memory
    engine = engines.get(engine_name)
    spark = local_spark(master, app_name=f"fruits-emr-shape-{engine_name}", driver_memory="2g", conf=conf)
    try:
        tasks = int(conf["spark.executor.cores"])
        listing = list_files(spark, check_input(images), f"{scratch}/listing-{engine_name}")
        resolved = engine.resolve(tflite if engine_name == "tflite" else weights, allow_random=False)
        paths = [row.path for row in listing.images().orderBy("path").select("path").collect()]
        prepared = engine.prepare(resolved, input_size=224, inputs=paths[:engine.calibration_images])
        frame = read_images(listing.images(), partitions=tasks)
        started = time.monotonic()
        rows = featurize(frame, prepared, batch_size=engine.batch_size, threads_per_task=1,
                         partitions=None).select("error", "features").collect()
        seconds = time.monotonic() - started
        workers = python_worker_memory(spark, tasks=tasks)
    finally:
        spark.stop()
    errors = sorted({row.error for row in rows if row.error})
    return {
        "engine": engine_name, "images": len(rows), "featurized": sum(row.features is not None for row in rows),
        "errors": errors[:5], "seconds": round(seconds, 1), "tasks_at_once": tasks, "batch_size": engine.batch_size,
        "workers": len(workers),
        "vm_peak_mib": round(max(w["vm_peak"] for w in workers) / MIB) if workers else None,
        "rss_peak_mib": round(max(w["vm_hwm"] for w in workers) / MIB) if workers else None,
        "rss_sum_mib": round(sum(w["vm_hwm"] for w in workers) / MIB) if workers else None,
        "rlimit_as_mib": (workers[0]["rlimit_as"] // MIB if workers and workers[0]["rlimit_as"] else None),
    }


def sizing(results: list[dict], *, cores: int) -> dict:
    """Each engine's headroom under the configured cap, and the cap :data:`HEADROOM` over the largest peak asks for."""
    from fruits.spark import settings as spark_settings

    configured = _mib(spark_settings.EXECUTOR["spark.executor.pyspark.memory"]) // cores
    peak = max(r["vm_peak_mib"] for r in results)
    return {"configured_per_worker_mib": configured, "largest_peak_mib": peak,
            "needed_per_worker_mib": round(peak * HEADROOM),
            "headroom": {r["engine"]: round(configured / r["vm_peak_mib"] - 1, 3) for r in results}}


def _mib(size: str) -> int:
    number, unit = int(size[:-1]), size[-1].lower()
    return number * {"m": 1, "g": 1024}[unit]


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def report(document: dict) -> str:
    lines = [f"# Python workers at EMR's executor shape (commit {document['commit']})", "",
             f"{document['shape']}; {document['images']} real Test images, engines' default batch sizes, "
             "1 thread per task; each engine in its own application.", "",
             "| engine | images featurized | Python workers | peak virtual, VmPeak (MiB) | peak resident, VmHWM (MiB) "
             "| resident, all worker processes (MiB) | cap per worker when measured (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for r in document["results"]:
        lines.append(f"| {r['engine']} | {r['featurized']}/{r['images']} | {r['workers']} | {r['vm_peak_mib']} | "
                     f"{r['rss_peak_mib']} | {r['rss_sum_mib']} | {r['rlimit_as_mib']} |")
    s = document.get("sizing")
    if s:
        each = ", ".join(f"{engine} {share:.0%}" for engine, share in s["headroom"].items())
        lines += ["", f"Cap per worker configured: {s['configured_per_worker_mib']} MiB "
                      f"(spark.executor.pyspark.memory / spark.executor.cores); headroom over each engine's peak: "
                      f"{each}. {HEADROOM - 1:.0%} over the largest peak ({s['largest_peak_mib']} MiB) needs "
                      f"{s['needed_per_worker_mib']} MiB."]
    return "\n".join(lines) + "\n"


# --- a local standalone cluster with one EMR-shaped worker, when no master is given --------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no '{text}' in {log}:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)


def start_cluster(folder: Path) -> tuple[str, list[subprocess.Popen]]:
    """A standalone master and one 4-core, 2 GiB worker on 127.0.0.1; each process in its own session."""
    spark_home = Path(__import__("pyspark").__file__).resolve().parent
    port = _free_port()
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "384m",
           "PYSPARK_PYTHON": sys.executable}
    spark_class = str(spark_home / "bin" / "spark-class")
    url, processes = f"spark://127.0.0.1:{port}", []
    commands = {"master": [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                           str(port), "--webui-port", "0"],
                "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "4",
                           "--memory", "2g", "--work-dir", str(folder / "work"), "--webui-port", "0", url]}
    ready = {"master": "I have been elected leader", "worker": "Successfully registered with master"}
    for name, command in commands.items():
        log = folder / f"{name}.log"
        with open(log, "wb") as handle:
            processes.append(subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        _wait_for(log, ready[name], processes[-1], 120)
    return url, processes


def stop_cluster(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


def copy_images(source: Path, target: Path, count: int) -> Path:
    """``count`` images spread over the classes of ``source`` (sorted, every k-th), copied into ``target``."""
    import shutil

    paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    step = max(1, len(paths) // count)
    for path in paths[::step][:count]:
        destination = target / path.parent.name / path.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", help="an existing cluster (default: start one 4-core worker here)")
    parser.add_argument("--images", type=int, default=1100, help="Test images to copy (default 1,100)")
    parser.add_argument("--input", help="an image folder every executor sees (default: copy --images)")
    parser.add_argument("--scratch", help="a folder every executor sees (default: a temporary one)")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES))
    parser.add_argument("--pyspark-memory", default="32g",
                        help="spark.executor.pyspark.memory while measuring (default 32g: 8 GiB per worker)")
    parser.add_argument("--keep-cap", action="store_true", help="measure under the configured cap instead")
    parser.add_argument("--out", default=str(HERE / "results" / "emr-shape"))
    parser.add_argument("--report", metavar="JSON", help="only print (and rewrite the .md beside) a result file")
    args = parser.parse_args(argv)
    if args.report:
        document = json.loads(Path(args.report).read_text())
        from fruits.spark import settings as spark_settings

        document["sizing"] = sizing(document["results"], cores=int(spark_settings.EXECUTOR["spark.executor.cores"]))
        Path(args.report).write_text(json.dumps(document, indent=2) + "\n")
        Path(args.report).with_suffix(".md").write_text(report(document))
        print(report(document))
        return 0
    import tempfile

    commit = _commit()  # the code measured, whatever is committed while it runs
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="fruits-emr-shape-"))
    weights, tflite = os.environ.get("FRUITS_WEIGHTS"), os.environ.get("FRUITS_TFLITE_MODEL")
    if args.input:
        images = args.input
    else:
        test = Path(os.environ.get("FRUITS_TEST_IMAGES", "")) / "Test"
        if not test.is_dir():
            parser.error("set FRUITS_TEST_IMAGES to the Fruits-360 folder holding Test/, or pass --input")
        images = str(copy_images(test, scratch / "images", args.images))
    processes: list[subprocess.Popen] = []
    try:
        master = args.master
        if master is None:
            (scratch / "cluster").mkdir(exist_ok=True)
            master, processes = start_cluster(scratch / "cluster")
        results = []
        for name in args.engines:
            result = measure_engine(master, name, images, str(scratch), weights=weights, tflite=tflite,
                                    pyspark_memory=None if args.keep_cap else args.pyspark_memory)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        stop_cluster(processes)
        if not args.scratch:  # a temporary folder of ours: the copied images, listings, worker logs
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    from fruits.spark import settings as spark_settings

    cores = int(spark_settings.EXECUTOR["spark.executor.cores"])
    document = {"commit": commit, "master": master, "images": results[0]["images"] if results else 0,
                "shape": ", ".join(f"{k}={v}" for k, v in spark_settings.EXECUTOR.items()),
                "measured_with_pyspark_memory": None if args.keep_cap else args.pyspark_memory, "results": results}
    if results:
        document["sizing"] = sizing(results, cores=cores)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "emr_shape.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "emr_shape.md").write_text(report(document))
    print(report(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
