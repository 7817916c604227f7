"""Bounded wait for a cluster session's first executor.

Spark itself waits forever: when executors cannot call back to the driver (it
advertises an address they cannot route to, typically loopback) or the cluster
has no room for them, a job just stays pending. :func:`wait_for_executors` runs
one tiny JVM-only job and gives it a deadline, so a run that cannot work fails in
bounded time with the likely cause, instead of hanging.
"""

from __future__ import annotations

import time
import uuid

from fruits.spark.jobs import job_description
from fruits.spark.placement import is_loopback, master_endpoint


class ExecutorsUnavailable(RuntimeError):
    """No executor ran a task within the wait; the message names the likely cause."""


def registered_executors(spark) -> int:
    """Executors registered with the driver (the driver's own block manager not counted)."""
    return max(spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1, 0)


def wait_for_executors(spark, *, timeout: float, poll: float = 0.5) -> int:
    """Return once an executor has run a task; otherwise stop ``spark`` and raise.

    A one-task job (``spark.range(1).count()``, no Python worker involved) is
    submitted in a background thread: it needs an executor that registered with the
    driver, so it also makes a dynamically allocated cluster request one.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        A session on a cluster master.
    timeout : float
        Seconds to wait.
    poll : float
        Seconds between checks.

    Returns
    -------
    int
        Executors registered when the task had run.

    Raises
    ------
    ValueError
        ``timeout`` or ``poll`` not positive.
    ExecutorsUnavailable
        The task did not run within ``timeout``, or the cluster ended the
        application; the session is stopped first.
    """
    if not timeout > 0 or not poll > 0:
        raise ValueError(f"timeout and poll must be positive seconds, got timeout={timeout!r}, poll={poll!r}")
    from pyspark import InheritableThread

    sc = spark.sparkContext
    group = f"fruits-executor-check-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, object] = {}

    def probe() -> None:
        try:
            sc.setJobGroup(group, "fruits: wait for a first executor", interruptOnCancel=True)
            spark.range(0, 1, 1, 1).count()
            outcome["ran"] = True
        except Exception as exc:  # reported below with the cause
            outcome["error"] = exc

    thread = InheritableThread(target=probe, daemon=True)
    started = time.monotonic()
    thread.start()
    while thread.is_alive() and time.monotonic() - started < timeout and not sc._jsc.sc().isStopped():
        thread.join(poll)
    if outcome.get("ran"):
        return registered_executors(spark)
    waited = time.monotonic() - started
    message = _diagnosis(spark, waited, stopped=sc._jsc.sc().isStopped(), error=outcome.get("error"))
    try:
        sc.cancelJobGroup(group)
    except Exception:  # the context may already be gone
        pass
    spark.stop()
    thread.join(10)
    raise ExecutorsUnavailable(message)


def _diagnosis(spark, waited: float, *, stopped: bool, error: object) -> str:
    conf = spark.sparkContext.getConf()
    master = conf.get("spark.master", "?")
    host = conf.get("spark.driver.host", "?")
    port = conf.get("spark.driver.port", "?")
    try:
        registered = registered_executors(spark)
    except Exception:
        registered = 0
    lines = [f"no executor ran a task within {waited:.0f} s on master {master} "
             f"({registered} executor(s) registered); likely causes:"]
    endpoint = master_endpoint(master)
    if is_loopback(host) and not (endpoint and is_loopback(endpoint[0])):
        lines.append(f"- the driver advertises the loopback address {host}:{port} (spark.driver.host), which "
                     "executors on other hosts cannot reach: unset SPARK_LOCAL_IP / spark.driver.host, or set "
                     "spark.driver.host to an address of this machine that the workers can route to;")
    else:
        lines.append(f"- executors cannot connect back to the driver at {host}:{port} (spark.driver.host): "
                     "an address the workers cannot route to, or a firewall / security group closing the "
                     "driver's ports;")
    resources = ", ".join(f"{key}={conf.get(key)}" for key in (
        "spark.executor.cores", "spark.executor.memory", "spark.executor.memoryOverhead",
        "spark.executor.pyspark.memory", "spark.executor.instances") if conf.contains(key))
    lines.append("- the cluster has no free resources for an executor"
                 + (f" ({resources})" if resources else "")
                 + ": check the master's web UI or YARN's ResourceManager;")
    if stopped:
        lines.append("- the cluster manager ended the application (master unreachable, or the application "
                     "was removed after executors kept failing).")
    if error is not None:
        lines.append(f"The probe job failed with: {str(error).splitlines()[0][:300]}")
    lines.append("Executor logs (the worker's work dir, or `yarn logs -applicationId ...`) show the exact error; "
                 "FRUITS_EXECUTOR_WAIT_SECONDS sets how long to wait.")
    return "\n".join(lines)



def python_worker_memory(spark, *, tasks: int | None = None) -> list[dict]:
    """Peak address space and resident memory of every Python worker of the executors, in bytes.

    Runs one small job (``tasks`` tasks, default one per executor core) whose tasks read
    ``/proc`` on their own host (Linux): the executor JVM that started the task's Python
    daemon, every daemon that JVM started (one per kind of Python work: RDD functions,
    each SQL function's environment), and every worker those daemons forked. ``VmPeak`` and ``VmHWM`` are the
    kernel's own high-water marks, so nothing between polls is missed; ``VmPeak`` is
    what ``spark.executor.pyspark.memory`` caps (``RLIMIT_AS`` per worker). Run it while
    the workers that did the work are still alive (``spark.python.worker.reuse``, the
    project's setting, keeps them until the session stops).

    Returns
    -------
    list of dict
        ``host``, ``pid``, ``vm_peak``, ``vm_hwm``, ``rlimit_as`` (``None``: unlimited),
        one per worker process, daemons excluded.
    """
    sc = spark.sparkContext
    tasks = tasks or sc.defaultParallelism

    def measure(_):
        import os
        import resource
        import socket

        def status(pid):
            fields = {}
            try:
                with open(f"/proc/{pid}/status") as handle:
                    for line in handle:
                        name, _, value = line.partition(":")
                        fields[name] = value.split()
            except OSError:
                return None
            return fields

        # The executor JVM starts one daemon per kind of Python work (RDD functions, each
        # SQL function's environment): every daemon of this JVM, and every worker of theirs.
        table = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = status(entry)
                if fields:
                    table[int(entry)] = fields
        executor = int(table.get(os.getppid(), {}).get("PPid", ["0"])[0])
        daemons = {pid for pid, fields in table.items() if fields.get("PPid", ["0"])[0] == str(executor)}
        children = [(pid, fields) for pid, fields in table.items() if int(fields.get("PPid", ["0"])[0]) in daemons]
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        for pid, fields in children:
            yield {"host": socket.gethostname(), "daemon": int(fields["PPid"][0]), "pid": pid,
                   "vm_peak": int(fields.get("VmPeak", ["0"])[0]) * 1024,
                   "vm_hwm": int(fields.get("VmHWM", ["0"])[0]) * 1024,
                   "rlimit_as": None if limit == resource.RLIM_INFINITY else limit}

    with job_description(spark, "fruits: Python workers' peak memory"):
        found = sc.parallelize(range(tasks), tasks).mapPartitions(measure).collect()
    return sorted({(row["host"], row["daemon"], row["pid"]): row for row in found}.values(),
                  key=lambda row: (row["host"], row["pid"]))
