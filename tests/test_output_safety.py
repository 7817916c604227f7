"""One writer per output, and readers that see one run or the other: local disk and S3 (moto).

- The lease (``OUTPUT/.lease.json``): of two runs starting together exactly one
  writes; the other refuses before Spark starts, naming the first (run id, host,
  pid, start time). The heartbeat keeps a run's lease past its time to live; a
  crashed run's lease expires, and on the same host is stale at once.
- The pointer (``OUTPUT/current.json``): a run is written under ``runs/<run id>/``
  and made current by one conditional write; a reader polling during a publish on
  S3 sees the previous run or the new one, complete, never a mix; ``keep_runs``
  runs are kept, older ones and leftovers of killed runs are pruned.

moto 5.2 implements S3's conditional writes (``If-None-Match: *``, ``If-Match`` on
PutObject and DeleteObject; answered 412), which is what these tests rely on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fruits.run.demo_data import generate_demo_images
from fruits.storage import atomic, location
from fruits.storage.layout import OutputLayout, current_run, read_pointer
from fruits.storage.lease import Lease, LeaseLost, OutputBusy, holder
from fruits.storage.publish import PublishConflict, commit, pointer_token
from tests.test_emr import moto  # noqa: F401  (the moto server fixture)

ROOT = Path(__file__).resolve().parents[1]
REGION = {"LocationConstraint": "eu-west-3"}


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path):
    """An empty output folder: a local path, or a prefix in a fresh bucket on the moto server."""
    if request.param == "local":
        return str(tmp_path / "out")
    request.getfixturevalue("moto")
    import boto3

    bucket = f"fruits-safety-{request.node.name.split('[')[0][-20:].replace('_', '-')}-{os.getpid()}".lower()
    boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration=REGION)
    return f"s3://{bucket}/out"


def _put_file(url: str, data: bytes) -> None:
    import fsspec

    with fsspec.open(url, "wb") as handle:
        handle.write(data)


def _listing(url: str) -> set[str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)} if fs.exists(path) else set()


# --- conditional writes ---------------------------------------------------------------------------

def test_conditional_writes_let_exactly_one_writer_win(place):
    url = f"{place}/object.json"
    assert atomic.read(url) is None
    first = atomic.create(url, b"one")
    assert first and atomic.create(url, b"two") is None, "create-if-absent: the name is taken"
    assert atomic.read(url).data == b"one"
    second = atomic.replace(url, b"three", first)
    assert second and second != first
    assert atomic.replace(url, b"four", first) is None, "replace names a version that is gone"
    assert atomic.delete(url, first) is False and atomic.read(url).data == b"three"
    assert atomic.delete(url, second) is True and atomic.read(url) is None
    assert atomic.replace(url, b"five", second) is None


RACER = textwrap.dedent("""
    import os, sys, time
    from fruits.storage.lease import Lease, OutputBusy
    go = sys.argv[2]
    open(sys.argv[3], "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    try:
        lease = Lease.acquire(sys.argv[1], "racer-" + str(os.getpid()), heartbeat=False)
        print("WON", lease.run_id, flush=True)
    except OutputBusy as exc:
        print("REFUSED", exc, flush=True)
    # Stay alive until every racer has answered: a winner that exited would leave a lease
    # whose process is gone, which the next racer rightly takes over.
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[4]) and time.time() < deadline:
        time.sleep(0.01)
