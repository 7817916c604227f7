"""Memory of a client-mode driver doing the notebook's work: what each Livy session costs EMR's primary node.

EMR's Livy runs sessions in client mode (``emr-config/configurations.json``), so each
notebook session's driver (a JVM with ``driverMemory`` of heap, and the Python process
that runs the notebook's cells) lives on the primary node, beside the NameNode, the
ResourceManager, Livy and JupyterHub. This runs the pipeline's notebook (``fruits run``:
the same library calls the cloud notebook makes) with the Livy session's
``driverMemory`` against a standalone cluster on this machine, whose executor (EMR's
shape: 4 cores, 1 GiB heap) is a separate process, and records the peak resident memory (``VmHWM``, the
kernel's high-water mark) of the driver JVM and of the notebook's Python kernel.

    python bench/livy_driver.py --images 1100     # real Test images from FRUITS_TEST_IMAGES
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from emr_shape import MIB, _commit, copy_images, start_cluster, stop_cluster  # noqa: E402


def _status(pid: int) -> dict:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return {line.split(":")[0]: line.split(":", 1)[1].split() for line in handle}
    except OSError:
        return {}


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _status(int(entry)).get("PPid")
            if parent:
                children.setdefault(int(parent[0]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kind(pid: int) -> str | None:
    try:
        command = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    text = b" ".join(command).decode(errors="replace")
    if "java" in os.path.basename(command[0].decode(errors="replace")) and "SparkSubmit" in text:
        return "driver JVM"
    if "ipykernel" in text:
        return "notebook Python (the Livy session's REPL)"
    return None


class DriverPeaks:
    """Polls the process tree of ``root``; keeps each driver process's ``VmHWM`` (peak RSS)."""

    def __init__(self, root: int) -> None:
        self.root, self.peaks, self._stop = root, {}, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            for pid in _tree(self.root):
                kind = _kind(pid)
                hwm = _status(pid).get("VmHWM")
                if kind and hwm:
                    self.peaks[(kind, pid)] = max(self.peaks.get((kind, pid), 0), int(hwm[0]) * 1024)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        by_kind: dict[str, int] = {}
        for (kind, _), peak in self.peaks.items():
            by_kind[kind] = max(by_kind.get(kind, 0), peak)
        return {kind: round(peak / MIB) for kind, peak in by_kind.items()}


def main(argv: list[str] | None = None) -> int:
    from fruits.spark import settings as spark_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1100)
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--out", default=str(HERE / "results" / "emr-shape"))
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="fruits-livy-driver-"))
    test = Path(os.environ.get("FRUITS_TEST_IMAGES", "")) / "Test"
    if not test.is_dir():
        parser.error("set FRUITS_TEST_IMAGES to the Fruits-360 folder holding Test/")
    images = copy_images(test, scratch / "images", args.images)
    (scratch / "cluster").mkdir()
    master, processes = start_cluster(scratch / "cluster")
    try:
        command = [sys.executable, "-m", "fruits.cli", "run", "--input", str(images), "--output", str(scratch / "out"),
                   "-p", "master", master, "-p", "engine", args.engine,
                   "-p", "driver_memory", spark_settings.DRIVER_MEMORY]
        started = time.monotonic()
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = DriverPeaks(run.pid)
        output, _ = run.communicate(timeout=1800)
        peaks = sampler.stop()
        seconds = time.monotonic() - started
    finally:
        stop_cluster(processes)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)  # the copied images, the run's output, worker logs
    if run.returncode != 0:
        print(output[-4000:])
        return run.returncode
    document = {"commit": _commit(), "images": args.images, "engine": args.engine,
                "driver_memory": spark_settings.DRIVER_MEMORY, "seconds": round(seconds), "peak_rss_mib": peaks,
                "session_total_mib": sum(peaks.values())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "livy_driver.json").write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
