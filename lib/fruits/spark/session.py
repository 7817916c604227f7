"""Spark session with the settings the pipeline relies on, for any master.

On EMR the Livy kernel hands the notebook a ready ``spark`` session; elsewhere
(the local notebook, ``fruits run``, ``fruits project``) we build one with the
same relevant settings, so library code never needs to know where it runs.

Where the driver runs decides how it must be reached: a ``local[...]`` driver and
its executors share one JVM and talk over loopback, whereas executors on other
machines (``spark://HOST:PORT``, ``yarn``) call back to the address the driver
advertises, which must therefore be one they can route to. Those settings are
all made by :func:`driver_settings`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import sys
import xml.etree.ElementTree as ElementTree
from typing import Mapping, MutableMapping
from urllib.parse import urlsplit

from fruits.spark import jvm_archive
from fruits.spark import settings as spark_settings

#: Settings of every session built here, from :mod:`fruits.spark.settings` (EMR's
#: ``emr-config/`` and the cloud notebook's ``%%configure`` cell derive from it too).
SPARK_SETTINGS = spark_settings.library_session()

LOOPBACK = "127.0.0.1"
#: How long a cluster session waits for its first executor, unless told otherwise.
DEFAULT_EXECUTOR_WAIT_SECONDS = 120.0
EXECUTOR_WAIT_VARIABLE = "FRUITS_EXECUTOR_WAIT_SECONDS"
_DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


@dataclasses.dataclass(frozen=True)
class DriverSettings:
    """What a session needs because of where its driver runs.

    Attributes
    ----------
    conf : dict
        Spark settings (``spark.driver.host``, ``spark.driver.bindAddress``).
    environ : dict
        Variables for the driver JVM's environment; ``None`` removes one. The JVM
        reads ``SPARK_LOCAL_IP`` once, when PySpark launches it.
    local : bool
        Driver and executors share one JVM: nothing to wait for.
    """

    conf: dict[str, str]
    environ: dict[str, str | None]
    local: bool


def is_local_master(master: str) -> bool:
    """``local``, ``local[N]``, ``local[N,F]``, ``local[*]`` and ``local-cluster[...]`` run on this machine."""
    return master == "local" or master.startswith(("local[", "local-cluster["))


def driver_settings(master: str, *, user_conf: Mapping[str, str] | None = None,
                    environ: Mapping[str, str] | None = None) -> DriverSettings:
    """Spark settings that depend on where the driver runs, in one place.

    ``local[...]``: loopback everywhere (``SPARK_LOCAL_IP``, ``spark.driver.host``,
    ``spark.driver.bindAddress``), since the host name may not resolve to a routable
    address and nothing outside this machine takes part.

    Any other master: executors on other hosts connect back to the driver, so a
    loopback ``SPARK_LOCAL_IP`` inherited from the environment (the Makefile and the
    tests set one for local runs) is dropped, and the driver advertises the address
    of this machine that routes to the master (``spark://``, ``k8s://``; for ``yarn``
    the ResourceManager named in ``$HADOOP_CONF_DIR/yarn-site.xml``). Where no
    master host is known, or its name resolves to loopback here, Spark's own choice
    stands (a non-loopback interface).
    A ``spark.driver.host`` in ``user_conf`` always wins.

    Parameters
    ----------
    master : str
        Spark master URL.
    user_conf : mapping, optional
        Settings the caller gives the session.
    environ : mapping, optional
        Environment to read (default: ``os.environ``).

    Returns
    -------
    DriverSettings

    Raises
    ------
    ValueError
        An empty master, or a cluster master whose host has no route from here.

    Examples
    --------
    >>> driver_settings("local[2]", environ={}).conf["spark.driver.host"]
    '127.0.0.1'
    >>> driver_settings("spark://127.0.0.1:7077", environ={"SPARK_LOCAL_IP": "127.0.0.1"}).environ
    {'SPARK_LOCAL_IP': None}
    """
    if not master or not master.strip():
        raise ValueError(f"master must be a Spark master URL such as local[2], spark://HOST:7077 or yarn, got {master!r}")
    environ = os.environ if environ is None else environ
    user_conf = user_conf or {}
    if is_local_master(master):
        return DriverSettings(
            conf={"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK},
            environ={"SPARK_LOCAL_IP": LOOPBACK},
            local=True,
        )
    changes: dict[str, str | None] = {}
    if is_loopback(environ.get("SPARK_LOCAL_IP", "")):
        changes["SPARK_LOCAL_IP"] = None
    conf: dict[str, str] = {}
    endpoint = master_endpoint(master, environ=environ) if "spark.driver.host" not in user_conf else None
    if endpoint is not None:
        address = route_address(*endpoint)
        # A name that resolves to loopback here (Debian maps the host name to 127.0.1.1)
        # says nothing of how workers reach us: then Spark picks a non-loopback interface.
        if not is_loopback(address) or is_loopback(endpoint[0]):
            conf["spark.driver.host"] = address
    return DriverSettings(conf=conf, environ=changes, local=False)


def master_endpoint(master: str, *, environ: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """Host and port the driver talks to for ``master``, where it can be known.

    ``spark://H1:P1,H2:P2`` (standby masters) gives the first; ``yarn`` the
    ResourceManager of ``yarn-site.xml`` under ``HADOOP_CONF_DIR``/``YARN_CONF_DIR``.
    """
    environ = os.environ if environ is None else environ
    if master == "yarn":
        return _yarn_resource_manager(environ)
    scheme, _, rest = master.partition("://")
    if not rest:
        return None
    if scheme == "k8s":
        rest = rest.split("://", 1)[-1]
    first = rest.split(",")[0].split("/")[0]
    parsed = urlsplit(f"//{first}")
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or 7077


def route_address(host: str, port: int) -> str:
    """This machine's address on the route to ``host`` (no packet is sent).

    ``connect`` on a UDP socket only asks the kernel to pick a route and a source
    address; ``getsockname`` reads that address back.

    Raises
    ------
    ValueError
        ``host`` does not resolve or has no route from here.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(address)
            return probe.getsockname()[0]
    except OSError as exc:
        raise ValueError(f"cannot reach Spark master host {host!r} from this machine: {exc}") from exc


