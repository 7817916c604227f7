"""Incremental runs: featurize only images that are new or changed since the last run, in Spark.

An image is unchanged when its path, size and modification time equal those in
the previous run's ``inventory/``. Its features (or its rejection) are carried
over; images that disappeared from the input are dropped from the outputs and
counted. The comparison is a pair of joins between this run's listing snapshot and
the previous inventory; only counts come back to the driver. A changed engine,
weights or input size would make old and new features incomparable, so an
incremental run refuses that (see :func:`check_compatible`).
"""

from __future__ import annotations

import dataclasses

#: Schema of ``inventory/``: every image a run accounted for.
INVENTORY_SCHEMA = "path string, size long, modified double"


@dataclasses.dataclass(frozen=True)
class Increment:
    """What a run must featurize (``to_process``), and what it may carry over (``unchanged``).

    ``to_process`` has the listing's image columns; ``unchanged`` is a one-column
    (``path``) DataFrame, ``None`` for a run that is not incremental.
    """

    previous: dict | None
    to_process: object = dataclasses.field(repr=False)
    unchanged: object = dataclasses.field(repr=False)
    to_process_count: int
    carried_over: int
    removed: int

    @property
    def is_incremental(self) -> bool:
        return self.previous is not None


def check_compatible(previous: dict, engine_sha256: str | None, image_size: int) -> None:
    """Refuse to mix features of another engine, weights or input size into an incremental run.

    ``engine_sha256`` is ``None`` for an ``onnx-int8`` engine still to be calibrated on
    this run's images: a previous run that recorded no calibration to reuse was made
    by another engine, so that is refused too.
    """
    before = previous.get("engine", {})
    if engine_sha256 is None or before.get("sha256") != engine_sha256 or before.get("input_size") != image_size:
        now = "an onnx-int8 graph not yet calibrated" if engine_sha256 is None else f"{engine_sha256[:12]}..."
        raise ValueError(
            "mode='incremental' needs the same engine, weights and image_size as the previous run "
            f"(previous: engine {before.get('name')!r}, image_size {before.get('input_size')}, "
            f"model {str(before.get('sha256'))[:12]}...; now: image_size {image_size}, "
            f"model {now}). Use mode='overwrite' to recompute everything."
        )


def plan(listing, previous: dict | None, previous_inventory: str | None) -> Increment:
    """Split the listing's images into those to featurize and unchanged ones to carry over.

    Parameters
    ----------
    listing : fruits.inputs.listing.Listing
        This run's snapshot.
    previous : dict or None
        The previous run's manifest (``None``: not an incremental run, everything is new).
    previous_inventory : str or None
        The previous run's ``inventory/`` Parquet.
    """
    images = listing.images()
    if previous is None:
        return Increment(previous=None, to_process=images, unchanged=None,
                         to_process_count=listing.image_count, carried_over=0, removed=0)
    spark = images.sparkSession
    known = spark.read.parquet(previous_inventory).select("path", "size", "modified")
    same = ((images["path"] == known["path"]) & (images["size"] == known["size"])
            & images["modified"].eqNullSafe(known["modified"]))
    unchanged = images.join(known, same, "left_semi").select("path")
    to_process = images.join(unchanged, "path", "left_anti")
    carried = unchanged.count()
    removed = known.join(images, "path", "left_anti").count()
    return Increment(previous=previous, to_process=to_process, unchanged=unchanged,
                     to_process_count=listing.image_count - carried, carried_over=carried, removed=removed)


def carried_over(spark, path: str, unchanged):
    """Rows of a previous output (``features/`` or ``rejected/``) whose image is unchanged (a semi-join)."""
    return spark.read.parquet(path).join(unchanged, "path", "left_semi")


def inventory(listing, not_read):
    """Inventory of the images this run accounted for; those not read (``path`` rows) are retried next time."""
    return listing.images().join(not_read.select("path"), "path", "left_anti").select("path", "size", "modified")
