"""A real multi-host Spark cluster: where the driver runs decides how executors reach it.

Two network namespaces stand for two hosts: ``fruits-m-PID`` runs a Spark standalone
master and worker started from the pyspark wheel (``bin/spark-class``; the wheel has
no ``sbin/start-master.sh``), ``fruits-d-PID`` runs the driver (``fruits run -p master
spark://...``). One veth pair joins them, with addresses of a private /30 that exist
only inside the two namespaces; there is no default route anywhere, and nothing in the
root namespace (this process included) ever sends to those addresses: every process
that does runs through ``ip netns exec``, and readiness is read from log files. Every
process and both namespaces are removed at the end, also when a test fails; every wait
has a timeout. Skipped, with the reason, only where ``ip netns add`` is not permitted.

The environment keeps ``SPARK_LOCAL_IP=127.0.0.1`` (set by the Makefile and conftest
for local runs), as a user's would: a driver bound to loopback must not be what the
cluster sees. The module's first tests check :func:`fruits.spark.placement.driver_settings`
without any JVM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fruits.run.demo_data import generate_demo_images
from fruits.spark.placement import driver_settings, is_local_master, master_endpoint
from fruits.spark.session import executor_wait_seconds
from tests.conftest import CLUSTER_JVM_ENVIRON

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(__import__("pyspark").__file__).resolve().parent
PID = os.getpid()
MASTER_NS, DRIVER_NS = f"fruits-m-{PID}", f"fruits-d-{PID}"
SUBNET = f"10.213.{PID % 250}"
MASTER_IP, DRIVER_IP = f"{SUBNET}.1", f"{SUBNET}.2"
MASTER_URL = f"spark://{MASTER_IP}:7077"


# --- where the driver runs: settings only, no JVM ---------------------------------------------

def test_local_masters_bind_the_driver_to_loopback():
    for master in ("local", "local[2]", "local[2,3]", "local[*]", "local-cluster[2,1,1024]"):
        settings = driver_settings(master, environ={"SPARK_LOCAL_IP": "10.0.0.5"})
        assert settings.local and is_local_master(master)
        assert settings.conf == {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
        assert settings.environ == {"SPARK_LOCAL_IP": "127.0.0.1"}


def test_cluster_masters_drop_a_loopback_spark_local_ip_and_advertise_the_route_to_the_master():
    settings = driver_settings("spark://127.0.0.1:7077", environ={"SPARK_LOCAL_IP": "127.0.0.1"})
    assert not settings.local
    assert settings.environ == {"SPARK_LOCAL_IP": None}, "a loopback SPARK_LOCAL_IP must not reach the JVM"
    assert settings.conf == {"spark.driver.host": "127.0.0.1"}, "the route to a master on loopback is loopback"
    assert "spark.driver.bindAddress" not in settings.conf
    kept = driver_settings("spark://127.0.0.1:7077", environ={"SPARK_LOCAL_IP": "10.1.2.3"})
    assert kept.environ == {}, "a routable SPARK_LOCAL_IP chosen by the user stays"


def test_a_master_name_that_resolves_to_loopback_here_leaves_the_choice_to_spark(monkeypatch):
    import fruits.spark.placement

    monkeypatch.setattr(fruits.spark.placement, "route_address", lambda host, port: "127.0.1.1")  # Debian's /etc/hosts
    assert driver_settings("spark://myhost:7077", environ={}).conf == {}
    assert driver_settings("spark://localhost:7077", environ={}).conf == {"spark.driver.host": "127.0.1.1"}


def test_a_driver_host_set_by_the_user_wins():
    settings = driver_settings("spark://127.0.0.1:7077", user_conf={"spark.driver.host": "10.9.9.9"}, environ={})
    assert settings.conf == {}


def test_yarn_routes_to_the_resource_manager_of_yarn_site(tmp_path):
    (tmp_path / "yarn-site.xml").write_text(textwrap.dedent("""\
        <configuration>
          <property><name>yarn.resourcemanager.hostname</name><value>127.0.0.1</value></property>
        </configuration>"""))
    settings = driver_settings("yarn", environ={"HADOOP_CONF_DIR": str(tmp_path), "SPARK_LOCAL_IP": "127.0.0.1"})
    assert settings.conf == {"spark.driver.host": "127.0.0.1"} and settings.environ == {"SPARK_LOCAL_IP": None}
    unknown = driver_settings("yarn", environ={"SPARK_LOCAL_IP": "localhost"})
    assert unknown.conf == {} and unknown.environ == {"SPARK_LOCAL_IP": None}, "Spark's own choice, never loopback"


def test_master_endpoints_and_bad_values():
    assert master_endpoint("spark://a:7078,b:7079") == ("a", 7078)
    assert master_endpoint("spark://a") == ("a", 7077)
    assert master_endpoint("k8s://https://api.example:6443") == ("api.example", 6443)
    with pytest.raises(ValueError, match="master must be a Spark master URL"):
        driver_settings(" ")
    assert executor_wait_seconds(environ={}) == 120
    assert executor_wait_seconds(environ={"FRUITS_EXECUTOR_WAIT_SECONDS": "7.5"}) == 7.5
    with pytest.raises(ValueError, match="FRUITS_EXECUTOR_WAIT_SECONDS must be a positive number of seconds, got 'soon'"):
        executor_wait_seconds(environ={"FRUITS_EXECUTOR_WAIT_SECONDS": "soon"})
    with pytest.raises(ValueError, match="executor_wait must be a positive number of seconds, got 0"):
        executor_wait_seconds(0)


# --- two hosts ----------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _kill_namespace(name: str) -> None:
    """SIGKILL every process left in namespace ``name``, then delete it."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 15
    while _ip("netns", "pids", name, check=False).stdout.split() and time.monotonic() < deadline:
        time.sleep(0.2)
    _ip("netns", "del", name, check=False)


