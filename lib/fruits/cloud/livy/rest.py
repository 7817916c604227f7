"""A small Livy REST client with bounded waits, for short checks (``fruits emr doctor``).

Notebook runs go through sparkmagic; a health check needs less and must never hang:
every wait here has a deadline, and the session is deleted whatever happens.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

#: Livy session states after which a session will never become idle.
FINAL_STATES = {"dead", "error", "killed", "success", "shutting_down"}


class LivyError(RuntimeError):
    """Livy refused, a session died, or a wait ran out of time."""


class LivyClient:
    """Talk to the Livy server at ``url`` (e.g. ``http://localhost:8998`` through a tunnel)."""

    def __init__(self, url: str, *, request_timeout: float = 30.0):
        import requests

        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.request_timeout = request_timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        import requests

        try:
            answer = self.http.request(method, self.url + path, json=body, timeout=self.request_timeout)
        except requests.RequestException as exc:
            raise LivyError(f"no answer from Livy at {self.url} ({type(exc).__name__})") from exc
        if answer.status_code >= 400:
            raise LivyError(f"Livy answered {answer.status_code} to {method} {path}: {answer.text[:300]}")
        return answer.json()

    def ping(self) -> None:
        """Raise :class:`LivyError` unless ``GET /sessions`` answers."""
        self._call("GET", "/sessions")

    @contextmanager
    def session(self, body: dict, *, startup_timeout: float = 600.0) -> Iterator[int]:
        """A new session, idle when entered, deleted when left."""
        session_id = self._call("POST", "/sessions", {"kind": "pyspark", **body})["id"]
        try:
            self._wait(f"/sessions/{session_id}", until={"idle"}, timeout=startup_timeout,
                       what=f"session {session_id} to start")
            yield session_id
        finally:
            try:
                self._call("DELETE", f"/sessions/{session_id}")
            except LivyError:
                pass

    def run(self, session_id: int, code: str, *, timeout: float = 600.0) -> dict:
        """Run ``code`` and return the statement's ``output`` (``status`` ``ok`` or ``error``)."""
        statement = self._call("POST", f"/sessions/{session_id}/statements", {"code": code})
        done = self._wait(f"/sessions/{session_id}/statements/{statement['id']}",
                          until={"available", "error", "cancelled"}, timeout=timeout,
                          what=f"statement {statement['id']} of session {session_id}",
                          session=f"/sessions/{session_id}")
        if done["state"] == "cancelled" or done.get("output") is None:
            raise LivyError(f"statement {statement['id']} ended {done['state']} without output")
        return done["output"]

    def _wait(self, path: str, *, until: set[str], timeout: float, what: str, session: str | None = None) -> dict:
        deadline = time.monotonic() + timeout
        pause = 0.2
        while True:
            record = self._call("GET", path)
            if record["state"] in until:
                return record
            watched = record if session is None else self._call("GET", session)
            if watched["state"] in FINAL_STATES:
                log = "\n".join(watched.get("log") or [])[-2000:]
                raise LivyError(f"Livy {session or path} is {watched['state']} while waiting for {what}\n{log}")
            if time.monotonic() > deadline:
                raise LivyError(f"timed out after {timeout:.0f} s waiting for {what} (state {record['state']})")
            time.sleep(pause)
            pause = min(pause * 1.5, 3.0)