""")


def test_of_several_runs_taking_a_lease_at_once_exactly_one_wins(place, tmp_path):
    racers = []
    for index in range(4):
        ready = tmp_path / f"ready-{index}"
        racers.append((subprocess.Popen([sys.executable, "-c", RACER, place, str(tmp_path / "go"), str(ready),
                                         str(tmp_path / "done")],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT), ready))
    try:
        deadline = time.time() + 120
        while not all(ready.exists() for _, ready in racers):
            assert time.time() < deadline, "racers did not start"
            time.sleep(0.05)
        (tmp_path / "go").touch()
        answers = [process.stdout.readline() for process, _ in racers]  # each racer answers, then waits
        (tmp_path / "done").touch()
        outputs = []
        for answer, (process, _) in zip(answers, racers):
            rest, errors = process.communicate(timeout=120)
            outputs.append((answer + rest, errors))
    finally:
        for process, _ in racers:
            if process.poll() is None:
                process.kill()
    lines = [out.strip() for out, _ in outputs]
    assert sum(line.startswith("WON") for line in lines) == 1, (lines, [err[-500:] for _, err in outputs])
    winner = next(line.split()[1] for line in lines if line.startswith("WON"))
    for line in lines:
        if line.startswith("REFUSED"):
            assert f"run {winner} on host {socket.gethostname()}" in line


# --- the lease --------------------------------------------------------------------------------------

def _foreign_lease(place: str, *, expires_in: float) -> dict:
    now = time.time()
    document = {"run_id": "elsewhere-1", "host": "some-other-host", "pid": 4242, "boot_id": "x",
                "started_utc": "2024-01-31T12:00:00+00:00", "renewed_at": now, "expires_at": now + expires_in,
                "ttl_seconds": expires_in}
    _put_file(f"{place}/.lease.json", json.dumps(document).encode())
    return document


def test_a_live_lease_refuses_naming_its_run_and_a_crashed_one_expires(place):
    _foreign_lease(place, expires_in=3)
    with pytest.raises(OutputBusy) as refused:
        Lease.acquire(place, "mine")
    message = str(refused.value)
    for part in ("run elsewhere-1", "host some-other-host", "pid 4242", "started 2024-01-31T12:00:00+00:00",
                 "is being written by another run"):
        assert part in message, message
    time.sleep(3.2)  # no heartbeat from the other host: its lease expires
    with Lease.acquire(place, "mine") as lease:
        assert holder(place)["took_over"] == {"run_id": "elsewhere-1", "host": "some-other-host", "pid": 4242,
                                              "reason": "expired"}
        lease.ensure_held()
    assert holder(place) is None, "released"


def test_a_lease_of_a_dead_process_on_this_host_is_stale_at_once(place):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    from fruits.storage import lease as lease_module

    document = json.loads(lease_module._encode(lease_module._document("crashed", place, 300)))
    document.update(pid=pid, process_started="1")
    _put_file(f"{place}/.lease.json", json.dumps(document).encode())
    with Lease.acquire(place, "next") as lease:
        assert lease.document["took_over"]["reason"] == f"its process {pid} on this host is gone"


HOLDER = textwrap.dedent("""
    import sys, time
    from fruits.storage.lease import Lease
    lease = Lease.acquire(sys.argv[1], "long-run", ttl=float(sys.argv[2]))
    print("HELD", flush=True)
    time.sleep(float(sys.argv[3]))
    lease.ensure_held()
    lease.release()
    print("RELEASED", flush=True)
""")


def test_the_heartbeat_keeps_a_long_run_s_lease_past_its_time_to_live(place):
    ttl = 1.5
    process = subprocess.Popen([sys.executable, "-c", HOLDER, place, str(ttl), "6"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout.readline().strip() == "HELD", process.stderr.read()[-2000:]
        first = holder(place)
        time.sleep(3 * ttl)  # well past the time to live: only heartbeats keep it
        assert process.poll() is None
        with pytest.raises(OutputBusy, match="run long-run on host"):
            Lease.acquire(place, "intruder")
        assert holder(place)["renewed_at"] > first["renewed_at"] + ttl
        assert process.stdout.readline().strip() == "RELEASED"
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert holder(place) is None


def test_a_run_that_lost_its_lease_publishes_nothing(place):
    _put_file(f"{place}/runs/a/manifest.json", b"{}")
    lease = Lease.acquire(place, "a", heartbeat=False)
    _foreign_lease(place, expires_in=60)  # taken over while we were paused
    with pytest.raises(LeaseLost, match="lost the lease.*run elsewhere-1"):
        commit(OutputLayout(place), "a", expected=None, lease=lease)
    assert read_pointer(place) is None
    lease.release()
    assert holder(place)["run_id"] == "elsewhere-1", "releasing a lost lease leaves the new holder's alone"


# --- the pointer -------------------------------------------------------------------------------------

def test_the_pointer_moves_only_from_the_version_a_run_started_from_and_keeps_n_runs(place):
    output = OutputLayout(place)

    def written(run: str) -> str:
        _put_file(f"{place}/runs/{run}/manifest.json", json.dumps({"run_id": run}).encode())
        return run

    commit(output, written("a"), expected=None)
    assert current_run(place) == f"{place}/runs/a"
    started_from = pointer_token(place)
    commit(output, written("b"), expected=started_from)
    written("crashed")  # a run killed before it published
    with pytest.raises(PublishConflict, match="run c was not published.*now 'b'"):
        commit(output, written("c"), expected=started_from)  # c started when a was current: b's publish wins
    assert current_run(place) == f"{place}/runs/b"
    pointer = commit(output, "c", expected=pointer_token(place), keep=2)
    assert pointer["runs"] == ["c", "b"] and pointer["previous_run_id"] == "b"
    assert _listing(f"{place}/runs") == {"b", "c"}, "a is beyond keep_runs, crashed was never published"
    assert current_run(place) == f"{place}/runs/c"
    commit(output, "b", expected=pointer_token(place), keep=1)
    assert _listing(f"{place}/runs") == {"b"}


# --- whole runs ---------------------------------------------------------------------------------------

CONCURRENT_RUN = textwrap.dedent("""
    import json, os, sys, time
    import fruits.featurize.batches
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare

    original = fruits.featurize.batches.featurize_contents
    stall = float(sys.argv[4])

    def slow(contents, predict, **kwargs):  # the run stays in progress for a while
        time.sleep(stall)
        return original(contents, predict, **kwargs)

    fruits.featurize.batches.featurize_contents = slow  # shipped by value with the UDF's closure
    open(sys.argv[3] + f".ready-{os.getpid()}", "w").close()
    while not os.path.exists(sys.argv[3] + ".go"):
        time.sleep(0.02)
    params = RunParams(input_path=sys.argv[1], output_dir=sys.argv[2], weights="random", k=4,
                       mode="overwrite", partitions=2)
    prepared = prepare(params)
    print("PREPARED", prepared.run_id, flush=True)
    from fruits.spark.session import local_spark

    spark = local_spark("local[2]", driver_memory="1g")
    print("SPARK STARTED", flush=True)
    result = execute(spark, prepared)
    print("RESULT " + json.dumps({"run_id": result.manifest["run_id"], "counts": result.manifest["counts"]}),
          flush=True)