def _remove_stale_namespaces() -> None:
    """Namespaces of earlier runs whose pytest was killed before its cleanup ran."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        prefix, _, pid = name.rpartition("-")
        if prefix in ("fruits-m", "fruits-d") and pid.isdigit() and int(pid) != PID:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                _kill_namespace(name)
            except PermissionError:
                pass


def _unavailable(reason: str):
    """Skip with the reason; under CI (``CI=true``, root) a missing prerequisite fails instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the multi-host cluster cannot run: {reason}")
    pytest.skip(reason)


def _create_namespaces() -> None:
    attempt = subprocess.run(["ip", "netns", "add", MASTER_NS], capture_output=True, text=True, timeout=30)
    if attempt.returncode != 0:
        _unavailable(f"`ip netns add` is not permitted here: {attempt.stderr.strip()}")
    _ip("netns", "add", DRIVER_NS)
    veth_m, veth_d = f"fm{PID}"[:15], f"fd{PID}"[:15]
    _ip("link", "add", veth_m, "netns", MASTER_NS, "type", "veth", "peer", "name", veth_d, "netns", DRIVER_NS)
    for ns, dev, address in ((MASTER_NS, veth_m, MASTER_IP), (DRIVER_NS, veth_d, DRIVER_IP)):
        _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        routes = _ip("-n", ns, "route", "show").stdout
        assert "default" not in routes, f"namespace {ns} must have no default route: {routes}"


