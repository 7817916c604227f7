"""What guards a run against folders only the driver sees, without a cluster.

The cluster half (executors on another host, which shares no disk with the driver)
is in ``tests/test_multihost.py``; here: the guard before publishing, and that a
local session, whose executors are the driver's JVM, runs no check at all.
"""

from __future__ import annotations

import json

import pytest

from fruits.storage.executor_view import NotVisibleToExecutors, check_executors_see, check_written_here
from fruits.storage.layout import read_pointer
from fruits.storage.publish import pointer_token
from fruits.storage.staged import staged_run


def _commit(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("_SUCCESS", *names):
        (folder / name).write_bytes(b"")


def test_a_committed_folder_must_hold_data_where_the_driver_looks(tmp_path):
    _commit(tmp_path / "run" / "features", "part-00000-x.snappy.parquet")
    _commit(tmp_path / "run" / "pca_model" / "metadata", "part-00000")
    _commit(tmp_path / "run" / "by_label")  # a partitioned write: the parts are in its sub-folders
    (tmp_path / "run" / "by_label" / "label=a").mkdir()
    (tmp_path / "run" / "by_label" / "label=a" / "part-00000.parquet").write_bytes(b"")
    (tmp_path / "run" / "manifest.json").write_text("{}")
    check_written_here(str(tmp_path / "run"))
    check_written_here(f"file://{tmp_path / 'run'}")
    check_written_here("s3://bucket/never/walked")
    check_written_here(str(tmp_path / "absent"))

    _commit(tmp_path / "run" / "pca_model" / "data")  # the job commit on the driver; the parts went elsewhere
    with pytest.raises(NotVisibleToExecutors, match=r"(?s)pca_model/data' was committed by Spark but holds no data "
                                                    r"file here.*own disks.*mounted on every node"):
        check_written_here(str(tmp_path / "run"))


def test_a_run_whose_executors_wrote_elsewhere_is_not_published(tmp_path):
    place = str(tmp_path / "out")
    with pytest.raises(NotVisibleToExecutors, match="features' was committed by Spark"):
        with staged_run(place, "r1", expected=pointer_token(place)) as staged:
            (tmp_path / "out").mkdir(exist_ok=True)
            _commit(tmp_path / "out" / staged.layout.features.split(place + "/", 1)[1])
            with open(staged.layout.manifest, "w") as handle:
                json.dump({"run_id": "r1"}, handle)
    assert read_pointer(place) is None, "nothing was made current"
    assert not (tmp_path / "out" / "runs" / "r1").exists()


def test_a_local_session_checks_nothing_and_writes_nothing(spark, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    jobs = spark.sparkContext.statusTracker().getJobIdsForGroup(None)
    check_executors_see(spark, read={"input_path": str(tmp_path / "in")}, write={"output_dir": str(tmp_path / "out")})
    assert spark.sparkContext.statusTracker().getJobIdsForGroup(None) == jobs, "no job on a local master"
    assert list((tmp_path / "out").iterdir()) == []
