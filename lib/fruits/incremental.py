"""Incremental runs: featurize only images that are new or changed since the last run.

An image is unchanged when its path, size and modification time equal those in
the previous run's ``inventory/``. Its features (or its rejection) are carried
over; images that disappeared from the input are dropped from the outputs and
counted. A changed engine, weights or input size would make old and new features
incomparable, so an incremental run refuses that (see :func:`check_compatible`).
"""

from __future__ import annotations

import dataclasses

from fruits.storage.layout import OutputLayout
from fruits.listing import InputFile, Listing

INVENTORY_SCHEMA = "path string, size long, modified double"


@dataclasses.dataclass(frozen=True)
class Increment:
    """What a run must featurize, and what it may carry over from the previous run."""

    previous: dict | None
    to_process: tuple[InputFile, ...]
    unchanged: tuple[str, ...]
    removed: int

    @property
    def is_incremental(self) -> bool:
        return self.previous is not None


def check_compatible(previous: dict, engine_sha256: str, image_size: int) -> None:
    """Refuse to mix features of another engine, weights or input size into an incremental run."""
    before = previous.get("engine", {})
    if before.get("sha256") != engine_sha256 or before.get("input_size") != image_size:
        raise ValueError(
            "mode='incremental' needs the same engine, weights and image_size as the previous run "
            f"(previous: engine {before.get('name')!r}, image_size {before.get('input_size')}, "
            f"model {str(before.get('sha256'))[:12]}...; now: image_size {image_size}, "
            f"model {engine_sha256[:12]}...). Use mode='overwrite' to recompute everything."
        )


def plan(spark, final: OutputLayout, listing: Listing, previous: dict | None) -> Increment:
    """Split the listing into images to featurize and unchanged images to carry over."""
    if previous is None:
        return Increment(previous=None, to_process=listing.images, unchanged=(), removed=0)
    known = {
        row.path: (row.size, row.modified)
        for row in spark.read.parquet(final.inventory).collect()
    }
    unchanged, to_process = [], []
    for image in listing.images:
        if known.get(image.path) == (image.size, image.modified):
            unchanged.append(image.path)
        else:
            to_process.append(image)
    current = {image.path for image in listing.images}
    removed = sum(1 for path in known if path not in current)
    return Increment(previous=previous, to_process=tuple(to_process), unchanged=tuple(unchanged),
                     removed=removed)


def carried_over(spark, path: str, unchanged: tuple[str, ...]):
    """Rows of a previous output (``features/`` or ``rejected/``) whose image is unchanged."""
    from pyspark.sql import functions as F

    keep = spark.createDataFrame([(p,) for p in unchanged], "path string")
    return spark.read.parquet(path).join(F.broadcast(keep), "path", "left_semi")


def inventory_rows(images: tuple[InputFile, ...], excluded: set[str]) -> list[tuple]:
    """Inventory of the images this run accounted for (those not read are retried next time)."""
    return [(i.path, i.size, i.modified) for i in images if i.path not in excluded]