def _in_namespace(ns: str, command: list[str], *, env: dict, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen(["ip", "netns", "exec", ns, *command], env=env, stdout=handle, cwd=cwd,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_line(log: Path, text: str, process: subprocess.Popen, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"{log.name} exited with {process.returncode} before '{text}':\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no '{text}' in {log.name} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@dataclasses.dataclass(frozen=True)
class Hosts:
    """The two "hosts" of the module's cluster and the folders each sees."""

    #: The test's own folder: logs, the driver's working folder. The worker host does not see it.
    folder: Path
    #: A folder visible at the same path on both hosts: it stands for NFS / EFS mounted on every node.
    shared: Path
    #: The worker host's own disk (its work dir, Spark's local dirs); the test reads executor logs there.
    worker_disk: Path


def _hidden_on_the_worker_host(folder: Path) -> list[str]:
    """The driver's folders the worker host must not see: /tmp, pytest's base folder, the cache."""
    from fruits import config

    hidden = [Path("/tmp"), folder.parent]  # pytest's basetemp, wherever --basetemp put it
    if config.cache_dir().is_dir():
        hidden.append(config.cache_dir())
    resolved = [path.resolve() for path in hidden]
    # A folder inside another hidden one is hidden with it (and no longer exists to mount on).
    return [str(path) for path in resolved
            if not any(other != path and other in path.parents for other in resolved)]


def _on_worker_host(hosts_folders: dict, command: list[str]) -> list[str]:
    """``command`` in a private mount namespace where the driver's folders are empty tmpfs."""
    mounts = [arg for path in hosts_folders["hide"] for arg in ("--hide", path)]
    mounts += [arg for path in hosts_folders["share"] for arg in ("--share", path)]
    # The test's own mount namespace, which private_mounts must never mount in.
    mounts += ["--not-in", os.readlink("/proc/self/ns/mnt")]
    return ["unshare", "--mount", "--propagation", "private", sys.executable,
            str(ROOT / "tests" / "private_mounts.py"), *mounts, "--", *command]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and a 4-core, 2 GiB worker on "host" ``MASTER_IP``, which shares no disk
    with the driver except :attr:`Hosts.shared`; yields :class:`Hosts`."""
    if sys.platform != "linux" or subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        _unavailable("network namespaces need Linux and iproute2's `ip`")
    _remove_stale_namespaces()
    folder = tmp_path_factory.mktemp("cluster")
    (folder / "driver-cwd").mkdir()
    hosts = Hosts(folder=folder, shared=tmp_path_factory.mktemp("shared"),
                  worker_disk=tmp_path_factory.mktemp("worker-disk"))
    mounts = {"hide": _hidden_on_the_worker_host(folder), "share": [str(hosts.shared), str(hosts.worker_disk)]}
    processes: list[subprocess.Popen] = []
    try:
        _create_namespaces()
        env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": MASTER_IP,
               "SPARK_DAEMON_MEMORY": "384m", "SPARK_LOCAL_DIRS": str(hosts.worker_disk / "local"),
               "PYSPARK_PYTHON": sys.executable, **CLUSTER_JVM_ENVIRON}
        spark_class = str(SPARK_HOME / "bin" / "spark-class")
        master = _in_namespace(MASTER_NS, _on_worker_host(mounts, [
            spark_class, "org.apache.spark.deploy.master.Master", "--host", MASTER_IP, "--port", "7077",
            "--webui-port", "0"]), env=env, log=folder / "master.log", cwd=hosts.worker_disk)
        processes.append(master)
        _wait_for_line(folder / "master.log", "I have been elected leader", master, timeout=120)
        worker = _in_namespace(MASTER_NS, _on_worker_host(mounts, [
            spark_class, "org.apache.spark.deploy.worker.Worker", "--host", MASTER_IP, "--cores", "4",
            "--memory", "2g", "--work-dir", str(hosts.worker_disk / "work"), "--webui-port", "0", MASTER_URL]),
            env=env, log=folder / "worker.log", cwd=hosts.worker_disk)
        processes.append(worker)
        _wait_for_line(folder / "worker.log", "Successfully registered with master", worker, timeout=120)
        yield hosts
    finally:
        _stop(processes)
        for ns in (DRIVER_NS, MASTER_NS):
            _kill_namespace(ns)
    assert MASTER_NS not in _ip("netns", "list", check=False).stdout


def _driver(command: list[str], *, folder: Path, name: str, timeout: float, env_extra: dict | None = None):
    """Run ``command`` on the driver "host"; returns (exit code, output, seconds); killed at ``timeout``."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env_extra or {})}
    log = folder / f"{name}.log"
    start = time.monotonic()
    # The driver's working folder is one the worker host does not see, like /tmp and the cache.
    process = _in_namespace(DRIVER_NS, command, env=env, log=log, cwd=folder / "driver-cwd")
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _stop([process])
        for pid in _ip("netns", "pids", DRIVER_NS, check=False).stdout.split():  # a kernel papermill started
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return code, log.read_text(errors="replace"), time.monotonic() - start


def _fruits_run(cluster: Hosts, images: Path, out: Path, name: str, *, shared: list[Path], timeout: float = 300):
    command = [sys.executable, "-m", "fruits.cli", "run", "--input", str(images), "--output", str(out),
               "-p", "master", MASTER_URL, "-p", "weights", "random", "-p", "k", "4", "-p", "driver_memory", "1g",
               # the folders the user says every node mounts (NFS/EFS); here a claim the test controls
               "-p", "shared_paths", ",".join(str(folder) for folder in shared)]
    code, output, seconds = _driver(command, folder=cluster.folder, name=name, timeout=timeout,
                                    env_extra={"FRUITS_EXECUTOR_WAIT_SECONDS": "120"})
    assert code is not None, f"fruits run hung for {seconds:.0f} s:\n{output[-4000:]}"
    return code, output


@pytest.mark.spark
def test_fruits_run_on_a_standalone_cluster_on_another_host(cluster):
    """Input and output on a folder both hosts mount (NFS/EFS): the run works, outputs on the driver's side."""
    images = generate_demo_images(cluster.shared / "images", per_class=4, seed=3)
    out = cluster.shared / "out"
    code, output = _fruits_run(cluster, images, out, "run", shared=[cluster.shared])
    assert code == 0, f"fruits run failed:\n{output[-4000:]}"
    manifests = list(out.rglob("manifest.json"))  # wherever the output layout puts the published run
    assert len(manifests) == 1, manifests
    manifest = json.loads(manifests[0].read_text())
    assert manifest["counts"] == {"input": 25, "images": 24, "featurized": 24, "rejected": 1,
                                  "featurized_this_run": 24}
    assert manifest["spark"]["short_run_jvm"] is False, "a cluster's run keeps the JVM's default compilers"
    assert (manifests[0].parent / "report.html").exists() and (manifests[0].parent / "pca").is_dir()
    executor_logs = list((cluster.worker_disk / "work").glob("app-*/*/stderr"))
    assert executor_logs, "the work must have run in the worker's executors"
    assert any(f"Connecting to driver: spark://CoarseGrainedScheduler@{DRIVER_IP}:" in p.read_text(errors="replace")
               for p in executor_logs), "executors must call the driver at its routable address"


@pytest.mark.spark
@pytest.mark.parametrize("driver_only", ["input", "output"])
def test_a_run_on_a_folder_only_the_driver_sees_fails_at_once_naming_it(cluster, tmp_path, driver_only):
    """Input or output in the driver's /tmp, which the worker host does not see, although the user said
    (``shared_paths``) that every node mounts it: a clear error at the first job, no output.

    Before the executors' view was checked, a driver-only input or output died in the
    listing with Spark's ``UNABLE_TO_INFER_SCHEMA`` (the executors had written the
    listing to their own disk), which names neither the path nor the cause.
    """
    images = generate_demo_images((tmp_path if driver_only == "input" else cluster.shared / "in-ok") / "images",
                                  per_class=2, seed=4)
    out = (tmp_path if driver_only == "output" else cluster.shared / "out-ok") / "out"
    # The user says both folders are mounted on every node (shared_paths), so the rule that refuses
    # driver-only paths before Spark starts (fruits.storage.reach) lets the run through: only the
    # executors can tell that the claim is wrong.
    code, output = _fruits_run(cluster, images, out, f"driver-only-{driver_only}", shared=[cluster.shared, tmp_path])
    assert code != 0, f"a run whose {driver_only} the executors cannot see must fail:\n{output[-4000:]}"
    named = str(images) if driver_only == "input" else str(out)
    assert "NotVisibleToExecutors" in output and named in output, output[-4000:]
    assert "not visible to the executors" in output and "mounted on every node" in output, output[-4000:]
    assert "UNABLE_TO_INFER_SCHEMA" not in output, output[-4000:]
    assert not list(out.rglob("manifest.json")), "a failed run publishes nothing"


LOOPBACK_DRIVER = textwrap.dedent("""
    import sys
    from fruits.spark.session import local_spark

    local_spark(sys.argv[1], driver_memory="512m", executor_wait=float(sys.argv[2]),
                conf=dict(arg.split("=", 1) for arg in sys.argv[3:]))
    print("UNEXPECTED: executors registered")
""")


@pytest.mark.spark
@pytest.mark.parametrize("conf, cause", [
    (["spark.driver.host=127.0.0.1"], "the driver advertises the loopback address 127.0.0.1:"),
    (["spark.executor.memory=8g"], "the cluster has no free resources for an executor (spark.executor.memory=8g"),
], ids=["driver-on-loopback", "no-resources"])
def test_executors_that_never_register_fail_in_bounded_time_naming_the_cause(cluster, conf, cause):
    wait = 20
    code, output, seconds = _driver([sys.executable, "-c", LOOPBACK_DRIVER, MASTER_URL, str(wait), *conf],
                                    folder=cluster.folder, name=conf[0].split("=")[0], timeout=wait + 150)
    assert code is not None, f"the session hung for {seconds:.0f} s instead of failing after {wait} s:\n{output[-3000:]}"
    assert code != 0 and "UNEXPECTED" not in output
    assert "ExecutorsUnavailable: no executor ran a task within" in output, output[-3000:]
    assert cause in output, output[-3000:]


# --- EMR's executor shape on the worker host ------------------------------------------------------

@pytest.mark.slow
@pytest.mark.spark
def test_every_engine_runs_at_emrs_executor_shape_under_the_configured_cap(cluster, real_images, real_weights,
                                                                           real_tflite):
    """EMR's executors (1 GiB heap, 4 cores, 512 MiB overhead, the pyspark memory cap) on the other host:
    every engine featurizes real images in 4 concurrent tasks, each Python worker capped as on EMR, and
    each engine's measured peak leaves the headroom the cap was sized with (``bench/emr_shape.py``)."""
    from fruits.spark import settings as spark_settings
    from tests.conftest import copy_slice

    cores = int(spark_settings.EXECUTOR["spark.executor.cores"])
    cap_mib = int(spark_settings.EXECUTOR["spark.executor.pyspark.memory"].rstrip("m")) // cores
    images = copy_slice(real_images / "Test", cluster.shared / "emr-shape" / "images", classes=2, per_class=4)
    out = cluster.shared / "emr-shape" / "figures"
    command = [sys.executable, str(ROOT / "bench" / "emr_shape.py"), "--master", MASTER_URL, "--input", str(images),
               "--scratch", str(cluster.shared / "emr-shape"), "--keep-cap", "--out", str(out)]
    code, output, seconds = _driver(command, folder=cluster.folder, name="emr-shape", timeout=900,
                                    env_extra={"FRUITS_WEIGHTS": str(real_weights), "FRUITS_TFLITE_MODEL": str(real_tflite)})
    assert code == 0, f"exit {code} after {seconds:.0f} s:\n{output[-4000:]}"
    document = json.loads((out / "emr_shape.json").read_text())
    assert [r["engine"] for r in document["results"]] == ["onnx", "onnx-int8", "tflite", "keras"]
    for result in document["results"]:
        assert result["featurized"] == result["images"] == 8 and result["errors"] == [], result
        assert result["tasks_at_once"] == cores and result["workers"] >= cores, result
        assert result["rlimit_as_mib"] == cap_mib, f"workers must run under EMR's cap: {result}"
        assert result["vm_peak_mib"] * HEADROOM_OVER_PEAK <= cap_mib, f"less than 25 % headroom: {result}"
    commands = [line for p in (cluster.worker_disk / "work").glob("app-*/*/stderr")
                for line in p.read_text(errors="replace").splitlines() if line.startswith("Spark Executor Command:")]
    assert any("-Xmx1024M" in line for line in commands), \
        "the executors ran on the worker host with EMR's 1 GiB heap"


#: The cap leaves at least this much over every engine's peak address space (issue 24).
HEADROOM_OVER_PEAK = 1.25
