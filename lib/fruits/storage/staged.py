"""The publish transaction as one context manager: write a run aside, make it current only if it all worked.

A run and a projection publish the same way (see :mod:`fruits.storage.publish`):
write every output into a folder nothing reads, then make it ``runs/<run id>/`` and
move the pointer in one conditional step; on any failure, Ctrl-C included, remove
what was written and leave the current run as it was. :func:`staged_run` is that
transaction, so both callers do it the same way::

    with staged_run(output_dir, run_id, lease=lease, expected=token,
                    spark_writable=spark_can_access(spark, output_dir)) as staged:
        df.write.parquet(staged.layout.features)      # ... every output
    # here runs/<run id>/ is complete and current

When Spark cannot write the output's scheme (a local pyspark has no S3
connector), the run writes into a local mirror instead, uploaded to
``runs/<run id>/`` once the body succeeded and before the pointer moves; the
mirror stays for reading (``staged.readable``) until the caller calls
``staged.remove_mirror()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import warnings

from fruits.storage import location
from fruits.storage.layout import OutputLayout, run_layout
from fruits.storage.publish import DEFAULT_KEEP_RUNS, commit, complete, remove_stale_staging, staging_layout
from fruits.storage.executor_view import check_written_here


@dataclasses.dataclass(frozen=True)
class StagedRun:
    """Where a run in progress writes, and where its outputs will be once published."""

    #: Write every output here (a staging folder, the run folder on an object store, or a local mirror).
    layout: OutputLayout
    #: ``OUTPUT/runs/<run id>``: where the outputs are once the transaction committed.
    published: OutputLayout
    #: True when ``layout`` is a local mirror of a remote output.
    mirrored: bool

    @property
    def readable(self) -> OutputLayout:
        """After the commit, where this process's Spark can read the run: the mirror, or the run folder."""
        return self.layout if self.mirrored else self.published

    def remove_mirror(self) -> None:
        """Remove the local mirror once nothing reads it any more (nothing to do without one)."""
        if self.mirrored:
            location.remove(os.path.dirname(self.layout.root))


@contextlib.contextmanager
def staged_run(output_dir: str, run_id: str, *, lease=None, expected: str | None = None,
               keep: int = DEFAULT_KEEP_RUNS, spark_writable: bool = True):
    """Yield a :class:`StagedRun` to write into; on success make it current, on failure remove it.

    Parameters
    ----------
    output_dir : str
        The output folder, local or remote.
    run_id : str
        This run's id; its folder ``runs/<run id>/`` must not exist yet.
    lease : fruits.storage.lease.Lease, optional
        The output's lease, which the caller holds; checked just before the pointer moves.
        Leftovers of killed runs are removed first, which only the lease holder may do.
    expected : str or None
        Token of the pointer the run started from (:func:`fruits.storage.publish.pointer_token`).
    keep : int
        Runs kept after the publish, this one included.
    spark_writable : bool
        False when Spark cannot write ``output_dir``'s scheme: write a local mirror, uploaded on success.

    Yields
    ------
    StagedRun

    Raises
    ------
    fruits.storage.publish.PublishConflict, fruits.storage.lease.LeaseLost
        Another run took the output over meanwhile; nothing was published.
    ValueError
        ``keep`` below 1.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the run being published), got {keep!r}")
    final = OutputLayout(output_dir.rstrip("/"))
    published = run_layout(final.root, run_id)
    remove_stale_staging(final)
    if spark_writable:
        staged = StagedRun(layout=staging_layout(final, run_id), published=published, mirrored=False)
    else:
        mirror = tempfile.mkdtemp(prefix="fruits-mirror-")
        staged = StagedRun(layout=OutputLayout(os.path.join(mirror, run_id)), published=published, mirrored=True)
    try:
        yield staged
        check_written_here(staged.layout.root)  # never publish what executors wrote to their own disks
        if staged.mirrored:
            location.upload(staged.layout.root, published.root)
        else:
            complete(staged.layout, final, run_id)
        commit(final, run_id, expected=expected, keep=keep, lease=lease)
    except BaseException:
        _discard(os.path.dirname(staged.layout.root) if staged.mirrored else staged.layout.root, published.root)
        raise


def _discard(*paths: str) -> None:
    """Remove what a failed run wrote; a failure here is reported, never raised over the run's own error."""
    for path in paths:
        try:
            location.remove(path)
        except Exception as exc:  # the store may be the very thing that failed
            warnings.warn(f"could not remove {path} after a failed run: {exc}", RuntimeWarning, stacklevel=3)