""")


@pytest.mark.spark
def test_two_concurrent_runs_into_one_output_one_writes_the_other_refuses_naming_it(place, tmp_path):
    images = generate_demo_images(tmp_path / "images", per_class=4, seed=7)
    gate = str(tmp_path / "gate")
    # The winner's run outlives its lease's time to live. 6 s, not less: a heartbeat (every 1.2 s)
    # must reach moto within it; with 4 s, at a load of 14 on 2 cores, the test once found the
    # "winner" already ended with exit 0, as if a heartbeat had come too late and the lease expired.
    env = {**os.environ, "FRUITS_LEASE_SECONDS": "6"}
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_RUN, str(images), place, gate, "25"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
            for _ in range(2)]
    try:
        deadline = time.time() + 180
        while len(list(tmp_path.glob("gate.ready-*"))) < 2:
            assert time.time() < deadline and all(r.poll() is None for r in runs), "runs did not start"
            time.sleep(0.1)
        Path(gate + ".go").touch()
        started = time.time()
        while not any(r.poll() is not None for r in runs):  # the loser stops in prepare()
            assert time.time() < started + 300, "neither run refused"
            time.sleep(0.2)
        loser = next(r for r in runs if r.poll() is not None)
        winner = next(r for r in runs if r is not loser)
        lost_out, lost_err = loser.communicate(timeout=30)
        # Long after the lease's 6 s time to live, the heartbeat still keeps the output the winner's.
        while time.time() < started + 18 and winner.poll() is None:
            time.sleep(0.2)
        assert winner.poll() is None, "the winner should still be featurizing"
        with pytest.raises(OutputBusy, match=f"pid {winner.pid}"):
            Lease.acquire(place, "a-third-run")
        won_out, won_err = winner.communicate(timeout=600)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    assert winner.returncode == 0, won_err[-3000:]
    assert loser.returncode != 0 and "SPARK STARTED" not in lost_out and "PREPARED" not in lost_out
    result = json.loads(won_out.split("RESULT ", 1)[1])
    assert f"OutputBusy: output_dir '{place}' is being written by another run: run {result['run_id']} on host " \
           f"{socket.gethostname()} (pid {winner.pid}), started 20" in lost_err, lost_err[-3000:]
    assert result["counts"] == {"input": 25, "images": 24, "featurized": 24, "rejected": 1,
                                "featurized_this_run": 24}
    assert current_run(place).endswith(f"/runs/{result['run_id']}")
    assert holder(place) is None, "the winner released its lease"


def _features_paths(run: str) -> frozenset:
    import fsspec
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(f"{run}/features")
    fs.invalidate_cache()  # s3fs caches listings: a reader must not read a stale one
    return frozenset(pq.read_table(path, filesystem=fs, columns=["path"]).column("path").to_pylist())


def test_a_reader_polling_during_a_publish_on_s3_sees_one_run_or_the_other(spark, moto, tmp_path, monkeypatch):
    import boto3

    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare

    bucket = f"fruits-reader-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration=REGION)
    output = f"s3://{bucket}/out"
    sets = {name: generate_demo_images(tmp_path / name, per_class=3, seed=seed) for name, seed in (("a", 1), ("b", 2))}

    def run(name: str):
        params = RunParams(input_path=str(sets[name]), output_dir=output, weights="random", k=3, mode="overwrite",
                           partitions=4)
        return execute(spark, prepare(params))

    first = run("a")
    expected = {first.manifest["run_id"]: _features_paths(current_run(output))}
    assert len(next(iter(expected.values()))) == 18

    uploads = {"count": 0}

    def slow_upload(local_folder, target):  # fruits.storage.location.upload, widened: objects arrive slowly
        fs, root = location.filesystem(target)
        for folder, _, files in os.walk(local_folder):
            for name in files:
                path = os.path.join(folder, name)
                time.sleep(0.05)
                fs.put_file(path, f"{root}/{os.path.relpath(path, local_folder)}")
                uploads["count"] += 1

    monkeypatch.setattr(location, "upload", slow_upload)
    outcome = {}
    writer = threading.Thread(target=lambda: outcome.update(result=run("b")), daemon=True)
    writer.start()
    seen = []
    deadline = time.time() + 600
    while writer.is_alive():
        assert time.time() < deadline
        run_dir = current_run(output)
        seen.append((uploads["count"], run_dir, _features_paths(run_dir)))
        # Reads matter once objects arrive (one per 0.05 s at most). Before that the reader only sees
        # the old run; reading there without a pause kept a core busy against moto for the whole run.
        time.sleep(0.01 if uploads["count"] else 0.2)
    writer.join(timeout=600)
    run_dir = current_run(output)
    seen.append((uploads["count"], run_dir, _features_paths(run_dir)))  # once the publish is over
    second = outcome["result"]
    expected[second.manifest["run_id"]] = _features_paths(current_run(output))
    by_run = {f"{output}/runs/{run_id}": paths for run_id, paths in expected.items()}
    for count, run_dir, paths in seen:
        assert paths == by_run[run_dir], f"after {count} uploaded objects the reader saw a mix or a part"
    during = [run_dir for count, run_dir, _ in seen if 0 < count < uploads["count"]]
    assert len(during) >= 3, "the reader must have read while the new run was being uploaded"
    assert {run_dir for _, run_dir, _ in seen} == set(by_run), "it saw the old run, then the new one"
    assert all(p.startswith(str(sets["b"])) for p in expected[second.manifest["run_id"]])
    pointer = read_pointer(output)
    assert pointer["runs"] == [second.manifest["run_id"], first.manifest["run_id"]]
    assert _listing(f"{output}/runs") == set(pointer["runs"])
    assert not [name for name in _listing(output) if name not in ("current.json", "runs")]


def test_fruits_run_refuses_a_busy_output_before_any_kernel(tmp_path):
    out = tmp_path / "out"
    _foreign_lease(str(out), expires_in=120)
    result = subprocess.run([sys.executable, "-m", "fruits.cli", "run", "--output", str(out), "-p", "weights",
                             "random"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: output_dir" in result.stderr and "is being written by another run: run elsewhere-1 on host " \
           "some-other-host (pid 4242), started 2024-01-31T12:00:00+00:00" in result.stderr
    assert "Executing notebook" not in result.stderr and sorted(p.name for p in out.iterdir()) == [".lease.json"]


def test_fruits_project_reads_a_run_in_a_bucket_and_publishes_into_a_bucket(spark, moto, tmp_path, monkeypatch):
    """``fruits project`` between two s3:// folders (moto) with a Spark that has no S3 connector: the run's
    classifier is found and applied, the projection is published through the pointer, and no local copy stays."""
    import tempfile

    import boto3
    import pyarrow.parquet as pq

    from fruits.run.demo_data import CLASSES, generate_demo_training_images
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.run.projection import project_images

    bucket = f"fruits-project-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration=REGION)
    classes = CLASSES[:3]
    images = generate_demo_images(tmp_path / "images", per_class=5, seed=41, classes=classes)
    train = generate_demo_training_images(images, per_class=5, seed=41, classes=classes)
    run_output, projected_output = f"s3://{bucket}/runs/evaluated", f"s3://{bucket}/projected"
    result = execute(spark, prepare(RunParams(input_path=str(images), output_dir=run_output, weights="random", k=4,
                                              train_path=str(train))))
    labels = result.manifest["evaluation"]["labels"]
    assert location.exists(f"{current_run(run_output)}/classifier")

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the mirrors and model copies go
    document = project_images(spark, run_output, str(images), projected_output)
    assert document["classifier"] is True and document["run"] == current_run(run_output)
    assert document["counts"] == {"input": 16, "projected": 15, "rejected": 1}  # the demo marker file: rejected
    projected = current_run(projected_output)
    assert projected == f"{projected_output}/runs/{document['projection_id']}"
    fs, path = location.filesystem(f"{projected}/projected")
    rows = pq.read_table(path, filesystem=fs).to_pylist()
    assert len(rows) == 15 and {row["predicted_label"] for row in rows} <= set(labels)
    assert all(0 < row["probability"] <= 1 and len(row["pca_features"]) == 4 for row in rows)
    assert os.listdir(scratch) == [], "the local mirror and the models' copy are removed"
    assert holder(projected_output) is None
