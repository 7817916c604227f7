"""Each run under its own id, made current by one atomic step.

A reader must see one complete run or the other, never half of each, also on S3,
where a folder cannot be renamed and a listing during an object-by-object swap
mixes two runs. So a run never replaces another's files. It writes into its own
folder ``OUTPUT/runs/<run id>/``, and only when every output is there it moves the
pointer ``OUTPUT/current.json`` to it, in one step:

- on S3 one conditional ``PutObject`` (``If-Match`` the pointer this run started
  from, ``If-None-Match: *`` for the first run): a reader ``GET`` returns the old or
  the new pointer, never a mix, and a run whose starting point moved publishes nothing;
- on a local disk (or HDFS) a write to a temporary file and one ``rename(2)``.

Readers resolve the pointer first (:func:`fruits.storage.layout.current_run`) and read
only under the folder it names. A failed or killed run never moves the pointer,
so the current run stays intact and readable.

Where a run writes while it works: on a file system with an atomic rename, into
``OUTPUT/.staging-<run id>/``, renamed to ``runs/<run id>/`` once complete (so
``runs/`` only ever holds complete runs there); on an object store straight into
``runs/<run id>/`` (a rename would copy every object, and nothing reads a folder
the pointer does not name). The pointer keeps the ``keep_runs`` newest runs
(default 2: the current one and the one before, so a reader that resolved the
pointer just before a publish can finish); older run folders and leftovers of
killed runs are deleted after the pointer moved, by the run that holds the
output's lease (:mod:`fruits.storage.lease`).

Callers do not string these steps together themselves: :func:`fruits.storage.staged.staged_run`
is the whole transaction (stage, complete, commit; discard on failure).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from fruits.storage import atomic, location
from fruits.storage.layout import POINTER_NAME, RUNS_FOLDER, OutputLayout, run_layout

STAGING_PREFIX = ".staging-"
PREVIOUS_PREFIX = ".previous-"  # left by runs of versions that swapped folders in place
#: Runs kept by default: the current one and the one before it.
DEFAULT_KEEP_RUNS = 2


class PublishConflict(RuntimeError):
    """The current run changed while this run worked: this run's outputs were not published."""


def new_run_id() -> str:
    """A run id that sorts by start time: ``20240131T235959Z-1a2b3c``."""
    now = dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def staging_layout(final: OutputLayout, run_id: str) -> OutputLayout:
    """Where run ``run_id`` writes while it works (see the module docstring)."""
    if location.is_object_store(final.root):
        return run_layout(final.root, run_id)
    return OutputLayout(f"{final.root.rstrip('/')}/{STAGING_PREFIX}{run_id}")


def remove_stale_staging(final: OutputLayout) -> list[str]:
    """Delete staging and previous folders left by runs that were killed; return their paths.

    Only the holder of the output's lease may call this: it deletes any run's staging.
    """
    fs, root = location.filesystem(final.root)
    if not fs.exists(root):
        return []
    removed = []
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith((STAGING_PREFIX, PREVIOUS_PREFIX)):
            fs.rm(entry, recursive=True)
            removed.append(entry)
    return removed


def complete(staged: OutputLayout, final: OutputLayout, run_id: str) -> OutputLayout:
    """Move a finished staging folder to ``runs/<run id>/`` (one rename; nothing to do on S3)."""
    target = run_layout(final.root, run_id)
    if staged.root.rstrip("/") != target.root.rstrip("/"):
        fs, source = location.filesystem(staged.root)
        _, destination = location.filesystem(target.root)
        fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(source, destination, recursive=True)
    return target


def pointer_token(output_dir: str) -> str | None:
    """The token of the pointer as it is now (``None``: no run published yet), to publish against."""
    version = atomic.read(f"{output_dir.rstrip('/')}/{POINTER_NAME}")
    return None if version is None else version.token


def commit(final: OutputLayout, run_id: str, *, expected: str | None, keep: int = DEFAULT_KEEP_RUNS,
           lease=None) -> dict:
    """Make ``runs/<run id>/`` current in one atomic step, then prune old runs.

    Parameters
    ----------
    final : OutputLayout
        The output folder.
    run_id : str
        A run whose folder ``runs/<run id>/`` is complete.
    expected : str or None
        Token of the pointer this run started from (:func:`pointer_token`); ``None``
        if there was none. The pointer is replaced only if it is still that version.
    keep : int
        Runs kept, the new one included.
    lease : fruits.storage.lease.Lease, optional
        Checked (renewed) just before the pointer moves.

    Returns
    -------
    dict
        The new pointer document.

    Raises
    ------
    PublishConflict
        The pointer is no longer ``expected``: another run published meanwhile.
    fruits.storage.lease.LeaseLost
        This run no longer holds the output's lease.
    """
    if lease is not None:
        lease.ensure_held()
    url = f"{final.root.rstrip('/')}/{POINTER_NAME}"
    before = atomic.read(url)
    if (before.token if before else None) != expected:
        raise _conflict(final, run_id, before)
    previous = json.loads(before.data) if before else {}
    history = [run_id] + [r for r in previous.get("runs", []) if r != run_id]
    document = {
        "run_id": run_id,
        "run": f"{RUNS_FOLDER}/{run_id}",
        "published_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "previous_run_id": previous.get("run_id"),
        "runs": history[:keep],
    }
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    token = atomic.create(url, data) if before is None else atomic.replace(url, data, before.token)
    if token is None:
        raise _conflict(final, run_id, atomic.read(url))
    prune(final, document["runs"])
    return document


def prune(final: OutputLayout, keep_run_ids: list[str]) -> list[str]:
    """Delete run folders under ``runs/`` not in ``keep_run_ids``, and staging leftovers; return them.

    Failures are reported, not raised: the new run is already current.
    """
    import warnings

    fs, root = location.filesystem(final.root)
    removed = []
    runs = f"{root.rstrip('/')}/{RUNS_FOLDER}"
    try:
        entries = fs.ls(runs, detail=False) if fs.exists(runs) else []
        for entry in entries:
            if entry.rstrip("/").rsplit("/", 1)[-1] not in keep_run_ids:
                fs.rm(entry, recursive=True)
                removed.append(entry)
        removed += remove_stale_staging(final)
    except OSError as exc:
        warnings.warn(f"could not prune old runs under {final.root}: {exc}", RuntimeWarning, stacklevel=2)
    fs.invalidate_cache()
    return removed


def _conflict(final: OutputLayout, run_id: str, now) -> PublishConflict:
    current = json.loads(now.data).get("run_id") if now else None
    return PublishConflict(
        f"run {run_id} was not published: the current run of {final.root!r} changed while it worked "
        f"(now {current!r}). Another run wrote into the same output; its results stand."
    )

