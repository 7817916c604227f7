"""One writer per output folder: a lease object that names the run holding it.

Two runs into the same output (two people, or a schedule and a person) would
overwrite each other's half-written results and race to publish. A run therefore
takes the output's lease, ``OUTPUT/.lease.json``, before Spark starts, and a
second run refuses with a message naming the holder: its run id, host, process
id and start time.

- **Taking it** is one conditional write (:mod:`fruits.storage.atomic`): create-if-absent
  (S3 ``If-None-Match: *``; a hard link, like ``O_EXCL``, on disk), or replace a
  stale lease only if it is still the version judged stale (S3 ``If-Match``).
  Of two runs starting together, exactly one wins.
- **Keeping it**: a background thread renews it every ``ttl / 5`` seconds (the
  heartbeat), again with a conditional write, so a run of hours keeps it.
- **A crashed run** cannot release it; its lease stays until it expires (``ttl``
  after the last heartbeat, default 300 s, ``$FRUITS_LEASE_SECONDS``). On the
  same machine a lease whose process is gone is stale at once, so re-running
  after Ctrl-C or a killed kernel does not wait.
- **A run that lost it** (paused longer than ``ttl``, then taken over) finds out
  at its next heartbeat or, at the latest, before it publishes
  (:meth:`Lease.ensure_held`), and publishes nothing.

The lease is named with a dot: Spark, Hadoop and the output listings skip it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time

from fruits import config
from fruits.storage import atomic

LEASE_NAME = ".lease.json"
DEFAULT_LEASE_SECONDS = 300.0
LEASE_VARIABLE = "FRUITS_LEASE_SECONDS"
#: How often a lease is renewed, as a fraction of its time to live.
HEARTBEAT_FRACTION = 0.2
#: Attempts at taking a lease that other runs keep changing under us.
ATTEMPTS = 5


class OutputBusy(RuntimeError):
    """Another run holds the output's lease; the message names it."""


class LeaseLost(RuntimeError):
    """This run's lease expired and was taken over, or was removed: it must not publish."""


def lease_url(output_dir: str) -> str:
    """Where the lease of ``output_dir`` lives."""
    return f"{output_dir.rstrip('/')}/{LEASE_NAME}"


def lease_seconds(value: float | None = None) -> float:
    """The lease's time to live: ``value``, else ``$FRUITS_LEASE_SECONDS``, else 300.

    Raises
    ------
    ValueError
        Not a positive number, naming where it came from.
    """
    return config.positive_seconds(value, name="ttl", variable=LEASE_VARIABLE, default=DEFAULT_LEASE_SECONDS)


def holder(output_dir: str) -> dict | None:
    """The lease document of ``output_dir`` as it is now, or ``None`` where there is none."""
    version = atomic.read(lease_url(output_dir))
    return None if version is None else _parse(version.data)


def describe(document: dict, *, now: float | None = None) -> str:
    """``run R on host H (pid P), started T, last heartbeat S s ago, expires in E s``."""
    now = time.time() if now is None else now
    return (f"run {document.get('run_id')} on host {document.get('host')} (pid {document.get('pid')}), "
            f"started {document.get('started_utc')}, last heartbeat {max(0, now - document.get('renewed_at', now)):.0f} s "
            f"ago, expires in {max(0, document.get('expires_at', now) - now):.0f} s unless renewed")


def stale_reason(document: dict, *, now: float | None = None) -> str | None:
    """Why a lease no longer protects a run (expired; its process is gone), or ``None`` while it does."""
    now = time.time() if now is None else now
    if document.get("released"):
        return "released"
    if now >= float(document.get("expires_at", 0)):
        return "expired"
    if document.get("host") == _HOST and document.get("boot_id") == _BOOT_ID:
        pid, started = document.get("pid"), document.get("process_started")
        if pid == os.getpid() and started == _PROCESS_STARTED:
            return "held by an earlier run of this same process"
        if isinstance(pid, int) and not _process_alive(pid, started):
            return f"its process {pid} on this host is gone"
    return None


