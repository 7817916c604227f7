"""Which paths every executor can reach: a run refuses, before Spark starts, paths only the driver sees.

Under a ``local[N]`` master the executors are threads of the driver, so every path the
driver sees, they see. Under any other master (``yarn`` on EMR, ``spark://HOST:PORT``,
``k8s://...``) they run on other hosts, which never see the driver's disk:

- a **local** path (``/data/Test``, ``file:///data/Test``) names a folder that exists on
  the driver only: the executors list nothing there, or write where nobody reads;
- a **relative** path is worse: Spark resolves it against the cluster's default file
  system (HDFS on EMR), while Python code on the driver resolves it against its working
  folder on the primary node's disk, so the two halves of one run disagree;
- the **demo** (``input_path=None``) generates its images on the driver's disk.

Remote stores (``s3://``, ``hdfs://``, ``gs://``: :func:`fruits.storage.location.is_remote`)
are reachable from every node. A folder mounted at the same path on every node (NFS,
EFS) is too, but nothing here can tell such a mount from a local disk, so the user says
so with the ``shared_paths`` parameter; local paths under one of its folders are then
accepted (the demo too, when ``FRUITS_DEMO_DATA`` puts its images under one).

The rule lives here alone. :func:`check_reach` is called by :func:`fruits.run.plan.prepare`
(both notebooks, before any Spark job: the local one with its ``master`` parameter, before
its session starts; the PySpark (Livy) kernel with its session's master, ``yarn`` on EMR),
by ``fruits run`` for the local notebook (before any kernel starts) and by ``fruits emr run``
(before a step is submitted). User documentation: ``docs/emr-paths.md``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from fruits import config
from fruits.spark.placement import is_local_master
from fruits.storage import location

#: The run parameters that name folders the executors read or write.
PATH_PARAMETERS = ("input_path", "output_dir", "train_path")

#: Where the user-facing explanation lives.
DOCS = "docs/emr-paths.md"


class UnreachablePath(ValueError):
    """A path the executors of a cluster cannot reach; the message names each one and why."""


def executors_share_the_drivers_disk(master: str) -> bool:
    """True when ``master`` runs the executors on the driver's own host (the session's own rule).

    ``local``, ``local[N]``, ``local[*]``, ``local[N,F]`` and Spark's test master
    ``local-cluster[...]`` (:func:`fruits.spark.placement.is_local_master`).

    Examples
    --------
    >>> [executors_share_the_drivers_disk(m) for m in ("local[2]", "local", "local-cluster[2,1,1024]")]
    [True, True, True]
    >>> [executors_share_the_drivers_disk(m) for m in ("yarn", "spark://10.0.0.5:7077", "k8s://https://h:443")]
    [False, False, False]
    """
    return is_local_master(master.strip())


def shared_folders(shared_paths: str | None) -> list[str]:
    """The folders of ``shared_paths`` (comma-separated absolute local paths), normalised.

    Raises
    ------
    ValueError
        An entry that is empty, relative or a URI (``s3://`` needs no declaring).

    Examples
    --------
    >>> shared_folders("/mnt/efs, /shared/nfs/")
    ['/mnt/efs', '/shared/nfs']
    >>> shared_folders(None)
    []
    """
    if shared_paths is None:
        return []
    folders = []
    for entry in (part.strip() for part in shared_paths.split(",")):
        folder = location.local_path(entry) if entry else None
        if not entry or folder is None or not os.path.isabs(folder):
            raise ValueError(f"shared_paths must be comma-separated absolute folders mounted on every node "
                             f"(e.g. /mnt/efs), got {entry!r} in {shared_paths!r}")
        folders.append(os.path.normpath(folder))
    return folders


def why_unreachable(path: str, shared: list[str]) -> str | None:
    """Why executors on other hosts cannot reach ``path``, or ``None`` when they can.

    Examples
    --------
    >>> why_unreachable("s3://bucket/Test", []) is None, why_unreachable("/mnt/efs/Test", ["/mnt/efs"]) is None
    (True, True)
    >>> why_unreachable("/data/Test", ["/mnt/efs"])
    "is on the driver's disk, which executors on other hosts do not see"
    """
    if location.is_remote(path):
        return None
    local = location.local_path(path)
    if not os.path.isabs(os.path.expanduser(local)):
        return ("is relative: Spark resolves it against the cluster's default file system (HDFS on EMR) "
                "while Python on the driver resolves it against its working folder on the driver's disk")
    local = os.path.normpath(os.path.expanduser(local))
    if any(local == folder or local.startswith(folder.rstrip("/") + "/") for folder in shared):
        return None
    return "is on the driver's disk, which executors on other hosts do not see"


def check_reach(values: Mapping[str, Any], master: str) -> None:
    """Refuse the run's paths that executors under ``master`` cannot reach, naming each and why.

    ``values`` holds the run parameters (``input_path``, ``output_dir``, ``train_path``,
    ``shared_paths``), as a mapping or a :class:`fruits.params.RunParams`. Nothing is
    refused under a ``local[...]`` master.

    Raises
    ------
    UnreachablePath
        A local or relative path, or the demo, off the driver's host and outside every
        folder of ``shared_paths``.
    ValueError
        ``shared_paths`` is not a list of absolute folders.
    """
    if not isinstance(values, Mapping):
        values = values.to_dict()
    if executors_share_the_drivers_disk(master):
        return
    shared = shared_folders(values.get("shared_paths"))
    problems = []
    for name in PATH_PARAMETERS:
        path = values.get(name)
        reason = why_unreachable(path, shared) if path is not None else None
        if reason:
            problems.append(f"{name} {path!r} {reason}")
    if values.get("input_path") is None:
        demo = str(config.demo_data_dir())
        if why_unreachable(demo, shared):
            problems.append(f"input_path is None, so the demo would generate its images on the driver's disk ({demo}), "
                            "which executors on other hosts do not see")
    if problems:
        raise UnreachablePath(
            f"master {master!r} runs executors on other hosts, which cannot reach every path of this run: "
            + "; ".join(problems)
            + ". Use s3:// (or hdfs://) paths, or, for a folder mounted at the same path on every node "
              f"(NFS, EFS), name it in shared_paths (e.g. -p shared_paths /mnt/efs). See {DOCS}.")


def master_of(namespace: Mapping[str, Any]) -> str:
    """The master a notebook's run will use: its ``master`` parameter, else the running session's.

    The local notebook calls :func:`fruits.run.prepare` before it starts Spark, with the
    master in its parameters; in the PySpark (Livy) kernel the session already exists
    (Livy started it) and ``spark`` knows its master (``yarn`` on EMR).
    """
    if namespace.get("master"):
        return namespace["master"]
    if namespace.get("spark") is not None:
        return namespace["spark"].sparkContext.master
    raise ValueError("no Spark master to check the paths against: set the parameter 'master' or start a session")
