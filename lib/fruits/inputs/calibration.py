"""Choose an engine's calibration images in Spark: same rule, no list of every path on the driver.

An engine that calibrates on the run's own images (``onnx-int8``) says how many it wants
(:attr:`fruits.engines.base.Engine.calibration_images`, read through the registry by the
run); its rule (:func:`fruits.engines.onnx_int8.choose_calibration`) takes ``count`` paths evenly spaced
through the sorted paths: index ``i * n // count`` for ``i < count``. Here Spark
sorts the listing's image paths (a range-partitioned sort) and numbers them within
each sorted partition (``monotonically_increasing_id``: the partition in the upper
bits, the row's position below), all in the JVM; the driver collects the row count
of each partition, turns the wanted ranks into those numbers, and collects only
those rows (at most ``count``). Spark orders strings by their UTF-8 bytes, which is
Python's code point order.

Numbering in a Python RDD (``zipWithIndex``) gave the same paths but took 36 s for
a million images on the shared 2-core machine, every path pickled through Python.
"""

from __future__ import annotations


def spaced_indices(total: int, count: int) -> list[int]:
    """Indices of ``count`` items evenly spaced through ``total`` (all when fewer), as the int8 rule says.

    Examples
    --------
    >>> spaced_indices(10, 4)
    [0, 2, 5, 7]
    >>> spaced_indices(3, 100)
    [0, 1, 2]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    chosen = min(count, total)
    return [index * total // chosen for index in range(chosen)]


def choose_calibration(images_df, *, count: int) -> tuple[str, ...]:
    """The calibration paths among ``images_df``'s ``path`` column, sorted, evenly spaced.

    Parameters
    ----------
    images_df : pyspark.sql.DataFrame
        At least a ``path`` column, one row per image (a listing's paths are unique).
    count : int
        Images wanted (all of them when there are fewer): the engine's
        ``calibration_images``.

    Returns
    -------
    tuple of str
        Equal to ``fruits.engines.onnx_int8.choose_calibration(paths, count=count)``.
    """
    from pyspark.sql import functions as F

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    numbered = (images_df.select("path").orderBy("path")
                .select("path", F.monotonically_increasing_id().alias("number")).cache())
    try:
        rows = {row.part: row.rows for row in numbered.groupBy(F.shiftright("number", _POSITION_BITS).alias("part"))
                .agg(F.count(F.lit(1)).alias("rows")).collect()}
        total = sum(rows.values())
        if total == 0:
            raise ValueError("the engine's calibration needs at least one image to calibrate on, got none")
        starts, offset = [], 0
        for part in sorted(rows):
            starts.append((offset, part))
            offset += rows[part]
        numbers = []
        for rank in spaced_indices(total, count):
            first, part = next((first, part) for first, part in reversed(starts) if first <= rank)
            numbers.append((part << _POSITION_BITS) + rank - first)
        chosen = numbered.where(F.col("number").isin(numbers)).collect()  # sorted here: at most count rows
    finally:
        numbered.unpersist()
    return tuple(row.path for row in sorted(chosen, key=lambda row: row.number))


#: ``monotonically_increasing_id`` keeps a row's position within its partition in its lower 33 bits.
_POSITION_BITS = 33
