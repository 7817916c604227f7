"""Storage: one place decides local vs remote, and one transaction publishes a run (local disk and S3 on moto).

The publish tests write real files into real folders and a real (moto) bucket and
read them back through the pointer, as a reader would.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from fruits.storage import location
from fruits.storage.layout import current_layout
from fruits.storage.lease import Lease, LeaseLost
from fruits.storage.publish import PublishConflict, pointer_token
from fruits.storage.staged import staged_run
from tests.conftest import moto_server

REGION = {"LocationConstraint": "eu-west-3"}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on loopback (see tests.conftest.moto_server)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path):
    """An empty output folder: a local path, or a prefix in a fresh bucket on the moto server."""
    if request.param == "local":
        return str(tmp_path / "out")
    request.getfixturevalue("s3")
    import boto3

    bucket = f"storage-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration=REGION)
    return f"s3://{bucket}/out"


def _write(url: str, text: str) -> None:
    with location.open(url, "wb") as handle:
        handle.write(text.encode())


def _read(url: str) -> str:
    return location.read_bytes(url).decode()


def _names(url: str) -> set[str]:
    fs, path = location.filesystem(url)
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)} if fs.exists(path) else set()


# --- local or remote, decided once ------------------------------------------------------------------

@pytest.mark.parametrize("path, remote", [("s3://b/k", True), ("gs://b/k", True), ("hdfs://nn/k", True),
                                          ("/data/out", False), ("out", False), ("file:///data/out", False),
                                          ("file:/data/out", False), ("~/out", False)])
def test_one_rule_tells_local_from_remote(path, remote):
    assert location.is_remote(path) is remote
    assert (location.local_path(path) is None) is remote
    assert location.absolute(path) == (path if "://" in path or path.startswith("file:")
                                       else os.path.abspath(os.path.expanduser(path)))


def test_exists_remove_open_copy_deliver_on_either_side(place, tmp_path):
    assert not location.exists(place)
    _write(f"{place}/a/one.txt", "one")
    _write(f"{place}/a/sub/two.txt", "two")
    assert location.exists(f"{place}/a/one.txt") and _read(f"{place}/a/sub/two.txt") == "two"

    location.copy(f"{place}/a", f"{place}/b")  # a folder, within one store
    location.copy(f"{place}/a/one.txt", f"{place}/c.txt")  # a file, within one store
    assert _read(f"{place}/b/sub/two.txt") == "two" and _read(f"{place}/c.txt") == "one"

    local = location.download(place, str(tmp_path / "down"), names=("a", "missing"))
    assert sorted(os.listdir(local)) == ["a"] and open(f"{local}/a/sub/two.txt").read() == "two"
    location.copy(f"{place}/a/one.txt", str(tmp_path / "single.txt"))
    assert open(tmp_path / "single.txt").read() == "one"

    report = tmp_path / "report.html"
    report.write_text("<html/>")
    location.deliver(str(report), f"{place}/runs/x/report.html")
    assert not report.exists() and _read(f"{place}/runs/x/report.html") == "<html/>"

    location.upload(str(tmp_path / "down"), f"{place}/up")
    assert _read(f"{place}/up/a/sub/two.txt") == "two"

    location.remove(f"{place}/a")
    location.remove(f"{place}/never-was")  # nothing there: nothing to do
    assert not location.exists(f"{place}/a") and location.exists(f"{place}/b")


def test_readable_copy_brings_only_the_named_entries_home(place):
    _write(f"{place}/run/pca_model/metadata/part-0", "pca")
    _write(f"{place}/run/features/part-0.parquet", "big")
    copy = location.readable_copy(f"{place}/run", ("pca_model", "classifier"))
    try:
        assert os.listdir(copy) == ["pca_model"]
        assert open(f"{copy}/pca_model/metadata/part-0").read() == "pca"
    finally:
        location.remove(copy)


# --- the staged publish -------------------------------------------------------------------------------

def _publish(place: str, run_id: str, text: str, **options):
    with staged_run(place, run_id, expected=pointer_token(place), **options) as staged:
        _write(staged.layout.manifest, json.dumps({"run_id": run_id, "text": text}))
        _write(f"{staged.layout.features}/part-0", text)
    return staged


def _current(place: str) -> dict:
    return json.loads(_read(current_layout(place).manifest))


@pytest.mark.parametrize("spark_writable", [True, False], ids=["in-place", "via-mirror"])
def test_a_staged_run_becomes_current_only_when_its_body_succeeded(place, spark_writable):
    first = _publish(place, "r1", "first", spark_writable=spark_writable)
    assert first.published.root == f"{place}/runs/r1" and first.mirrored is (not spark_writable)
    assert _current(place) == {"run_id": "r1", "text": "first"}
    assert _read(f"{first.published.features}/part-0") == "first"
    if first.mirrored:  # the mirror stays readable for the caller, who removes it
        assert _read(f"{first.readable.features}/part-0") == "first" and not location.is_remote(first.readable.root)
        location.remove(os.path.dirname(first.readable.root))
    else:
        assert first.readable == first.published

    for failure in (RuntimeError("the featurization failed"), KeyboardInterrupt()):
        with pytest.raises(type(failure)):
            with staged_run(place, "r2", expected=pointer_token(place), spark_writable=spark_writable) as staged:
                _write(staged.layout.manifest, json.dumps({"run_id": "r2"}))
                _write(f"{staged.layout.features}/part-0", "half")
                raise failure
        assert _current(place) == {"run_id": "r1", "text": "first"}, "the current run is untouched"
        assert _names(place) == {"current.json", "runs"} and _names(f"{place}/runs") == {"r1"}
        if staged.mirrored:
            assert not os.path.exists(os.path.dirname(staged.layout.root)), "the mirror is removed"

    _publish(place, "r2", "second", spark_writable=spark_writable, keep=1)
    assert _current(place)["text"] == "second" and _names(f"{place}/runs") == {"r2"}


def test_a_run_whose_starting_point_moved_publishes_nothing(place):
    _publish(place, "a", "a")
    started_from = pointer_token(place)
    _publish(place, "b", "b")  # another run published meanwhile
    with pytest.raises(PublishConflict, match="run c was not published.*now 'b'"):
        with staged_run(place, "c", expected=started_from) as staged:
            _write(staged.layout.manifest, "{}")
    assert _current(place)["run_id"] == "b" and _names(f"{place}/runs") == {"a", "b"}


def test_a_run_that_lost_its_lease_publishes_nothing_and_leftovers_of_killed_runs_go(place):
    if not location.is_remote(place):
        _write(f"{place}/.staging-killed/features/part-0", "left by a killed run")
    lease = Lease.acquire(place, "mine", heartbeat=False)
    try:
        with pytest.raises(LeaseLost):
            with staged_run(place, "mine", lease=lease) as staged:
                assert not location.exists(f"{place}/.staging-killed"), "the lease holder clears leftovers"
                _write(staged.layout.manifest, "{}")
                location.remove(f"{place}/.lease.json")  # the lease vanished (taken over, then released)
    finally:
        lease.release()
    assert "current.json" not in _names(place) and _names(f"{place}/runs") == set()


def test_keep_below_one_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="keep must be at least 1.*got 0"):
        with staged_run(str(tmp_path / "out"), "r", keep=0):
            pass


def test_a_weights_file_is_used_in_place_when_local_and_copied_home_when_remote(place, tmp_path):
    """fruits.engines.weights asks location, so a ``file:`` URI is a local file and ``s3://`` is downloaded."""
    from fruits.engines.weights import MissingWeightsError, local_copy

    _write(f"{place}/weights.h5", "not really hdf5")
    path, temporary = local_copy(f"{place}/weights.h5", "a test")
    try:
        assert open(path).read() == "not really hdf5"
        assert temporary is location.is_remote(place) and (path == f"{place}/weights.h5") is (not temporary)
    finally:
        if temporary:
            os.unlink(path)
    if not location.is_remote(place):
        assert local_copy(f"file://{place}/weights.h5", "a test") == (f"{place}/weights.h5", False)
    with pytest.raises(MissingWeightsError, match="weights file .*missing.h5"):
        local_copy(f"{place}/missing.h5", "a test")
