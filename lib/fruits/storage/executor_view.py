"""Do the executors see the run's folders? Checked once before the first job, and again before publishing.

On a cluster the executors, not the driver, list and read the input and write every
output. A local path is then only right when the same folder is mounted on every
node (NFS, EFS); one on the driver's own disk (its ``/tmp``, home or working folder)
does not exist on the other hosts, and Spark does not say so: the executors read an
empty folder, or write the outputs to their own disks, and the driver's job commit
succeeds with nothing in it (the next read fails with ``UNABLE_TO_INFER_SCHEMA``,
naming neither the path nor the cause).

:func:`check_executors_see` asks the executors themselves, in one small bounded job
before any work: each task looks for a few names the driver sees in each input
folder, reads a random token the driver wrote into each output folder, and writes
one back, which the driver must then see. :func:`check_written_here` is the last
guard before a run is published: every folder Spark committed (``_SUCCESS``) must
hold a data file where the driver looks.

A ``local[...]`` master runs its executors in the driver's JVM: nothing to check.
Remote locations (``s3://``, ``hdfs://``) are the same store for every node.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Mapping

from fruits.spark.executors import ExecutorsUnavailable
from fruits.spark.placement import is_local_master
from fruits.spark.session import executor_wait_seconds
from fruits.storage import location

#: Names of an input folder the executors must see too (the first ones, sorted).
SAMPLE_NAMES = 3
#: The file the driver writes into an output folder for the executors to read.
_TOKEN_PREFIX = ".fruits-visibility-"
#: Most tasks the check runs (one per executor core up to this), so that the executors registered
#: by then usually all take part. Not guaranteed: the scheduler may put every task on the first
#: executor (dynamic allocation adds others later), so :func:`check_written_here` stays the backstop.
MAX_TASKS = 64

SHARED_STORAGE_HINT = (
    "On a cluster the executors list and read the input and write the outputs themselves, so "
    "input_path and output_dir must be on storage every node sees: s3://... on EMR, hdfs://..., or "
    "a folder mounted on every node at the same path (NFS, EFS). A folder on the driver's own disk "
    "(its /tmp, home or working folder) is not."
)


class NotVisibleToExecutors(RuntimeError):
    """A run's folder is not the same folder on the executors' hosts; the message names it and why."""


def check_executors_see(spark, *, read: Mapping[str, str] | None = None, write: Mapping[str, str] | None = None,
                        timeout: float | None = None) -> None:
    """Raise unless the executors see the local folders ``read`` and ``write`` as the driver does.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    read : mapping
        Parameter name -> folder the executors read (``{"input_path": "/data/in"}``); must exist here.
    write : mapping
        Parameter name -> folder the executors write into; must exist here (the driver
        writes and removes one small file in it).
    timeout : float, optional
        Seconds the check's job may take (default: the executor wait,
        :func:`fruits.spark.session.executor_wait_seconds`).

    Raises
    ------
    NotVisibleToExecutors
        A folder is missing on an executor's host, holds other files there, or a file
        written on one side does not appear on the other; the message names the
        parameter, the path, the hosts and :data:`SHARED_STORAGE_HINT`.
    fruits.spark.executors.ExecutorsUnavailable
        The check's job did not finish within ``timeout``.
    """
    sc = spark.sparkContext
    read = {name: location.local_path(path) for name, path in (read or {}).items() if location.local_path(path)}
    write = {name: location.local_path(path) for name, path in (write or {}).items() if location.local_path(path)}
    if is_local_master(sc.master) or not (read or write):
        return
    read = {name: os.path.abspath(path) for name, path in read.items()}
    write = {name: os.path.abspath(path) for name, path in write.items()}
    expected = {name: sorted(os.listdir(path))[:SAMPLE_NAMES] for name, path in read.items()}
    token = uuid.uuid4().hex
    tokens = {name: os.path.join(path, f"{_TOKEN_PREFIX}{token}") for name, path in write.items()}
    try:
        for path in tokens.values():
            with open(path, "w", encoding="ascii") as handle:
                handle.write(token)
        tasks = max(1, min(sc.defaultParallelism, MAX_TASKS))
        probe = _probe(read, expected, tokens, token)
        reports = _bounded(spark, lambda: sc.parallelize(range(tasks), tasks).mapPartitions(probe).collect(),
                           timeout=executor_wait_seconds(timeout))
        problems = {}
        for host, found in reports:
            for name, problem in found.items():
                problems.setdefault((name, problem), set()).add(host)
        for host, found in reports:  # the files the executors wrote must be here too
            for name, path in tokens.items():
                if name not in found and not any(entry.startswith(f"{_TOKEN_PREFIX}{token}.{host}.")
                           for entry in os.listdir(write[name])):
                    problems.setdefault((name, "a file the executors wrote there does not appear on the driver"),
                                        set()).add(host)
    finally:
        for name, path in tokens.items():
            for entry in os.listdir(write[name]) if os.path.isdir(write[name]) else ():
                if entry.startswith(f"{_TOKEN_PREFIX}{token}"):
                    try:
                        os.remove(os.path.join(write[name], entry))
                    except OSError:
                        pass
    if problems:
        paths = {**read, **write}
        lines = [f"{name} {paths[name]!r} is not visible to the executors (on {', '.join(sorted(hosts))}): {problem}"
                 for (name, problem), hosts in sorted(problems.items())]
        raise NotVisibleToExecutors("\n".join(lines) + "\n" + SHARED_STORAGE_HINT)


def _probe(read: dict, expected: dict, tokens: dict, token: str):
    """The executors' side of :func:`check_executors_see`: ``(host, {name: problem})`` per task."""

    def check(_):
        import os as _os
        import socket as _socket

        # The host's name (EMR's are ip-10-0-1-2), with the address Spark was told to use where set.
        host = _socket.gethostname() or "?"
        if _os.environ.get("SPARK_LOCAL_IP"):
            host += f"({_os.environ['SPARK_LOCAL_IP']})"
        found = {}
        for name, path in read.items():
            if not _os.path.isdir(path):
                found[name] = "it does not exist on their host"
                continue
            missing = [entry for entry in expected[name] if not _os.path.lexists(_os.path.join(path, entry))]
            if missing:
                found[name] = f"there it lacks {', '.join(missing)}, which the driver sees: another folder"
        for name, path in tokens.items():
            folder = _os.path.dirname(path)
            if not _os.path.isdir(folder):
                found[name] = "it does not exist on their host"
                continue
            try:
                with open(path, encoding="ascii") as handle:
                    seen = handle.read()
            except OSError:
                seen = None
            if seen != token:
                found[name] = "the file the driver wrote there is missing on their host: another folder"
                continue
            try:
                reply = f"{path}.{host}.{_os.getpid()}"
                with open(reply, "w", encoding="ascii") as handle:
                    handle.write(token)
            except OSError as exc:
                found[name] = f"they cannot write there: {type(exc).__name__}: {exc}"
        yield host, found

    return check


