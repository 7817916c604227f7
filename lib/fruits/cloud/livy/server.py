"""The Livy double's REST server: Livy's interactive-session endpoints over real PySpark processes.

A **test double** of Apache Livy 0.8 (see :mod:`fruits.cloud.livy`). Endpoints, status codes
and JSON shapes are those of Livy 0.8.0-incubating's REST API (``server/.../LivyServer.scala``,
``SessionServlet.scala``, ``InteractiveSessionServlet.scala``) that its clients call: sparkmagic
(``sparkmagic/livyclientlib/livyreliablehttpclient.py``) and pylivy (PyPI ``livy``:
``livy/client.py``, which asks ``GET /version`` before it creates a session or a statement):

=======================================================  ======  ====================================
request                                                  answer  what
=======================================================  ======  ====================================
``GET /version``                                         200     ``{"version", "user", "revision", "branch",
                                                                 "date", "url"}``
``GET /sessions?from=&size=``                            200     ``{"from", "total", "sessions"}``
``POST /sessions``                                       201     a new session (``state: starting``)
``GET /sessions/{id}``                                   200     the session; 404 if unknown
``GET /sessions/{id}/state``                             200     ``{"id", "state"}``
``DELETE /sessions/{id}``                                200     ``{"msg": "deleted"}`` once its process stopped
``GET /sessions/{id}/log?from=&size=``                   200     ``{"id", "from", "total", "log"}``
``GET /sessions/{id}/statements?from=&size=&order=``     200     ``{"total_statements", "statements"}``
``POST /sessions/{id}/statements``                       201     a new statement (``state: waiting``)
``GET /sessions/{id}/statements/{sid}``                  200     the statement with its ``output``
``POST /sessions/{id}/statements/{sid}/cancel``          200     ``{"msg": "canceled"}``
=======================================================  ======  ====================================

A session record has every field of Livy's ``SessionInfo`` (``HttpMessages.java``), its
``log`` the last 10 lines, as ``clientSessionView`` cuts it; the log endpoint's defaults are
Livy's (the last 100 lines). Session states are Livy's (``starting``, ``idle``, ``busy``,
``shutting_down``, ``dead``); statements go ``waiting`` -> ``running`` -> ``available`` (output
``status: ok`` or ``status: error``) or ``cancelling`` -> ``cancelled``, one at a time
per session, in order. Where Livy's behaviour is not a protocol matter, the double
chooses and says so: a session whose process dies becomes ``dead`` and its unfinished
statements end ``available`` with an error naming the lost session, so a client never
waits forever; heartbeats (``heartbeatTimeoutInSecond``) are recorded, not enforced.

It binds 127.0.0.1 only, records every request (:attr:`LivyDouble.requests`, and a
JSON-lines file when asked) and stops every session's process when it stops.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, urlparse

from fruits.spark.settings import LOCAL_MASTER

#: Session kinds the double runs (Livy also knows ``spark``, ``sparkr`` and ``sql``).
KINDS = {"pyspark"}
#: How many recent log lines a session record carries (Livy 0.8's ``clientSessionView``: 10).
LOG_TAIL = 10
#: Log lines ``GET /sessions/{id}/log`` answers when ``size`` is not given (Livy's ``serializeLogs``).
LOG_PAGE = 100
#: What ``GET /version`` answers. Livy 0.8 serves its build's ``livy-version-info.properties``
#: (``dev/livy-build-info.sh``: version, user, revision, branch, date, url) and ``<unknown>`` for
#: what is missing; the double has no Livy build, so only the version it imitates is known.
VERSION = {"version": "0.8.0-incubating", "user": "<unknown>", "revision": "<unknown>",
           "branch": "<unknown>", "date": "<unknown>", "url": "<unknown>"}


@dataclass
class Statement:
    """One statement of a session, in Livy's JSON shape."""

    id: int
    code: str
    state: str = "waiting"
    output: dict | None = None
    started: int = 0
    completed: int = 0

    def record(self) -> dict:
        return {"id": self.id, "code": self.code, "state": self.state, "output": self.output,
                "progress": 1.0 if self.state in ("available", "cancelled") else 0.0,
                "started": self.started, "completed": self.completed}


