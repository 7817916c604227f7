"""The driver JVM's class archive: built from a real Spark workload, used by every local session,
and ignored whenever it cannot be trusted (a truncated file would stop the JVM)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fruits.run import jvm_archive_build
from fruits.spark import jvm_archive

pytestmark = pytest.mark.spark


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder: no archive built yet."""
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_no_archive_leaves_options_as_they_are(cache):
    assert jvm_archive.usable_archive() is None
    assert jvm_archive.java_options("-Dx=1") == "-Dx=1"


def test_archive_of_another_size_is_not_used(cache):
    archive = jvm_archive.archive_path()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"\0" * 1000)  # as if truncated: the JVM would stop with a fatal error
    archive.with_suffix(".json").write_text(json.dumps({"size": 4096}))
    assert jvm_archive.java_options() == ""
    archive.with_suffix(".json").write_text(json.dumps({"size": 1000}))
    assert f"-XX:SharedArchiveFile={archive}" in jvm_archive.java_options("-Dx=1")
    assert jvm_archive.java_options("-Dx=1").startswith("-Dx=1 ")
    # The caller's own archive, or sharing turned off, wins.
    assert jvm_archive.java_options("-Xshare:off") == "-Xshare:off"


@pytest.mark.parametrize("options, environ", [
    ("-XX:StartFlightRecording=filename=run.jfr", {}),
    ("-Dx=1", {"JAVA_TOOL_OPTIONS": "-javaagent:/opt/apm/agent.jar"}),
    ("-Dx=1", {"JDK_JAVA_OPTIONS": "-agentpath:/opt/profiler/libagent.so=start"}),
    ("-agentlib:jdwp=transport=dt_socket,server=y,suspend=n", {}),
])
def test_a_jvm_that_hooks_class_loading_starts_without_the_archive(cache, monkeypatch, options, environ):
    """Java 17 maps our archive, then dies (SIGSEGV) when an agent or a flight recording starts with it."""
    archive = jvm_archive.archive_path()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"\0" * 1000)
    archive.with_suffix(".json").write_text(json.dumps({"size": 1000}))
    for name in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert "SharedArchiveFile" in jvm_archive.java_options("-Dx=1")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert jvm_archive.java_options(options) == options


def test_archive_name_follows_the_spark_installation(cache, monkeypatch, tmp_path):
    first = jvm_archive.archive_path()
    jars = tmp_path / "spark" / "jars"
    jars.mkdir(parents=True)
    (jars / "spark-core.jar").write_bytes(b"jar")
    monkeypatch.setattr(jvm_archive, "spark_jars", lambda: jars)
    assert jvm_archive.archive_path() != first
    monkeypatch.setattr(jvm_archive, "java_executable", lambda environ=None: None)
    assert jvm_archive.archive_path() is None


def test_archives_of_installations_that_are_gone_are_pruned(tmp_path):
    folder = tmp_path / "jvm"
    folder.mkdir()
    live = tmp_path / "venv" / "pyspark" / "jars"
    live.mkdir(parents=True)
    records = {"gone": {"size": 3, "spark_jars": str(tmp_path / "deleted-clone" / "jars")},
               "live": {"size": 3, "spark_jars": str(live)},
               "unnamed": {"size": 3}}  # written before records named the installation
    for name, record in records.items():
        (folder / f"spark-classes-{name}.jsa").write_bytes(b"jsa")
        (folder / f"spark-classes-{name}.json").write_text(json.dumps(record))

    assert jvm_archive_build.prune_orphans(folder) == [folder / "spark-classes-gone.jsa"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "spark-classes-live.jsa", "spark-classes-live.json", "spark-classes-unnamed.jsa", "spark-classes-unnamed.json"]


def test_built_archive_is_mapped_by_the_next_session(cache, tmp_path):
    archive = jvm_archive_build.build(workload="sql")
    assert archive.is_file() and jvm_archive.usable_archive() == archive
    recorded = json.loads(archive.with_suffix(".json").read_text())
    assert recorded["size"] == archive.stat().st_size
    assert recorded["spark_jars"] == str(jvm_archive.spark_jars().resolve())  # what pruning checks
    assert not [p for p in archive.parent.iterdir() if p.name.startswith("building-")]

    # A fresh session (local_spark, as every run starts one) logs where each class came from.
    log = tmp_path / "classes.log"
    script = textwrap.dedent(f"""
        from fruits.spark.session import local_spark
        spark = local_spark(conf={{"spark.driver.extraJavaOptions": "-Xlog:class+load=info:file={log}"}})
        print(spark.sparkContext.getConf().get("spark.driver.extraJavaOptions"))
        spark.range(10).count()
        spark.stop()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-XX:SharedArchiveFile={archive}" in done.stdout
    spark_classes = [line for line in log.read_text().splitlines() if " org.apache.spark." in line]
    from_archive = [line for line in spark_classes if "shared objects file (top)" in line]
    # Most of Spark's classes come from the archive instead of being read from jars and verified.
    assert len(from_archive) > 0.5 * len(spark_classes) > 100, (len(from_archive), len(spark_classes))

    # A flight recording started with the JVM: with the archive mapped, Java 17 died with SIGSEGV
    # before the gateway answered; the session starts without the archive and records.
    recording = tmp_path / "driver.jfr"
    script = script.replace(f"-Xlog:class+load=info:file={log}", f"-XX:StartFlightRecording=filename={recording}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SharedArchiveFile" not in done.stdout and recording.stat().st_size > 0
    assert not list(tmp_path.glob("hs_err_pid*")), "the JVM crashed"
