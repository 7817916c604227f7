"""The session process of the Livy double: one PySpark driver running statements as Livy's Python REPL does.

Started by :mod:`fruits.cloud.livy.server` as ``python -m fruits.cloud.livy.repl``. It reads the
``POST /sessions`` body as its first input line, builds a ``SparkSession`` from it and
then executes one statement per input line, answering one JSON line each on a channel
of its own (a duplicate of the original stdout; everything the JVM or C libraries write
to file descriptor 1 goes to the session log instead, as a real driver's stdout does).

Statement semantics follow Livy's ``repl/src/main/resources/fake_shell.py`` (Livy
0.8.0-incubating, the version EMR 7 ships), because sparkmagic and the notebook rely on
them:

- the code is compiled as a module; every top-level statement but the last runs in
  ``exec`` mode, the last in ``single`` mode, so a final expression's value is printed;
- code that does not parse is split into chunks of ordinary lines and lines starting
  with ``%``; such a line is a magic: ``%matplot NAME`` answers ``image/png`` (base64)
  of ``NAME.gcf()``, ``%json NAME`` answers ``application/json``, ``%table NAME``
  answers ``application/vnd.livy.table.v1+json``;
- what the code printed (stdout, then stderr) becomes ``text/plain``, which is kept when
  non-empty or when nothing else was answered;
- an exception answers ``status: error`` with ``ename``, ``evalue`` and the traceback cut
  as ``execute_reply_error`` cuts it: the header line, then the frames below the code's own
  top-level frame (``File "<stdin>", ..., in <module>``);
- the code sees ``spark``, ``sc`` and ``sqlContext``, as in Livy's REPL.

One deliberate difference: a failing magic answers ``status: error``; Livy's REPL
returns its error record as if it were data (``status: ok``), which sparkmagic then
cannot display.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import sys
import traceback
import warnings
from typing import Any, Callable

from fruits.spark import jvm_archive
from fruits.spark.placement import driver_settings, set_environ
from fruits.spark.session import DRIVER_JAVA_OPTIONS, SPARK_SETTINGS
from fruits.spark.settings import LOCAL_MASTER

#: ``POST /sessions`` fields and the Spark settings Livy turns them into.
SESSION_SETTINGS = {
    "driverMemory": "spark.driver.memory",
    "driverCores": "spark.driver.cores",
    "executorMemory": "spark.executor.memory",
    "executorCores": "spark.executor.cores",
    "numExecutors": "spark.executor.instances",
    "queue": "spark.yarn.queue",
    "name": "spark.app.name",
}
#: List-valued ``POST /sessions`` fields and their comma-joined Spark settings.
SESSION_LISTS = {"jars": "spark.jars", "pyFiles": "spark.submit.pyFiles", "files": "spark.files",
                 "archives": "spark.archives"}


def spark_settings(body: dict[str, Any]) -> dict[str, str]:
    """The Spark settings a Livy ``POST /sessions`` body asks for, ``conf`` last (it wins, as in Livy).

    Examples
    --------
    >>> spark_settings({"driverMemory": "2g", "numExecutors": 3, "conf": {"spark.x": "1"}})
    {'spark.driver.memory': '2g', 'spark.executor.instances': '3', 'spark.x': '1'}
    """
    settings = {key: str(body[field]) for field, key in SESSION_SETTINGS.items() if body.get(field) is not None}
    settings.update({key: ",".join(body[field]) for field, key in SESSION_LISTS.items() if body.get(field)})
    settings.update({str(key): str(value) for key, value in (body.get("conf") or {}).items()})
    return settings


class MagicError(Exception):
    """A magic line that names no known magic or fails."""


def _magic_matplot(name: str, scope: dict) -> dict:
    figure = scope[name].gcf()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return {"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": ""}


def _magic_json(name: str, scope: dict) -> dict:
    return {"application/json": scope[name]}


def _magic_table(name: str, scope: dict) -> dict:
    rows = scope[name]
    rows = rows if isinstance(rows, (list, tuple)) else [rows]
    headers: dict[Any, dict] = {}
    data = []
    for row in rows:
        if type(row).__name__ == "Row":
            row = row.asDict()
        if not isinstance(row, (list, tuple, dict)):
            row = [row]
        items = sorted(row.items()) if isinstance(row, dict) else enumerate(row)
        cells = []
        for key, value in items:
            kind = {bool: "BOOLEAN_TYPE", int: "BIGINT_TYPE", float: "DOUBLE_TYPE",
                    type(None): "NULL_TYPE"}.get(type(value), "STRING_TYPE")
            headers.setdefault(key, {"name": str(key), "type": kind})
            cells.append(value if kind != "STRING_TYPE" else str(value))
        data.append(cells)
    return {"application/vnd.livy.table.v1+json": {"headers": [headers[k] for k in sorted(headers, key=str)],
                                                    "data": data}}


MAGICS: dict[str, Callable[[str, dict], dict]] = {
    "matplot": _magic_matplot, "json": _magic_json, "table": _magic_table}


def _chunks(code: str) -> list[tuple[str, str]]:
    """``("python", source)`` and ``("magic", line)`` pieces, as Livy's ``parse_code_into_nodes`` cuts them."""
    try:
        compile(code, "<stdin>", "exec", ast.PyCF_ONLY_AST, True)
        return [("python", code)]
    except SyntaxError:
        pieces, ordinary = [], []
        for line in code.rstrip().split("\n"):
            if line.startswith("%"):
                if ordinary:
                    pieces.append(("python", "\n".join(ordinary)))
                    ordinary = []
                pieces.append(("magic", line))
            else:
                ordinary.append(line)
        if ordinary:
            pieces.append(("python", "\n".join(ordinary)))
        for kind, source in pieces:  # a real syntax error is reported before anything runs
            if kind == "python":
                compile(source, "<stdin>", "exec", ast.PyCF_ONLY_AST, True)
        return pieces


