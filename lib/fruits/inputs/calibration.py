"""Choose the ``onnx-int8`` calibration images in Spark: same rule, no list of every path on the driver.

:func:`fruits.engines.onnx_int8.choose_calibration` takes ``count`` paths evenly spaced
through the sorted paths: index ``i * n // count`` for ``i < count``. Here Spark
sorts the listing's image paths and numbers them; the driver computes the wanted
indices from ``n`` alone and collects only those rows (at most ``count``).
Spark orders strings by their UTF-8 bytes, which is Python's code point order.
"""

from __future__ import annotations

from fruits.engines.onnx_int8 import CALIBRATION_IMAGES


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


def choose_calibration(images_df, *, count: int = CALIBRATION_IMAGES) -> tuple[str, ...]:
    """The calibration paths among ``images_df``'s ``path`` column, sorted, evenly spaced.

    Parameters
    ----------
    images_df : pyspark.sql.DataFrame
        At least a ``path`` column, one row per image (a listing's paths are unique).
    count : int
        Images wanted (all of them when there are fewer).

    Returns
    -------
    tuple of str
        Equal to ``fruits.engines.onnx_int8.choose_calibration(paths, count=count)``.
    """
    paths = images_df.select("path")
    total = paths.count()
    if total == 0:
        raise ValueError("engine 'onnx-int8' needs at least one image to calibrate on, got none")
    wanted = frozenset(spaced_indices(total, count))
    numbered = paths.orderBy("path").rdd.zipWithIndex()
    return tuple(row.path for row, index in numbered.filter(lambda pair: pair[1] in wanted).collect())
