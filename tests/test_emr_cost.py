"""``fruits emr create-cluster --images N``: hours and USD from a recorded run, the price file and the request.

The arithmetic is checked on a hand-computed example; the rest runs the real command (``--dry-run``,
nothing reaches AWS) against the repository's own recorded run and ``emr-config/prices.json``, or
against copies of them changed in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fruits.cloud.emr import cluster, cost

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-test-bucket"


def fruits(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fruits.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def create_dry_run(*options, env=None):
    return fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1", "--dry-run", *options,
                  env=env)


def request(**options) -> dict:
    return cluster.run_job_flow_request(bucket=BUCKET, prefix="fruits", wheel="w.whl", **options)


def write_measurement(path: Path, *, images=7200, total=10.0, featurize=8.0, cores=2, engine="onnx") -> Path:
    path.write_text(json.dumps({"images": images, "cores": cores, "results": {"default": {
        "engine": engine, "images": images, "featurized": images,
        "stages": {"read": 1.0, "featurize": featurize, "write": 0.5, "pca": 0.5, "total": total}}}}))
    return path


def price_entry(**changes) -> dict:
    entry = {"vcpus": 4, "threads_per_core": 2, "on_demand_usd_per_hour": 1.0, "on_demand_source": "test",
             "on_demand_read": "2026-12", "spot_usd_per_hour": 0.25, "spot_source": "test", "spot_read": "2026-12",
             "emr_usd_per_hour": 0.5, "emr_source": "test"}
    entry.update(changes)
    return entry


def write_prices(path: Path, **changes) -> Path:
    path.write_text(json.dumps({"region": "test-region-1", "currency": "USD",
                                "instances": {"m5.xlarge": price_entry(**changes)},
                                "cluster_start_minutes": {"low": 10, "high": 20, "source": "test"},
                                "excluded": "nothing else"}))
    return path


def test_hours_and_usd_on_a_hand_checked_example(tmp_path):
    # 7,200 images in 10 s on 2 vCPUs: 360 images/s per vCPU. The default cluster's 2 core + 1 task
    # m5.xlarge give the executors 12 vCPUs (6 physical cores): 4,320 images/s, so 15,552,000 images
    # take 1 h per vCPU, 2 h per physical core. Per hour, 4 instances x (1.00 EC2 + 0.50 EMR) = 6.00;
    # with the task node on spot 3 x 1.50 + 1 x (0.25 + 0.50) = 5.25.
    measurement = cost.read_measurement(write_measurement(tmp_path / "m.json"), "default")
    prices = cost.load_prices(write_prices(tmp_path / "p.json"))
    assert measurement.per_vcpu == 360
    found = cost.estimate(request(), [15_552_000], measurements=[measurement], prices=prices)
    assert (found.worker_vcpus, found.worker_cores) == (12, 6)
    row = found.rows[0]
    assert row.hours_low == pytest.approx(1.0) and row.hours_high == pytest.approx(2.0)
    assert row.usd_per_hour_on_demand == pytest.approx(6.0)
    assert row.usd_per_hour_spot_task == pytest.approx(5.25)
    text = cost.render(found)
    assert "| 15,552,000 | 1.00 h - 2.00 h | 6.00 - 12.00 | 5.25 - 10.50 |" in text
    assert "USD, task on-demand" in text and "EC2 only" not in text  # the EMR price is known and included
    assert "1.00-2.00" in text  # the start: 10-20 min at 6.00/h
    assert "idle timeout (3600 s) after the last step, 6.00" in text


def test_an_unknown_emr_price_is_left_out_and_said_so(tmp_path):
    measurement = cost.read_measurement(write_measurement(tmp_path / "m.json"), "default")
    prices = cost.load_prices(write_prices(tmp_path / "p.json", emr_usd_per_hour=None))
    found = cost.estimate(request(), [15_552_000], measurements=[measurement], prices=prices)
    assert found.rows[0].usd_per_hour_on_demand == pytest.approx(4.0)
    text = cost.render(found)
    assert "USD, EC2 only, task on-demand" in text and "NOT included" in text
    assert "| 15,552,000 | 1.00 h - 2.00 h | 4.00 - 8.00 | 3.25 - 6.50 |" in text


def test_the_rates_come_from_the_recorded_runs():
    measurements = cost.read_measurements()
    assert [m.path for m in measurements] == [path for path, _ in cost.MEASUREMENTS]
    for (path, result), measurement in zip(cost.MEASUREMENTS, measurements):
        data = json.loads((ROOT / path).read_text())
        recorded = data["results"][result]
        assert measurement.engine == recorded["engine"]
        assert measurement.images == recorded["featurized"]
        assert measurement.per_vcpu == pytest.approx(recorded["featurized"] / recorded["stages"]["total"]
                                                     / data["cores"])
        assert measurement.cpu == data.get("cpu", "CPU not recorded")
        committed = subprocess.run(["git", "log", "-1", "--format=%h", "--", path], cwd=ROOT,
                                   capture_output=True, text=True).stdout.strip()
        if committed:  # a git checkout: the output names the commit that recorded the figures
            assert measurement.commit == committed
    # The hosts measured are not alike: the range must span them, not pick one.
    assert max(m.per_vcpu for m in measurements) > 2 * min(m.per_vcpu for m in measurements)


def test_the_range_runs_from_the_fastest_host_per_vcpu_to_the_slowest_per_physical_core(tmp_path):
    # 360 and 90 images/s per vCPU; the default cluster's workers have 12 vCPUs, 6 physical cores.
    fast = cost.read_measurement(write_measurement(tmp_path / "fast.json", total=10.0))
    slow = cost.read_measurement(write_measurement(tmp_path / "slow.json", total=40.0))
    prices = cost.load_prices(write_prices(tmp_path / "p.json"))
    for order in ([fast, slow], [slow, fast]):
        found = cost.estimate(request(), [15_552_000], measurements=order, prices=prices)
        assert (found.fastest, found.slowest) == (fast, slow)
        assert found.rows[0].hours_low == pytest.approx(15_552_000 / (360 * 12) / 3600)  # 1 h
        assert found.rows[0].hours_high == pytest.approx(15_552_000 / (90 * 6) / 3600)  # 8 h
    text = cost.render(found)
    assert "| 15,552,000 | 1.00 h - 8.00 h | 6.00 - 48.00 | 5.25 - 42.00 |" in text
    assert "from 360.0 images/s on each of the 12 vCPUs" in text
    assert "90.0 images/s on each of the 6 physical cores" in text
    assert text.count("  rate: ") == 2
    # Both files given to the command: the same range, each named.
    result = create_dry_run("--images", "15552000", "--measurement", str(tmp_path / "slow.json"),
                            "--measurement", str(tmp_path / "fast.json"), "--prices", str(tmp_path / "p.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 15,552,000 | 1.00 h - 8.00 h | 6.00 - 48.00 | 5.25 - 42.00 |" in result.stderr
    assert str(tmp_path / "slow.json") in result.stderr and str(tmp_path / "fast.json") in result.stderr
    with pytest.raises(ValueError, match="at least one recorded run"):
        cost.estimate(request(), [1000], measurements=[], prices=prices)


def test_another_recorded_run_changes_the_estimate(tmp_path):
    fast = write_measurement(tmp_path / "fast.json", total=5.0)
    slow = write_measurement(tmp_path / "slow.json", total=10.0)
    prices = cost.load_prices(write_prices(tmp_path / "p.json"))
    hours = [cost.estimate(request(), [1_000_000], measurements=[cost.read_measurement(path)], prices=prices)
             .rows[0].hours_low for path in (fast, slow)]
    assert hours[1] == pytest.approx(2 * hours[0])


@pytest.mark.parametrize("content, message", [
    (None, "no price file"),
    ("{not json", "not readable JSON"),
    (json.dumps({"region": "r", "currency": "USD", "instances": {}}), "lacks a field"),
])
def test_a_missing_or_garbled_price_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        cost.load_prices(path)
    result = create_dry_run("--images", "1000", "--prices", str(path))
    assert result.returncode == 2 and message in result.stderr and str(path) in result.stderr
    assert result.stdout == ""  # refused before anything is printed


@pytest.mark.parametrize("changes, message", [
    ({"on_demand_usd_per_hour": "0.224"}, "on_demand_usd_per_hour must be a positive number"),
    ({"on_demand_usd_per_hour": 0}, "on_demand_usd_per_hour must be a positive number"),
    ({"on_demand_source": ""}, "on_demand_source must be given"),
    ({"spot_read": None}, "spot_read must be given"),
])
def test_a_price_without_a_number_or_a_source_is_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        cost.load_prices(write_prices(tmp_path / "p.json", **changes))


def test_an_instance_type_without_prices_or_a_spot_price_is_refused(tmp_path):
    prices = cost.load_prices(write_prices(tmp_path / "p.json", spot_usd_per_hour=None))
    measurement = cost.read_measurement(write_measurement(tmp_path / "m.json"))
    with pytest.raises(ValueError, match="no spot price for m5.xlarge"):
        cost.estimate(request(), [1000], measurements=[measurement], prices=prices)
    bigger = request()
    bigger["Instances"]["InstanceGroups"][1]["InstanceType"] = "m5.2xlarge"
    with pytest.raises(ValueError, match="no prices for 'm5.2xlarge'"):
        cost.estimate(bigger, [1000], measurements=[measurement], prices=prices)


def test_a_missing_or_garbled_measurement_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no measurement at"):
        cost.read_measurement(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text(json.dumps({"cores": 2, "results": {"default": {"engine": "onnx"}}}))
    with pytest.raises(ValueError, match="no usable result 'default'"):
        cost.read_measurement(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="non-positive"):
        cost.read_measurement(write_measurement(tmp_path / "zero.json", total=0.0))
    result = create_dry_run("--images", "1000", "--measurement", str(tmp_path / "absent.json"))
    assert result.returncode == 2 and "no measurement at" in result.stderr


def test_dry_run_prints_the_estimate_on_stderr_and_keeps_stdout_the_request():
    plain = create_dry_run()
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "Cost estimate" not in plain.stderr  # no input size, no estimate
    result = create_dry_run("--images", "2000000")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == json.loads(plain.stdout)  # what parses the dry run still does

    # The figures, computed here from the files themselves: the fastest recorded rate on every vCPU,
    # the slowest on physical cores only (an m5.xlarge: 4 vCPUs, 2 cores).
    rates = {}
    for path, result_name in cost.MEASUREMENTS:
        recorded = json.loads((ROOT / path).read_text())
        run = recorded["results"][result_name]
        rates[path] = run["featurized"] / run["stages"]["total"] / recorded["cores"]
        assert f"{rates[path]:.1f} images/s per vCPU" in result.stderr and path in result.stderr
        assert f"engine {run['engine']}" in result.stderr
    m5 = json.loads((ROOT / "emr-config" / "prices.json").read_text())["instances"]["m5.xlarge"]
    shape = json.loads((ROOT / "emr-config" / "cluster.json").read_text())["Instances"]["InstanceGroups"]
    instances = sum(g["InstanceCount"] for g in shape)
    vcpus = sum(g["InstanceCount"] * 4 for g in shape if g["InstanceRole"] in ("CORE", "TASK"))
    low = 10_000_000 / (max(rates.values()) * vcpus) / 3600
    high = 10_000_000 / (min(rates.values()) * vcpus / 2) / 3600
    on_demand, spot = (instances * m5["on_demand_usd_per_hour"],
                       (instances - 1) * m5["on_demand_usd_per_hour"] + m5["spot_usd_per_hour"])
    assert f"| 10,000,000 | {low:.2f} h - {high:.2f} h | {on_demand * low:.2f} - {on_demand * high:.2f} " \
           f"| {spot * low:.2f} - {spot * high:.2f} |" in result.stderr
    assert f"| 1,000,000 | {cost.duration(low / 10)} - {cost.duration(high / 10)} |" in result.stderr
    assert "| 2,000,000 |" in result.stderr
    for named in ("emr-config/prices.json", m5["on_demand_read"], m5["spot_read"], "hyper-thread"):
        assert named in result.stderr


def test_more_task_nodes_in_cluster_json_change_the_estimate(tmp_path):
    config_dir = tmp_path / "emr-config"
    shutil.copytree(ROOT / "emr-config", config_dir)
    template = json.loads((config_dir / "cluster.json").read_text())
    for group in template["Instances"]["InstanceGroups"]:
        if group["InstanceRole"] == "TASK":
            group["InstanceCount"] = 2
    (config_dir / "cluster.json").write_text(json.dumps(template))
    default = create_dry_run("--images", "1000000")
    wider = create_dry_run("--images", "1000000", env={"FRUITS_EMR_CONFIG": str(config_dir)})
    assert default.returncode == 0 and wider.returncode == 0, wider.stderr[-2000:]
    assert json.loads(wider.stdout)["request"]["Instances"]["InstanceGroups"][2]["InstanceCount"] == 2
    assert "12 vCPUs" in default.stderr and "16 vCPUs" in wider.stderr

    def ten_million(stderr):
        return next(line for line in stderr.splitlines() if line.startswith("| 10,000,000 |"))
    assert ten_million(default.stderr) != ten_million(wider.stderr)
    # In hours 12/16 of the default; in USD 5/4 instances for 3/4 of the time.
    measurements, prices = cost.read_measurements(), cost.load_prices()
    two_tasks = request()
    two_tasks["Instances"]["InstanceGroups"][2]["InstanceCount"] = 2
    one, two = (cost.estimate(r, [10_000_000], measurements=measurements, prices=prices).rows[0]
                for r in (request(), two_tasks))
    assert two.hours_low == pytest.approx(one.hours_low * 12 / 16)
    assert two.hours_high == pytest.approx(one.hours_high * 12 / 16)
    assert two.usd(two.hours_low, spot_task=False) == pytest.approx(
        one.usd(one.hours_low, spot_task=False) * 5 / 4 * 12 / 16)


def test_a_non_positive_image_count_is_refused():
    result = create_dry_run("--images", "0")
    assert result.returncode == 2 and "--images must be a positive number" in result.stderr
    with pytest.raises(ValueError, match="positive integer"):
        cost.estimate(request(), [-5], measurements=cost.read_measurements(), prices=cost.load_prices())


def test_sizes_always_show_one_and_ten_million():
    assert cost.sizes(None) == [1_000_000, 10_000_000]
    assert cost.sizes(20_622) == [20_622, 1_000_000, 10_000_000]
    assert cost.sizes(1_000_000) == [1_000_000, 10_000_000]


def test_the_docs_table_is_what_the_command_prints():
    """docs/emr.md's 1 M and 10 M rows are the command's own: a new measurement or price updates both."""
    printed = create_dry_run("--images", "1000000")
    assert printed.returncode == 0, printed.stderr[-2000:]
    page = (ROOT / "docs" / "emr.md").read_text()
    section = page.split("### What a run costs", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith(("| 1,000,000 |", "| 10,000,000 |"))]
    assert len(rows) == 2, rows
    for row in rows:
        assert row in printed.stderr.splitlines(), f"docs/emr.md's row {row!r} is not what the command prints"
