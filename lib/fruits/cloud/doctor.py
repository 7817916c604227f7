"""``fruits emr doctor``: one short check of a live cluster, through its Livy, with a verdict per line.

A cluster can start and still be unable to run the notebook: the bootstrap installed
another version, an executor's Python lacks the engine, the instance role cannot write
the bucket. The doctor opens one small Livy session (as the notebook would), runs
:func:`driver_checks` on its driver — which reaches the executors with one tiny job —
and prints ``PASS`` or ``FAIL`` for each check, then deletes the session.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any, Callable

from fruits import __version__
from fruits import params
from fruits.cloud.livy.rest import LivyClient, LivyError
from fruits.featurize.shapes import FEATURE_DIM, INPUT_SIZE
from fruits.spark.settings import EXECUTOR
from fruits.storage import location


def _per_worker_cap() -> str:
    """The notebook's Python worker cap (``RLIMIT_AS``): pyspark.memory / cores of its executors."""
    return f"{int(EXECUTOR['spark.executor.pyspark.memory'].rstrip('m')) // int(EXECUTOR['spark.executor.cores'])}m"


#: Marker of the line that carries the checks' results in the statement's output.
MARKER = "FRUITS-DOCTOR "
#: A small session: one core per executor and the notebook's Python worker cap (2432 MiB per
#: worker, from fruits.spark.settings), so it fits beside a running notebook session instead of
#: inheriting 9.5 GiB per worker.
SESSION = {"name": "fruits-doctor", "driverMemory": "2g", "executorMemory": EXECUTOR["spark.executor.memory"],
           "executorCores": 1, "numExecutors": 2,
           "conf": {"spark.executor.pyspark.memory": _per_worker_cap(),
                    "spark.executor.memoryOverhead": EXECUTOR["spark.executor.memoryOverhead"]}}