class Lease:
    """This run's lease on an output folder, renewed in the background until released.

    Examples
    --------
    >>> with Lease.acquire("/tmp/out", "20240101T000000Z-abc123") as lease:  # doctest: +SKIP
    ...     lease.ensure_held()   # before publishing
    """

    def __init__(self, url: str, document: dict, token: str, ttl: float):
        self.url, self.document, self.token, self.ttl = url, document, token, ttl
        self.lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        return self.document["run_id"]

    @classmethod
    def acquire(cls, output_dir: str, run_id: str, *, ttl: float | None = None, heartbeat: bool = True) -> "Lease":
        """Take the lease of ``output_dir`` for run ``run_id``, or refuse naming its holder.

        Raises
        ------
        OutputBusy
            A live run holds it.
        """
        ttl = lease_seconds(ttl)
        url = lease_url(output_dir)
        for _ in range(ATTEMPTS):
            document = _document(run_id, output_dir, ttl)
            data = _encode(document)
            current = atomic.read(url)
            if current is None:
                token = atomic.create(url, data)
            else:
                other = _parse(current.data)
                reason = stale_reason(other)
                if reason is None:
                    raise OutputBusy(
                        f"output_dir {output_dir!r} is being written by another run: {describe(other)}. "
                        f"Wait for it to finish, or choose another output_dir. A crashed run's lease "
                        f"({LEASE_NAME}) expires {ttl:.0f} s after its last heartbeat ({LEASE_VARIABLE})."
                    )
                document["took_over"] = {"run_id": other.get("run_id"), "host": other.get("host"),
                                         "pid": other.get("pid"), "reason": reason}
                data = _encode(document)
                token = atomic.replace(url, data, current.token)
            if token is not None:
                lease = cls(url, document, token, ttl)
                if heartbeat:
                    lease._start_heartbeat()
                return lease
        raise OutputBusy(f"output_dir {output_dir!r}: other runs kept changing its lease ({url}); try again")

    def renew(self) -> None:
        """Push the expiry ``ttl`` seconds ahead, only if the lease is still this run's.

        Raises
        ------
        LeaseLost
            Another run took it over, or it was removed.
        """
        with self._lock:
            if self.lost:
                raise LeaseLost(self.lost)
            now = time.time()
            document = dict(self.document, renewed_at=now, expires_at=now + self.ttl,
                            renewed_utc=_iso(now))
            token = atomic.replace(self.url, _encode(document), self.token)
            if token is None:
                self.lost = self._lost_message()
                raise LeaseLost(self.lost)
            self.document, self.token = document, token

    def ensure_held(self) -> None:
        """Renew now and raise :class:`LeaseLost` unless this run still holds the lease."""
        self.renew()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still this run's (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._lock:
            if self.lost is None:
                try:
                    atomic.delete(self.url, self.token)
                finally:
                    self.lost = "released"

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _start_heartbeat(self) -> None:
        interval = max(self.ttl * HEARTBEAT_FRACTION, 0.1)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except LeaseLost:
                    return
                except Exception:  # a network blip: try again until the lease would have expired
                    if time.time() >= self.document["expires_at"]:
                        with self._lock:
                            self.lost = self.lost or f"{self.url}: could not renew before it expired"
                        return

        self._thread = threading.Thread(target=beat, name=f"fruits-lease-{self.run_id}", daemon=True)
        self._thread.start()

    def _lost_message(self) -> str:
        try:
            now_held = holder(self.url.rsplit("/", 1)[0])
        except Exception:  # the message matters more than the detail
            now_held = None
        who = f" it is now held by {describe(now_held)}" if now_held else " it was removed"
        return (f"run {self.run_id} lost the lease of {self.url.rsplit('/', 1)[0]!r}:{who}. "
                "This run publishes nothing.")


# --- identity of this process -------------------------------------------------------------------

def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _process_alive(pid: int, started: str | None) -> bool:
    if os.path.isdir("/proc/self"):
        now_started = _process_start(pid)
        return now_started is not None and (started is None or now_started == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_HOST = socket.gethostname()
_BOOT_ID = _read_text("/proc/sys/kernel/random/boot_id")
_PROCESS_STARTED = _process_start(os.getpid())


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(microsecond=0).isoformat()


def _document(run_id: str, output_dir: str, ttl: float) -> dict:
    now = time.time()
    return {
        "run_id": run_id, "output_dir": output_dir, "host": _HOST, "pid": os.getpid(),
        "process_started": _PROCESS_STARTED, "boot_id": _BOOT_ID, "user": _user(),
        "started_utc": _iso(now), "renewed_utc": _iso(now), "renewed_at": now,
        "expires_at": now + ttl, "ttl_seconds": ttl,
    }


def _user() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no user name in some containers
        return None


def _encode(document: dict) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _parse(data: bytes) -> dict:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if not isinstance(document, dict):
        return {"run_id": "?", "host": "?", "expires_at": 0, "unreadable": True}  # stale: taken over
    return document
