"""Does int8 pay on this CPU, and do the 7-bit weights cost speed? The network alone, three graphs.

Session 8 measured ``onnx-int8`` featurizing slower than the fp32 default in Spark
(81.3 against 86.0 images/s) on a host where session 7's figures had it 1.5x faster;
in between the int8 graph had moved to 7-bit weights (``reduce_range``). This
separates the two causes on one host, in one process, with no Spark: the fp32 graph
(the default engine), the int8 graph as the engine builds it (7-bit weights), and the
same graph with full 8-bit weights, each calibrated on the engine's own choice of
images and timed on other real Test images in interleaved rounds (each keeps its best).
It prints images/s, the ratio to fp32, and how close each int8 graph's features are to
fp32's (cosine per image: median and minimum).

    FRUITS_WEIGHTS=... FRUITS_TEST_IMAGES=... python bench/int8_bits.py --images 256 --repeat 3

Results go to ``bench/results/int8_bits/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from fruits.engines.onnx import cached_onnx, onnx_predictor  # noqa: E402
from fruits.engines.onnx_int8 import CALIBRATION_IMAGES, choose_calibration, quantize, read_calibration  # noqa: E402
from fruits.engines.weights import resolve_weights  # noqa: E402
from fruits.featurize.shapes import INPUT_SIZE  # noqa: E402


def test_images(root: Path) -> list[str]:
    return sorted(str(path) for path in root.rglob("*.jpg"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="timed images, spread over Test's classes")
    parser.add_argument("--batch", type=int, default=32, help="images per call (the engine's batch)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (a Spark task uses 1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "int8_bits"))
    args = parser.parse_args()

    data = Path(os.environ["FRUITS_TEST_IMAGES"]) / "Test"
    paths = test_images(data)
    calibration_paths = choose_calibration(paths, count=CALIBRATION_IMAGES)
    others = sorted(set(paths) - set(calibration_paths))
    timed_paths = choose_calibration(others, count=args.images)  # the same even spread, other images
    weights = resolve_weights(os.environ.get("FRUITS_WEIGHTS"), allow_random=False)
    fp32 = cached_onnx(weights, input_size=INPUT_SIZE)
    _, calibration_pixels = read_calibration(calibration_paths, input_size=INPUT_SIZE)
    _, pixels = read_calibration(timed_paths, input_size=INPUT_SIZE)
    graphs = {
        "fp32 (default engine)": fp32,
        "int8, 7-bit weights (onnx-int8)": quantize(fp32, calibration_pixels, reduce_range=True),
        "int8, 8-bit weights": quantize(fp32, calibration_pixels, reduce_range=False),
    }
    predictors = {name: onnx_predictor(graph, threads=args.threads) for name, graph in graphs.items()}
    features = {name: np.concatenate([predict(pixels[i:i + args.batch]) for i in range(0, len(pixels), args.batch)])
                for name, predict in predictors.items()}  # also warms each session up
    best = {name: float("inf") for name in graphs}
    rounds = []
    for _ in range(args.repeat):
        for name, predict in predictors.items():
            started = time.perf_counter()
            for i in range(0, len(pixels), args.batch):
                predict(pixels[i:i + args.batch])
            wall = time.perf_counter() - started
            best[name] = min(best[name], wall)
            rounds.append({"graph": name, "seconds": round(wall, 3)})
    reference = features["fp32 (default engine)"]
    rows = []
    for name in graphs:
        similarity = cosines(features[name], reference)
        rows.append({"graph": name, "images_per_second": round(len(pixels) / best[name], 1),
                     "x_fp32": round(best["fp32 (default engine)"] / best[name], 3),
                     "cosine_median": round(float(np.median(similarity)), 4),
                     "cosine_min": round(float(similarity.min()), 4)})
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    header = (f"{len(pixels)} Test images ({len(calibration_paths)} others calibrate), batch {args.batch}, "
              f"{args.threads} thread(s), best of {args.repeat} interleaved rounds; CPU {cpu} "
              f"(avx512_vnni: {'avx512_vnni' in flags}, avx_vnni: {' avx_vnni' in flags}); commit {commit}, "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
    table = ["| graph | images/s | x fp32 | cosine to fp32, median | minimum |", "|---|---:|---:|---:|---:|"]
    table += [f"| {r['graph']} | {r['images_per_second']} | {r['x_fp32']} | {r['cosine_median']} | {r['cosine_min']} |"
              for r in rows]
    text = header + "\n\n" + "\n".join(table) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_bits.md").write_text(text)
    (out / "int8_bits.json").write_text(json.dumps({"header": header, "rows": rows, "rounds": rounds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