@dataclass
class Session:
    """One interactive session: a PySpark process running :mod:`fruits.cloud.livy.repl`."""

    id: int
    body: dict
    log_path: Path
    state: str = "starting"
    app_id: str | None = None
    statements: list[Statement] = field(default_factory=list)
    process: subprocess.Popen | None = None
    running: Statement | None = None
    deleted: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)

    def record(self) -> dict:
        """Livy 0.8's ``SessionInfo`` JSON: what ``POST`` asked for, with Livy's zero/empty defaults.

        Livy 0.8 passes ``proxyUser`` where ``SessionInfo`` expects ``ttl``
        (``InteractiveSessionServlet.clientSessionView``); the double answers the same.
        """
        body = self.body
        return {"id": self.id, "name": body.get("name"), "appId": self.app_id, "owner": None,
                "proxyUser": body.get("proxyUser"), "state": self.state, "kind": body.get("kind", "pyspark"),
                "appInfo": {"driverLogUrl": None, "sparkUiUrl": None}, "log": self.log_lines()[-LOG_TAIL:],
                "ttl": body.get("proxyUser"), "driverMemory": body.get("driverMemory"),
                "driverCores": body.get("driverCores") or 0, "executorMemory": body.get("executorMemory"),
                "executorCores": body.get("executorCores") or 0, "conf": body.get("conf") or {},
                "archives": body.get("archives") or [], "files": body.get("files") or [],
                "heartbeatTimeoutInSecond": body.get("heartbeatTimeoutInSecond") or 0,
                "jars": body.get("jars") or [], "numExecutors": body.get("numExecutors") or 0,
                "pyFiles": body.get("pyFiles") or [], "queue": body.get("queue")}

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []


