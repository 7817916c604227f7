"""PySpark's Python worker daemon, without Java archives on the workers' import path.

Spark puts its own ``spark-core`` jar on every Python worker's ``sys.path``
(``PythonUtils.sparkPythonPath``; the jar once carried PySpark's Python files and holds
none today: 5,221 entries, no ``.py``). Before every task a worker calls
``importlib.invalidate_caches()``, and since Python 3.10 that makes the zip importer of
each archive on the path read its whole directory again. Measured here (Python 3.11,
Spark 3.5): 0.10-0.14 s of a worker's CPU per task, before the task's own code runs;
py-spy put 18 % of the workers' samples there while they featurized, and the 83 tasks
that featurized the Test split (256 images each, at the time) paid about 10 s of CPU for it.

The zip archives that stay (``pyspark.zip``, ``py4j-*-src.zip``, files a job adds) cost
less, but each package imported from them has an importer of its own that reads the whole
archive again: nine reads of ``pyspark.zip``, 23 ms per task. Those archives never change
while a worker lives (Spark refuses to replace a file a job has added), so their
importers here skip the re-reading (:class:`SealedZipImporter`; Python 3.12 made it lazy).

Every task of this library exchanges Arrow batches with its worker, so each new worker
imported pandas and PyArrow (0.26 s, measured) before its first task; imported once
here, before the forks, they come with every worker for nothing.

Spark starts this module instead of ``pyspark.daemon`` when a session sets
``spark.python.daemon.module`` (:data:`fruits.spark.settings.PYTHON_WORKERS`). Once, before
the daemon forks any worker, it removes the ``.jar`` entries from the path, seals the
zip importers and imports :data:`PRELOADED`; then it runs PySpark's own daemon
unchanged, and every worker it forks inherits all three. Nothing may be printed here:
the daemon's first output is the port it tells Spark.
"""

from __future__ import annotations

import sys
import zipimport


def is_java_archive(entry: str) -> bool:
    """True for a ``sys.path`` entry that is a Java archive, where Python finds no module.

    Examples
    --------
    >>> is_java_archive("/usr/lib/spark/jars/spark-core_2.12-3.5.1.jar")
    True
    >>> is_java_archive("/usr/lib/spark/python/lib/pyspark.zip")
    False
    """
    return entry.lower().endswith(".jar")


def drop_java_archives(path: list[str], importers: dict) -> list[str]:
    """Remove Java archives from ``path`` (in place) and their cached importers; return what was removed."""
    dropped = [entry for entry in path if is_java_archive(entry)]
    path[:] = [entry for entry in path if not is_java_archive(entry)]
    for entry in dropped:
        importers.pop(entry, None)
    return dropped


#: Modules every worker of a featurization imports: loaded by the daemon, inherited by each fork.
PRELOADED = ("numpy", "pandas", "pyarrow", "pyspark.sql.pandas.serializers")


def preload(names=PRELOADED) -> list[str]:
    """Import ``names`` that are installed; return those that are not (their workers import nothing more)."""
    import importlib

    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


class SealedZipImporter(zipimport.zipimporter):
    """A zip importer that keeps what it read of its archive when import caches are invalidated."""

    def invalidate_caches(self) -> None:
        """Nothing to do: the archive does not change while the worker lives."""


def seal_zip_importers(hooks: list, importers: dict) -> None:
    """Make every zip importer, present (in ``importers``) and future (from ``hooks``), a sealed one."""
    hooks[:] = [SealedZipImporter if hook is zipimport.zipimporter else hook for hook in hooks]
    for entry, importer in list(importers.items()):
        if type(importer) is zipimport.zipimporter:
            importers[entry] = SealedZipImporter(entry)  # the archive's directory is already cached


def main() -> None:
    """Shorten the import path, seal its zip importers and preload, then serve as PySpark's daemon."""
    drop_java_archives(sys.path, sys.path_importer_cache)
    seal_zip_importers(sys.path_hooks, sys.path_importer_cache)
    preload()
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