def _bounded(spark, job, *, timeout: float):
    """``job()`` in a thread with a deadline; on timeout cancel it and raise ExecutorsUnavailable."""
    from pyspark import InheritableThread

    sc = spark.sparkContext
    group = f"fruits-visibility-{uuid.uuid4().hex[:8]}"
    outcome: dict = {}

    def run() -> None:
        try:
            sc.setJobGroup(group, "fruits: do the executors see the run's folders?", interruptOnCancel=True)
            outcome["result"] = job()
        except Exception as exc:  # raised below, in the caller's thread
            outcome["error"] = exc

    thread = InheritableThread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout)
    if "result" in outcome:
        return outcome["result"]
    if "error" in outcome:
        raise outcome["error"]
    sc.cancelJobGroup(group)
    thread.join(10)
    raise ExecutorsUnavailable(f"checking which folders the executors see did not finish within "
                               f"{time.monotonic() - started:.0f} s (FRUITS_EXECUTOR_WAIT_SECONDS sets the wait)")


def check_written_here(folder: str) -> None:
    """Raise if a folder Spark committed under ``folder`` holds no data file where the driver looks.

    Spark's job commit runs on the driver: when executors wrote their task files to
    their own disks, the driver still writes ``_SUCCESS`` into an otherwise empty
    folder. Spark writes at least one ``part-`` file for every DataFrame, even an
    empty one (in a sub-folder when the write is partitioned), so ``_SUCCESS`` with
    no ``part-`` file beneath it means the data is elsewhere.

    Raises
    ------
    NotVisibleToExecutors
        Naming the first such folder. Remote folders are not walked (one store for every node).
    """
    path = location.local_path(folder)
    if path is None or not os.path.isdir(path):
        return
    for current, folders, files in os.walk(path):
        folders.sort()
        if "_SUCCESS" in files and not _holds_part_file(current):
            raise NotVisibleToExecutors(
                f"{current!r} was committed by Spark but holds no data file here: the executors wrote it to "
                f"a folder of the same name on their own disks.\n{SHARED_STORAGE_HINT}")



def _holds_part_file(folder: str) -> bool:
    """A ``part-`` file in ``folder`` or any folder below it."""
    return any(name.startswith("part-") for _, _, files in os.walk(folder) for name in files)