class LivyDouble:
    """A Livy-compatible server on 127.0.0.1; ``with LivyDouble() as livy: livy.url``.

    Parameters
    ----------
    port : int
        0 picks a free port.
    master : str
        Spark master of every session's driver (``local[2]``, ``spark://HOST:PORT``).
    work_dir : str or Path, optional
        Where session logs go (a temporary folder by default).
    request_log : str or Path, optional
        Also append every request as a JSON line to this file.
    startup_timeout : float
        Seconds a session may take to start Spark before it is declared dead.
    environment : mapping, optional
        Variables every session's process gets on top of this process's.
    """

    def __init__(self, *, port: int = 0, master: str = LOCAL_MASTER, work_dir: str | Path | None = None,
                 request_log: str | Path | None = None, startup_timeout: float = 300.0,
                 environment: Mapping[str, str] | None = None):
        import tempfile

        self.master = master
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="livy-double-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.request_log = Path(request_log) if request_log else None
        self.startup_timeout = startup_timeout
        #: Variables every session's process gets on top of this process's (e.g. the S3 endpoint of
        #: a local stand-in bucket, so a session never reaches a real AWS with this host's credentials).
        self.environment = dict(environment or {})
        #: Every request received: ``{"method", "path", "body"}`` in arrival order.
        self.requests: list[dict] = []
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LivyDouble":
        self._thread = threading.Thread(target=self._server.serve_forever, name="livy-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and stop every session's process."""
        self._server.shutdown()
        self._server.server_close()
        for session in list(self.sessions.values()):
            self._stop_session(session)

    def __enter__(self) -> "LivyDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (``fruits livy``)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()
            for session in list(self.sessions.values()):
                self._stop_session(session)

    # --- what the handler calls -------------------------------------------------

    def remember(self, method: str, path: str, body: Any) -> None:
        entry = {"method": method, "path": path, "body": body}
        with self._lock:
            self.requests.append(entry)
            if self.request_log:
                with open(self.request_log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def create_session(self, body: dict) -> Session:
        kind = body.get("kind", "pyspark")
        if kind not in KINDS:
            raise ValueError(f"the Livy double runs only kind 'pyspark' sessions, not {kind!r}")
        session_id = next(self._ids)
        session = Session(id=session_id, body=body, log_path=self.work_dir / f"session-{session_id}.log")
        with self._lock:
            self.sessions[session_id] = session
        env = {**os.environ, **self.environment, "LIVY_SESSION_ID": str(session_id), "LIVY_DOUBLE_MASTER": self.master,
               "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        log = open(session.log_path, "ab")
        session.process = subprocess.Popen(
            [sys.executable, "-m", "fruits.cloud.livy.repl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log, env=env, cwd=os.getcwd(), start_new_session=True)
        log.close()
        session.process.stdin.write((json.dumps(body) + "\n").encode())
        session.process.stdin.flush()
        threading.Thread(target=self._listen, args=(session,), daemon=True).start()
        threading.Thread(target=self._watch_startup, args=(session,), daemon=True).start()
        return session

    def add_statement(self, session: Session, code: str) -> Statement:
        with session.lock:
            if session.state in ("dead", "error", "killed", "shutting_down"):
                raise SessionGone(f"session {session.id} is {session.state}")
            statement = Statement(id=len(session.statements), code=code)
            session.statements.append(statement)
            self._dispatch(session)
            return statement

    def cancel(self, session: Session, statement: Statement) -> None:
        with session.lock:
            if statement.state == "waiting":
                statement.state, statement.completed = "cancelled", _now()
            elif statement.state == "running":
                statement.state = "cancelling"
                os.kill(session.process.pid, signal.SIGINT)  # PySpark cancels the jobs, the REPL stops the code

    def delete_session(self, session: Session) -> None:
        """Stop the session's process, then forget the session, as Livy's ``DELETE`` does before it answers.

        (``SessionServlet``: ``Await.ready(sessionManager.delete(...))``; the session is
        ``shutting_down`` meanwhile, then unknown: 404.)
        """
        self._stop_session(session)
        with self._lock:
            self.sessions.pop(session.id, None)

    def kill_driver(self, session_id: int) -> None:
        """Kill a session's driver and everything it started, as a driver OOM or a YARN preemption would."""
        self._kill(self.sessions[session_id])

    # --- inside ---------------------------------------------------------------

    def _dispatch(self, session: Session) -> None:
        """Send the next waiting statement if the session is free (callers hold ``session.lock``)."""
        if session.state != "idle" or session.running is not None:
            return
        waiting = next((s for s in session.statements if s.state == "waiting"), None)
        if waiting is None:
            return
        waiting.state, waiting.started = "running", _now()
        session.running, session.state = waiting, "busy"
        try:
            session.process.stdin.write((json.dumps({"id": waiting.id, "code": waiting.code}) + "\n").encode())
            session.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._lost(session)

    def _listen(self, session: Session) -> None:
        for raw in session.process.stdout:
            message = json.loads(raw)
            with session.lock:
                event = message["event"]
                if event == "ready":
                    session.app_id, session.state = message["appId"], "idle"
                elif event == "failed":
                    session.state = "dead"
                    with open(session.log_path, "a", encoding="utf-8") as handle:
                        handle.write(message["error"])
                    self._end_unfinished(session, f"session {session.id} could not start Spark")
                elif event in ("result", "cancelled"):
                    statement = session.statements[message["id"]]
                    if event == "result":
                        statement.output = {**message["output"], "execution_count": statement.id}
                        statement.state = "available"
                    else:
                        statement.state = "cancelled"
                    statement.completed = _now()
                    session.running, session.state = None, "idle"
                self._dispatch(session)
        code = session.process.wait()
        with session.lock:
            if not session.deleted and session.state not in ("dead", "error"):
                self._lost(session, code)

    def _lost(self, session: Session, code: int | None = None) -> None:
        session.state = "dead"
        with open(session.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"\nLivy double: session {session.id}'s process exited (code {code}).\n")
        self._end_unfinished(session, f"session {session.id} is dead: its Spark driver process exited "
                                      f"(code {code}) while running this statement")

    def _end_unfinished(self, session: Session, why: str) -> None:
        for statement in session.statements:
            if statement.state in ("waiting", "running", "cancelling"):
                statement.state, statement.completed = "available", _now()
                statement.output = {"status": "error", "execution_count": statement.id, "ename": "SessionLost",
                                    "evalue": why, "traceback": []}
        session.running = None

    def _watch_startup(self, session: Session) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if session.state != "starting":
                return
            time.sleep(0.5)
        with session.lock:
            if session.state == "starting":
                session.state = "dead"
                with open(session.log_path, "a", encoding="utf-8") as handle:
                    handle.write(f"\nLivy double: Spark did not start within {self.startup_timeout} s.\n")
        self._kill(session)

    def _stop_session(self, session: Session) -> None:
        with session.lock:
            session.deleted = True
            if session.state not in ("dead", "error"):
                session.state = "shutting_down"
        process = session.process
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(b'{"shutdown": true}\n')
            process.stdin.flush()
            process.wait(timeout=30)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self._kill(session)

    @staticmethod
    def _kill(session: Session) -> None:
        process = session.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the driver and its JVM and Python workers
            except ProcessLookupError:
                pass
            process.wait(timeout=30)


class SessionGone(Exception):
    """A statement was posted to a session that is no longer running."""


def _now() -> int:
    return int(time.time() * 1000)


_ROUTES = [
    ("GET", re.compile(r"^/version/?$"), "get_version"),
    ("GET", re.compile(r"^/sessions/?$"), "list_sessions"),
    ("POST", re.compile(r"^/sessions/?$"), "post_session"),
    ("GET", re.compile(r"^/sessions/(\d+)/?$"), "get_session"),
    ("DELETE", re.compile(r"^/sessions/(\d+)/?$"), "delete_session"),
    ("GET", re.compile(r"^/sessions/(\d+)/log/?$"), "get_log"),
    ("GET", re.compile(r"^/sessions/(\d+)/state/?$"), "get_state"),
    ("GET", re.compile(r"^/sessions/(\d+)/statements/?$"), "list_statements"),
    ("POST", re.compile(r"^/sessions/(\d+)/statements/?$"), "post_statement"),
    ("GET", re.compile(r"^/sessions/(\d+)/statements/(\d+)/?$"), "get_statement"),
    ("POST", re.compile(r"^/sessions/(\d+)/statements/(\d+)/cancel/?$"), "cancel_statement"),
]


def _number(query: dict, name: str, default: int, *, low: int | None = 0) -> int:
    """An integer query parameter (``?from=3``); a bad one is a 400 naming it, as Livy's ``toInt`` fails."""
    text = query.get(name, [None])[0]
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"query parameter {name!r} must be an integer, got {text!r}") from None
    if low is not None and value < low:
        raise ValueError(f"query parameter {name!r} must be at least {low}, got {value}")
    return value


def _handler_for(livy: LivyDouble):
    class Handler(BaseHTTPRequestHandler):
        server_version = "LivyDouble/0.8"

        def log_message(self, *args) -> None:  # requests are recorded, not printed
            pass

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def _route(self, method: str) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except json.JSONDecodeError:
                livy.remember(method, parsed.path, raw.decode(errors="replace"))
                return self._send(400, {"msg": "request body is not JSON"})
            livy.remember(method, parsed.path, body)
            for verb, pattern, name in _ROUTES:
                match = pattern.match(parsed.path)
                if verb == method and match:
                    try:
                        status, answer = getattr(self, name)(*map(int, match.groups()), body=body,
                                                             query=parse_qs(parsed.query))
                    except LookupError as exc:
                        status, answer = 404, {"msg": str(exc)}
                    except ValueError as exc:
                        status, answer = 400, {"msg": str(exc)}
                    except SessionGone as exc:
                        status, answer = 400, {"msg": str(exc)}
                    return self._send(status, answer)
            self._send(404, {"msg": f"no route for {method} {parsed.path}"})

        def _send(self, status: int, answer: dict) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        @staticmethod
        def _session(session_id: int) -> Session:
            try:
                return livy.sessions[session_id]
            except KeyError:
                raise LookupError(f"Session '{session_id}' not found.") from None

        def get_version(self, *, body, query):
            return 200, dict(VERSION)

        def list_sessions(self, *, body, query):
            sessions = list(livy.sessions.values())
            start, size = _number(query, "from", 0), _number(query, "size", 100)
            return 200, {"from": start, "total": len(sessions),
                         "sessions": [s.record() for s in sessions[start:start + size]]}

        def post_session(self, *, body, query):
            return 201, livy.create_session(body or {}).record()

        def get_session(self, session_id, *, body, query):
            return 200, self._session(session_id).record()

        def get_state(self, session_id, *, body, query):
            session = self._session(session_id)
            return 200, {"id": session.id, "state": session.state}

        def delete_session(self, session_id, *, body, query):
            livy.delete_session(self._session(session_id))
            return 200, {"msg": "deleted"}

        def get_log(self, session_id, *, body, query):
            """Livy's ``serializeLogs``: ``size`` 100 by default (negative: all), ``from`` the last ``size``."""
            lines = self._session(session_id).log_lines()
            size = _number(query, "size", LOG_PAGE, low=None)
            size = len(lines) if size < 0 else size
            start = _number(query, "from", -1, low=None)
            start = max(0, len(lines) - size) if start < 0 else start
            return 200, {"id": session_id, "from": start, "total": len(lines), "log": lines[start:start + size]}

        def list_statements(self, session_id, *, body, query):
            statements = list(self._session(session_id).statements)
            if query.get("order", [""])[0].strip().lower() == "desc":
                statements.reverse()
            start, size = _number(query, "from", 0), _number(query, "size", len(statements))
            return 200, {"total_statements": len(statements),
                         "statements": [s.record() for s in statements[start:start + size]]}

        def post_statement(self, session_id, *, body, query):
            if not body or "code" not in body:
                raise ValueError("a statement needs 'code'")
            kind = body.get("kind")
            if kind not in (None, "pyspark"):  # Livy would start that language's interpreter
                raise ValueError(f"the Livy double runs only Python statements, not kind {kind!r}")
            return 201, livy.add_statement(self._session(session_id), body["code"]).record()

        def get_statement(self, session_id, statement_id, *, body, query):
            session = self._session(session_id)
            if statement_id >= len(session.statements):
                raise LookupError(f"Statement '{statement_id}' not found in session {session_id}.")
            return 200, session.statements[statement_id].record()

        def cancel_statement(self, session_id, statement_id, *, body, query):
            session = self._session(session_id)
            if statement_id >= len(session.statements):
                raise LookupError(f"Statement '{statement_id}' not found in session {session_id}.")
            livy.cancel(session, session.statements[statement_id])
            return 200, {"msg": "canceled"}

    return Handler
