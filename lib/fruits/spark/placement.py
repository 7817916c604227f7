"""Where the driver runs, and so how it must be reached: loopback for ``local[...]``, a routable address otherwise.

A ``local[...]`` driver and its executors share one JVM and talk over loopback,
whereas executors on other machines (``spark://HOST:PORT``, ``yarn``) call back to the
address the driver advertises, which must therefore be one they can route to.
:func:`driver_settings` makes those settings for :func:`fruits.spark.session.local_spark`;
:func:`fruits.spark.executors.wait_for_executors` reads :func:`master_endpoint` and
:func:`is_loopback` to say why executors that cannot call back never come.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import xml.etree.ElementTree as ElementTree
from typing import Mapping, MutableMapping
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


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


def set_environ(values: Mapping[str, str | None], environ: MutableMapping[str, str] = os.environ) -> None:
    """Set each variable of ``values`` (:attr:`DriverSettings.environ`) in ``environ``; ``None`` removes it."""
    for name, value in values.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
