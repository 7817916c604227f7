"""A short run (a small local input) starts its local JVM with the quick compiler only; anything else does not."""

import json
import os
import subprocess
import sys
import textwrap

from fruits.inputs.listing import InputRoot, check_input, count_local_files
from fruits.run.plan import is_short_run
from fruits.spark.session import short_run_java_options
from fruits.spark.settings import SHORT_RUN_JAVA_OPTIONS


def _touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _input(root, files_per_class: dict, loose: int = 0):
    for label, count in files_per_class.items():
        for number in range(count):
            _touch(root / label / f"{number}.jpg")
    for number in range(loose):
        _touch(root / f"loose-{number}.txt", b"")  # counted like the listing counts it: every file
    return check_input(str(root))


def test_count_stops_at_the_limit_and_counts_every_file(tmp_path):
    source = _input(tmp_path / "in", {"Kiwi": 4, "Pear": 3}, loose=2)
    _touch(tmp_path / "in" / "Kiwi" / "nested" / ".hidden.jpg")
    assert count_local_files(source, 100) == 10  # 7 images, 2 loose files, a nested hidden one
    assert count_local_files(source, 5) == 5
    assert count_local_files(source, 0) == 0


def test_a_remote_input_is_never_counted_or_short():
    remote = InputRoot(root="s3://bucket/Test", protocol="s3", fs_root="bucket/Test", folders=("bucket/Test/Kiwi",),
                       has_loose_files=False)
    assert count_local_files(remote, 10) is None
    assert not is_short_run([remote])


def test_short_means_fewer_files_than_the_limit_together(tmp_path):
    test = _input(tmp_path / "test", {"Kiwi": 3, "Pear": 3})
    train = _input(tmp_path / "train", {"Kiwi": 2})
    assert is_short_run([test, None], limit=7)
    assert is_short_run([test, train], limit=9)
    assert not is_short_run([test, train], limit=8)  # 8 files: not fewer than 8
    assert not is_short_run([test], limit=6)


def test_the_options_keep_the_callers_and_stay_off_clusters():
    quick = " ".join(SHORT_RUN_JAVA_OPTIONS)
    assert short_run_java_options("", "local[2]") == quick
    assert short_run_java_options("-Dx=1", "local[2,3]") == f"-Dx=1 {quick}"
    assert short_run_java_options("-XX:TieredStopAtLevel=4", "local[2]") == "-XX:TieredStopAtLevel=4"
    assert short_run_java_options("-Dx=1", "spark://head:7077") == "-Dx=1"
    assert short_run_java_options("", "yarn") == ""


def test_the_short_run_jvm_runs_with_the_quick_compiler_only():
    # The JVM's own arguments, as it received them: what the option did, not what was asked.
    script = textwrap.dedent("""
        import json, sys
        from fruits.spark.session import local_spark, runs_short_run_jvm
        spark = local_spark("local[1]", driver_memory="512m", short_run=sys.argv[1] == "short")
        runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
        print(json.dumps({"arguments": list(runtime.getInputArguments()), "count": spark.range(10).count(),
                          "says": runs_short_run_jvm(spark)}))
        spark.stop()
    """)
    # Without the suite's own compiler choice (conftest.TEST_JVM_OPTIONS): the project's alone.
    environ = {name: value for name, value in os.environ.items() if name not in ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS")}
    for side, expected in (("short", True), ("tiered", False)):
        done = subprocess.run([sys.executable, "-c", script, side], capture_output=True, text=True, timeout=180,
                              env=environ)
        assert done.returncode == 0, done.stderr[-2000:]
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        assert figures["count"] == 10
        assert all(option in figures["arguments"] for option in SHORT_RUN_JAVA_OPTIONS) is expected, figures
        assert figures["says"] is expected, "what the manifest records agrees with the JVM's own arguments"


def test_a_folder_that_cannot_be_read_leaves_the_count_unknown(tmp_path, monkeypatch):
    source = _input(tmp_path / "in", {"Kiwi": 2, "Pear": 2})
    real_scandir = os.scandir

    def refusing(path):
        if str(path).endswith("Pear"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)  # root needs no permission: refuse as a non-root user would be
    assert count_local_files(source, 100) is None
    assert not is_short_run([source])  # the listing, not this count, reports the folder