def is_loopback(address: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip()).is_loopback
    except ValueError:
        return False


def _yarn_resource_manager(environ: Mapping[str, str]) -> tuple[str, int] | None:
    for variable in ("YARN_CONF_DIR", "HADOOP_CONF_DIR"):
        folder = environ.get(variable)
        path = os.path.join(folder, "yarn-site.xml") if folder else None
        if not path or not os.path.isfile(path):
            continue
        try:
            properties = {p.findtext("name"): p.findtext("value") for p in ElementTree.parse(path).iter("property")}
        except ElementTree.ParseError:
            continue
        address = properties.get("yarn.resourcemanager.address") or ""
        host = address.rsplit(":", 1)[0] if ":" in address else properties.get("yarn.resourcemanager.hostname")
        if host and "${" not in host:
            port = address.rsplit(":", 1)[1] if ":" in address else "8032"
            return host, int(port) if port.isdigit() else 8032
    return None


@contextlib.contextmanager
def _scoped_environ(changes: Mapping[str, str | None], environ: MutableMapping[str, str] = os.environ):
    """Apply ``changes`` while PySpark launches its JVM, then put the environment back."""
    saved = {name: environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value


def executor_wait_seconds(value: float | None = None, *, environ: Mapping[str, str] | None = None) -> float:
    """The bound on waiting for executors: ``value``, else ``$FRUITS_EXECUTOR_WAIT_SECONDS``, else 120.

    Raises
    ------
    ValueError
        Not a positive number, naming where it came from.
    """
    from fruits import config

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
                conf: Mapping[str, str] | None = None, executor_wait: float | None = None):
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
    # The driver JVM maps the class archive `make env` recorded, when there is one: it starts warm.
    java = jvm_archive.java_options(settings.get(_DRIVER_JAVA_OPTIONS, ""))
    if java:
        settings[_DRIVER_JAVA_OPTIONS] = java
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
        from fruits.spark.executors import wait_for_executors

        wait_for_executors(spark, timeout=wait)
    return spark
