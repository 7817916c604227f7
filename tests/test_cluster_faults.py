"""A lost node on a real standalone cluster: one worker dies mid-featurization, the run completes.

The default EMR cluster puts its task node on the spot market; a reclaimed node
takes its executors, their Python workers and any half-written task output with
it. Here a Spark standalone master and two 1-core workers run on 127.0.0.1 from
the pyspark wheel (``bin/spark-class``; the wheel has no ``sbin/start-*.sh``). A
run is started on them; once features are being computed, one worker's whole
process tree (worker JVM, executor JVM, Python daemon and workers) is SIGKILLed.
The run must complete on the other worker with exact counts, no duplicate, none
missing, and the same features as an undisturbed run.

Every process is started in its own session and killed, tree and group, at
teardown, also when a test fails; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fruits.spark import settings as spark_settings
from fruits.run.demo_data import generate_demo_images
from fruits.storage.layout import current_run
from tests.conftest import CLUSTER_JVM_ENVIRON

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(__import__("pyspark").__file__).resolve().parent
LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(parent, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the executor JVM, its Python daemon and workers), deepest last."""
    tree, found, stack = _children(), [], [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_tree(process: subprocess.Popen) -> list[int]:
    """SIGKILL a process, its process group and every descendant; return the pids killed."""
    pids = [process.pid] + descendants(process.pid)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    return pids


def _wait_for_line(log: Path, pattern: str, process: subprocess.Popen, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None:
            pytest.fail(f"{log.name} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no /{pattern}/ in {log.name} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


class Cluster:
    """A standalone master and workers on loopback, each process in its own session."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = _free_port()
        self.url = f"spark://{LOOPBACK}:{self.port}"
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": LOOPBACK,
                    "SPARK_DAEMON_MEMORY": "256m", "PYSPARK_PYTHON": sys.executable,
                    "PYSPARK_DRIVER_PYTHON": sys.executable, **CLUSTER_JVM_ENVIRON}

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        with log:
            return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, workers: int = 2) -> None:
        self.master = self._start("master", "org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
                                  "--port", str(self.port), "--webui-port", str(_free_port()))
        _wait_for_line(self.folder / "master.log", "I have been elected leader", self.master, timeout=120)
        for index in range(workers):
            work = self.folder / f"work-{index}"
            work.mkdir()
            self.workers.append(self._start(
                f"worker-{index}", "org.apache.spark.deploy.worker.Worker", "--host", LOOPBACK,
                "--cores", "1", "--memory", "1g", "--work-dir", str(work), "--webui-port", str(_free_port()),
                self.url))
        for index, worker in enumerate(self.workers):
            _wait_for_line(self.folder / f"worker-{index}.log", "Successfully registered with master", worker,
                           timeout=120)

    def python_workers(self, worker: subprocess.Popen) -> list[int]:
        """Python worker daemon and worker processes under one worker (that is, in its executor)."""
        daemons = ("pyspark", spark_settings.PYTHON_WORKERS["spark.python.daemon.module"])
        return [pid for pid in descendants(worker.pid) if any(name in command_line(pid) for name in daemons)
                and "python" in command_line(pid).split(" ")[0]]

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            if process is not None:
                kill_tree(process)


@pytest.fixture
def cluster(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("walks /proc to find the executors' processes")
    instance = Cluster(tmp_path / "cluster")
    instance.folder.mkdir()
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


CLUSTER_RUN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.spark.session import local_spark

    params = RunParams(input_path=sys.argv[1], output_dir=sys.argv[2], weights="random", k=4, partitions=8)
    prepared = prepare(params)
    events = Path(sys.argv[4])
    events.mkdir()
    spark = local_spark(sys.argv[3], driver_memory="1g", executor_wait=120,
                        conf={"spark.executor.memory": "768m", "spark.executor.cores": "1",
                              "spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri()})
    jvm = spark.sparkContext._jvm  # a task lost with its executor is an INFO line of TaskSetManager
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.scheduler.TaskSetManager", jvm.org.apache.logging.log4j.Level.INFO)
    result = execute(spark, prepared)
    spark.stop()  # the event log is complete once the context stops
    # Spark's own record of every task attempt (what its history server reads): the job each
    # task lost with its executor belonged to, by the description the run gave that job.
    described, lost = {}, {}
    for line in next(events.iterdir()).read_text().splitlines():
        event = json.loads(line)
        if event["Event"] == "SparkListenerStageSubmitted":
            described[event["Stage Info"]["Stage ID"]] = (event.get("Properties") or {}).get("spark.job.description", "")
        elif event["Event"] == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "ExecutorLostFailure":
            job = described.get(event["Stage ID"], "")
            lost[job] = lost.get(job, 0) + 1
    print("LOST_TASKS " + json.dumps(lost), flush=True)
    print("RESULT " + json.dumps(result.manifest["counts"]), flush=True)
""")


def test_losing_a_worker_mid_featurization_costs_retries_never_rows(cluster, spark, tmp_path):
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare

    images = generate_demo_images(tmp_path / "images", per_class=50, seed=8)  # 300 images
    undisturbed = execute(spark, prepare(RunParams(input_path=str(images), output_dir=str(tmp_path / "reference"),
                                                   weights="random", k=4, partitions=8)))
    expected = {row.path: np.array(row.features) for row in spark.read.parquet(undisturbed.layout.features).collect()}
    assert len(expected) == 300

    out = tmp_path / "out"
    log = tmp_path / "driver.log"
    with open(log, "wb") as handle:
        driver = subprocess.Popen([sys.executable, "-c", CLUSTER_RUN, str(images), str(out), cluster.url,
                                   str(tmp_path / "events")],
                                  cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "SPARK_LOCAL_IP": LOOPBACK})
    try:
        deadline = time.monotonic() + 400
        victim, python_pids = None, []
        while victim is None:  # features are being computed: the UDF writes, Python workers run
            assert driver.poll() is None, f"the run ended before the fault:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"featurization never started:\n{log.read_text()[-4000:]}"
            if list(out.glob(".staging-*/_staging/raw/_temporary")):
                for worker in cluster.workers:
                    python_pids = cluster.python_workers(worker)
                    if python_pids:
                        victim = worker
                        break
            time.sleep(0.2)
        time.sleep(1.0)  # let the victim's task get going
        assert not list(out.glob(".staging-*/_staging/raw/_SUCCESS")), "the fault must hit mid-featurization"
        killed = kill_tree(victim)
        assert set(python_pids) <= set(killed), "its Python workers went with it"
        gone = time.monotonic() + 20  # SIGKILL is not instant: the kernel first tears down each process's memory
        while not all(not os.path.exists(f"/proc/{pid}") or _is_zombie(pid) for pid in killed):
            assert time.monotonic() < gone, f"still running after SIGKILL: {[p for p in killed if os.path.exists(f'/proc/{p}') and not _is_zombie(p)]}"
            time.sleep(0.1)
        code = driver.wait(timeout=600)
    finally:
        if driver.poll() is None:
            kill_tree(driver)
    output = log.read_text(errors="replace")
    assert code == 0, output[-5000:]
    assert re.search(r"Lost executor \d+ on ", output), output[-5000:]
    assert re.search(r"task [\d.]+ in stage [\d.]+ \(TID \d+\) failed because while it was being computed, its executor exited", output), \
        "a task was running on the lost worker"
    lost = json.loads(output.split("LOST_TASKS ", 1)[1].splitlines()[0])
    assert any(job.startswith("fruits: featurize") for job in lost), f"the lost task was featurizing: {lost}"
    counts = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
    assert counts == {"input": 301, "images": 300, "featurized": 300, "rejected": 1, "featurized_this_run": 300}

    run = current_run(str(out))
    rows = spark.read.parquet(f"{run}/features").collect()
    paths = [row.path for row in rows]
    assert len(paths) == len(set(paths)) == 300, "no duplicate, none missing"
    assert set(paths) == set(expected)
    worst = max(float(np.max(np.abs(np.array(row.features) - expected[row.path]))) for row in rows)
    assert worst < 1e-5, f"features differ from the undisturbed run by up to {worst}"
    assert spark.read.parquet(f"{run}/pca").count() == 300


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
