"""The Python workers' daemon: no Java archive on their import path, zip importers that do not
re-read their archive before every task, imports from those archives still working, and the
modules every Arrow task needs already loaded."""

from __future__ import annotations

import importlib
import sys
import zipfile
import zipimport

import pytest

from fruits.spark import python_daemon


def test_java_archives_leave_the_path_and_the_importer_cache():
    path = ["/w", "/spark/python/lib/pyspark.zip", "/spark/jars/spark-core_2.12-3.5.1.jar", "/site", "/x/A.JAR"]
    importers = {"/spark/jars/spark-core_2.12-3.5.1.jar": object(), "/site": None, "/x/A.JAR": object()}
    dropped = python_daemon.drop_java_archives(path, importers)
    assert dropped == ["/spark/jars/spark-core_2.12-3.5.1.jar", "/x/A.JAR"]
    assert path == ["/w", "/spark/python/lib/pyspark.zip", "/site"]
    assert importers == {"/site": None}


@pytest.fixture
def archive(tmp_path):
    """A zip holding a package with one module, as pyspark.zip holds pyspark."""
    path = tmp_path / "lib.zip"
    with zipfile.ZipFile(path, "w") as handle:
        handle.writestr("zipped_pkg/__init__.py", "")
        handle.writestr("zipped_pkg/inner.py", "VALUE = 41 + 1\n")
    return str(path)


def test_sealed_importers_import_from_the_archive_and_keep_what_they_read(archive, monkeypatch):
    monkeypatch.setattr(sys, "path", [archive, *sys.path])
    monkeypatch.setattr(sys, "path_hooks", list(sys.path_hooks))
    monkeypatch.setattr(sys, "path_importer_cache", {archive: zipimport.zipimporter(archive), "/else": None})
    python_daemon.seal_zip_importers(sys.path_hooks, sys.path_importer_cache)

    assert zipimport.zipimporter not in sys.path_hooks
    assert python_daemon.SealedZipImporter in sys.path_hooks
    sealed = sys.path_importer_cache[archive]
    assert type(sealed) is python_daemon.SealedZipImporter and sys.path_importer_cache["/else"] is None
    files = sealed._files
    importlib.invalidate_caches()
    assert sealed._files is files  # a plain zipimporter reads the whole directory again here

    try:
        module = importlib.import_module("zipped_pkg.inner")
        assert module.VALUE == 42 and archive in module.__file__
        # The package's own importer (a path inside the archive) came from the sealed hook.
        assert type(sys.path_importer_cache[f"{archive}/zipped_pkg"]) is python_daemon.SealedZipImporter
    finally:
        for name in ("zipped_pkg.inner", "zipped_pkg"):
            sys.modules.pop(name, None)


@pytest.mark.spark
def test_workers_of_a_library_session_run_without_java_archives_and_with_sealed_importers(spark):
    assert spark.conf.get("spark.python.daemon.module") == "fruits.spark.python_daemon"

    def state(_):
        import importlib as lib
        import sys as system
        import zipimport as zi

        preloaded = [name for name in ("pandas", "pyarrow") if name in system.modules]  # a plain RDD task imports neither

        import pyspark.ml.stat  # noqa: F401 - imported in the task: from pyspark.zip where Spark puts it first

        lib.invalidate_caches()
        yield {
            "jars": [entry for entry in system.path if entry.endswith(".jar")],
            "importers": sorted({type(found).__name__ for found in system.path_importer_cache.values()
                                 if isinstance(found, zi.zipimporter)}),
            "stat_from": system.modules["pyspark.ml.stat"].__file__,
            "preloaded": preloaded,
        }

    for worker in spark.sparkContext.parallelize(range(2), 2).mapPartitions(state).collect():
        assert worker["jars"] == []
        assert worker["importers"] in ([], ["SealedZipImporter"])
        assert worker["stat_from"].endswith("stat.py")
        assert worker["preloaded"] == ["pandas", "pyarrow"]


def test_preload_reports_what_is_not_installed():
    assert python_daemon.preload(("json", "no_such_module_here")) == ["no_such_module_here"]