def _check(results: list[dict], name: str, action: Callable[[], Any]) -> Any:
    try:
        detail = action()
    except Exception as exc:  # noqa: BLE001 - every failure is a verdict, not a crash
        results.append({"check": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"})
        return None
    results.append({"check": name, "ok": True, "detail": str(detail)})
    return detail


def driver_checks(spark, bucket_uri: str, *, expected_version: str | None = None) -> list[dict]:
    """Run on the cluster's driver: Python, ``fruits``, executors, the engine, the bucket.

    Parameters
    ----------
    spark : SparkSession
        The Livy session's ``spark``.
    bucket_uri : str
        ``s3://BUCKET/PREFIX``: listed, then a probe object is written and removed under it.
    expected_version : str, optional
        The ``fruits`` version the checking machine has; a different one on the cluster fails.

    Returns
    -------
    list of dict
        ``{"check", "ok", "detail"}`` per check, in order.
    """
    import platform

    results: list[dict] = []

    def driver_python():
        if sys.version_info[:2] != (3, 11):
            raise RuntimeError(f"Python {platform.python_version()} at {sys.executable}; the project needs 3.11")
        return f"Python {platform.python_version()} at {sys.executable}"

    def driver_fruits():
        if expected_version and __version__ != expected_version:
            raise RuntimeError(f"fruits {__version__} on the cluster, {expected_version} here: "
                               "upload the new wheel and recreate the cluster")
        return f"fruits {__version__}"

    def driver_plotting():
        import matplotlib

        return f"matplotlib {matplotlib.__version__} (for %matplot)"

    _check(results, "driver: Python 3.11", driver_python)
    _check(results, "driver: fruits installed", driver_fruits)
    _check(results, "driver: matplotlib", driver_plotting)
    _check(results, "executors: Python and fruits", lambda: _executor_report(spark, __version__))
    _check(results, f"executors: the default engine ({params.DEFAULT_ENGINE}) loads and runs", lambda: _engine_runs(spark))
    _check(results, f"bucket: {bucket_uri} is readable", lambda: _readable(bucket_uri))
    _check(results, f"bucket: {bucket_uri} is writable", lambda: _writable(bucket_uri))
    return results


def _executor_report(spark, version: str) -> str:
    context = spark.sparkContext
    slots = max(2, context.defaultParallelism)

    def probe(_):
        import platform
        import socket
        import sys as worker_sys

        try:
            import fruits as worker_fruits
            found = worker_fruits.__version__
        except ImportError:
            found = "MISSING"
        return socket.gethostname(), platform.python_version(), worker_sys.executable, found

    seen = sorted(set(context.parallelize(range(slots), slots).map(probe).collect()))
    bad = [s for s in seen if s[3] != version or not s[1].startswith("3.11")]
    described = "; ".join(f"{host}: Python {python} ({exe}), fruits {found}" for host, python, exe, found in seen)
    if bad:
        raise RuntimeError(f"expected Python 3.11 and fruits {version} everywhere: {described}")
    return described


def _engine_runs(spark) -> str:
    import numpy as np

    from fruits import engines
    from fruits.featurize.batches import predictor_factory

    chosen = engines.get(params.DEFAULT_ENGINE)
    engine = chosen.prepare(chosen.resolve("random", allow_random=True), input_size=INPUT_SIZE)
    factory = predictor_factory(engine, spark.sparkContext.broadcast(engine.payload), threads=1)

    def run(_):
        predict = factory()
        return tuple(np.asarray(predict(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8))).shape)

    shapes = spark.sparkContext.parallelize([0], 1).map(run).collect()
    if shapes != [(1, FEATURE_DIM)]:
        raise RuntimeError(f"expected one {FEATURE_DIM}-wide feature vector, got shapes {shapes}")
    return f"1 image -> {FEATURE_DIM} features on an executor ({params.DEFAULT_ENGINE} engine)"


def _readable(bucket_uri: str) -> str:
    fs, path = location.filesystem(bucket_uri)
    bucket = path.split("/", 1)[0]
    fs.ls(bucket, refresh=True)
    return f"listed {bucket}"


def _writable(bucket_uri: str) -> str:
    probe = f"{bucket_uri.rstrip('/')}/doctor/probe-{uuid.uuid4().hex}"
    fs, path = location.filesystem(probe)
    fs.pipe_file(path, b"fruits doctor probe")
    if fs.cat_file(path) != b"fruits doctor probe":
        raise RuntimeError(f"{probe} read back differently")
    fs.rm_file(path)
    return f"wrote, read back and removed {probe}"


def statement_code(bucket_uri: str, expected_version: str) -> str:
    """What the doctor sends to Livy: runs even where ``fruits`` is missing, and says so."""
    return "\n".join([
        "import json as _json, sys as _sys",
        "try:",
        "    from fruits.cloud.doctor import driver_checks as _checks",
        f"    _found = _checks(spark, {bucket_uri!r}, expected_version={expected_version!r})",
        "except ImportError as _exc:",
        "    _found = [{'check': 'driver: fruits installed', 'ok': False,",
        "               'detail': f'{_exc} (Python {_sys.version.split()[0]} at {_sys.executable})'}]",
        f"print({MARKER!r} + _json.dumps(_found))",
    ])


def diagnose(livy_url: str, bucket_uri: str, *, startup_timeout: float = 600.0,
             check_timeout: float = 600.0) -> list[dict]:
    """Open a session at ``livy_url``, run the checks, delete the session; one dict per check."""

    client = LivyClient(livy_url)
    results: list[dict] = []
    try:
        client.ping()
    except LivyError as exc:
        return [{"check": f"Livy answers at {livy_url}", "ok": False, "detail": str(exc)}]
    results.append({"check": f"Livy answers at {livy_url}", "ok": True, "detail": "GET /sessions"})
    try:
        with client.session(SESSION, startup_timeout=startup_timeout) as session_id:
            results.append({"check": "Spark session through Livy", "ok": True, "detail": f"session {session_id}"})
            output = client.run(session_id, statement_code(bucket_uri, __version__), timeout=check_timeout)
    except LivyError as exc:
        return results + [{"check": "Spark session through Livy", "ok": False, "detail": str(exc)}]
    if output["status"] != "ok":
        return results + [{"check": "the checks ran on the driver", "ok": False,
                           "detail": f"{output.get('ename')}: {output.get('evalue')}"}]
    text = output["data"].get("text/plain", "")
    line = next((line for line in text.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        return results + [{"check": "the checks ran on the driver", "ok": False, "detail": text[-500:]}]
    return results + json.loads(line[len(MARKER):])


def print_verdicts(results: list[dict]) -> bool:
    """Print ``PASS``/``FAIL`` lines; True when every check passed."""
    for result in results:
        print(f"{'PASS' if result['ok'] else 'FAIL'}  {result['check']}: {result['detail']}", flush=True)
    passed = all(r["ok"] for r in results)
    print("All checks passed." if passed else "Some checks FAILED (see above).", flush=True)
    return passed