def _run_python(source: str, scope: dict) -> None:
    tree = compile(source, "<stdin>", "exec", ast.PyCF_ONLY_AST, True)
    for node in tree.body[:-1]:
        exec(compile(ast.Module([node], []), "<stdin>", "exec"), scope)
    for node in tree.body[-1:]:
        exec(compile(ast.Interactive([node]), "<stdin>", "single"), scope)


def _run_magic(line: str, scope: dict) -> dict:
    name, _, argument = line[1:].partition(" ")
    if name not in MAGICS:
        raise MagicError(f"unknown magic command '{name}'" if name else "magic command not specified")
    return MAGICS[name](argument.strip(), scope)


#: The code's top-level frame in a traceback (Livy's ``TOP_FRAME_REGEX``).
TOP_FRAME = re.compile(r'\s*File "<stdin>".*in <module>')


def _error(exc: BaseException, *, with_traceback: bool = True) -> dict:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__ if with_traceback else None, chain=False)
    # As Livy's execute_reply_error: keep the header, drop every frame down to the code's top-level one.
    for index, line in enumerate(lines):
        if TOP_FRAME.match(line):
            lines = lines[:1] + lines[index + 1:]
            break
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": lines}


def execute(code: str, scope: dict) -> dict:
    """Run one statement's code in ``scope`` and return Livy's ``output`` record (without ``execution_count``).

    Examples
    --------
    >>> scope = {}
    >>> execute("x = 20\\nx + 22", scope)
    {'status': 'ok', 'data': {'text/plain': '42'}}
    >>> execute("print('a')\\n%json x", scope)["data"]
    {'application/json': 20, 'text/plain': 'a'}
    >>> execute("1/0", scope)["ename"]
    'ZeroDivisionError'
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    result: dict = {}
    try:
        try:
            pieces = _chunks(code)
        except SyntaxError as exc:
            return _error(exc, with_traceback=False)
        try:
            for kind, source in pieces:
                if kind == "python":
                    _run_python(source, scope)
                else:
                    result = _run_magic(source, scope)
        except KeyboardInterrupt:
            raise
        except MagicError as exc:
            return _error(exc, with_traceback=False)
        except BaseException as exc:  # the user's exception, SystemExit included, is reported, not fatal
            return _error(exc)
        printed = sys.stdout.getvalue() + sys.stderr.getvalue()
    finally:
        sys.stdout, sys.stderr = saved
    text = (result.pop("text/plain", "") + printed).rstrip()
    if text or not result:
        result["text/plain"] = text
    return {"status": "ok", "data": result}


def build_spark(body: dict[str, Any], master: str):
    """The session's ``SparkSession``: the double's master, the body's settings, the project's defaults."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master)
    requested = spark_settings(body)
    # Where the driver runs decides its address (loopback only for local masters): one rule, the library's.
    placement = driver_settings(master, user_conf=requested)
    set_environ(placement.environ)  # this process is the driver: set them for good
    # Like EMR's spark-defaults (spark.pyspark.python), the workers run the driver's interpreter.
    python = {"spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable}
    settings = {**SPARK_SETTINGS, **python, "spark.app.name": f"livy-session-{os.environ.get('LIVY_SESSION_ID', '0')}",
                "spark.ui.enabled": "false", **placement.conf, **requested}
    # Livy starts drivers with spark-submit, whose PythonRunner turns spark.pyspark.python
    # into the driver's PYSPARK_PYTHON, the interpreter PySpark then asks executors to run.
    os.environ["PYSPARK_PYTHON"] = settings["spark.pyspark.python"]
    # The double's drivers map the class archive `make env` recorded, as local sessions do
    # (fruits.spark.jvm_archive): each starts 1-4 s sooner. A JVM option only; EMR's Livy
    # starts its drivers with the cluster's own.
    java = jvm_archive.java_options(settings.get(DRIVER_JAVA_OPTIONS, ""))
    if java:
        settings[DRIVER_JAVA_OPTIONS] = java
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def main() -> int:
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # the JVM's and C libraries' stdout go to the session log from now on
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")

    body = json.loads(sys.stdin.readline())
    try:
        spark = build_spark(body, os.environ.get("LIVY_DOUBLE_MASTER", LOCAL_MASTER))
    except BaseException as exc:  # noqa: BLE001 - reported to the server, which marks the session dead
        reply({"event": "failed", "error": "".join(traceback.format_exception(exc))})
        return 1
    with warnings.catch_warnings():  # SQLContext is deprecated; Livy's REPL still defines it
        warnings.simplefilter("ignore", FutureWarning)
        from pyspark.sql import SQLContext

        sql_context = SQLContext(spark.sparkContext, spark)
    scope = {"__name__": "__main__", "spark": spark, "sc": spark.sparkContext, "sqlContext": sql_context}
    reply({"event": "ready", "appId": spark.sparkContext.applicationId})
    while True:
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:  # a cancel that arrived between statements
            continue
        if not line:
            break
        request = json.loads(line)
        if request.get("shutdown"):
            break
        try:
            output = execute(request["code"], scope)
        except KeyboardInterrupt:
            reply({"event": "cancelled", "id": request["id"]})
            continue
        reply({"event": "result", "id": request["id"], "output": output})
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
