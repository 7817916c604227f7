"""What featurizing N images costs on the cluster ``create-cluster`` would request: hours and USD.

Three inputs, each from a file, none a constant here:

- the cluster's shape: the ``emr.run_job_flow`` request :mod:`fruits.cloud.emr.cluster` builds
  (instance groups, types, counts, ``Market``), so the estimate always prices the cluster that
  would be launched;
- the rate: measured runs recorded in ``bench/results/`` (by default the full Test split with
  the default engine on the fastest and on the slowest host measured, :data:`MEASUREMENTS`):
  images over the pipeline's own seconds (read, featurize, write, PCA), on the vCPUs it ran on;
- the prices: ``emr-config/prices.json`` (region, price per instance-hour, where each figure
  was read and when).

The arithmetic, and its assumptions:

- executors run on the core and task nodes; the primary runs the drivers (Livy), so it adds
  cost but no speed. Throughput = measured images/s per vCPU x the workers' vCPUs.
- vCPUs are not alike, so every time is a range. The same code ran 2.2x apart per vCPU on two
  2-vCPU hosts (an AMD EPYC with AVX2 only, and one whose CPU was not recorded), and an m5.xlarge's 4
  vCPUs are 2 physical cores with 2 hyper-threads each, whose threads share the core's
  arithmetic units. The optimistic end is the fastest measured rate on every vCPU of the
  workers, the pessimistic end the slowest measured rate on their physical cores only.
- every instance is billed for the whole run (EC2 price, plus the EMR price per instance-hour
  when ``prices.json`` has one). Task nodes are shown on-demand and on spot; core and primary
  nodes keep the market the request gives them (on-demand by default, as AWS advises: losing a
  core node loses HDFS blocks and YARN's ApplicationMasters).
- the cluster's start and an idle cluster left to terminate itself are fixed costs, shown apart;
  S3, EBS and data transfer are excluded (``prices.json`` says so).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fruits import config
from fruits.cloud.emr.templates import emr_config_dir

#: The recorded runs the rate comes from: (file under the checkout, result name in it). Both the
#: full Test split (20,622 images) with the default engine, on 2 vCPUs: the fastest host measured
#: (2026-11-30, session 6's final code, 103.5 images/s per vCPU) and the slowest (an AMD EPYC
#: with AVX2 only, 2026-12-06). The estimate's range spans them.
MEASUREMENTS = (("bench/results/end_to_end/full-10.json", "default"),
                ("bench/results/end_to_end/full-s10.json", "default"))

#: Sizes the estimate always shows, besides the one asked for.
STANDARD_SIZES = (1_000_000, 10_000_000)

#: The roles whose nodes run executors (the primary runs the drivers).
WORKER_ROLES = ("CORE", "TASK")


@dataclass(frozen=True)
class Measurement:
    """A measured run: how many images, in how many seconds of the pipeline, on how many vCPUs."""

    path: str
    result: str
    engine: str
    images: int
    seconds: float
    featurize_seconds: float
    vcpus: int
    cpu: str
    commit: str
    date: str

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds

    @property
    def per_vcpu(self) -> float:
        """Images per second per vCPU of the machine it was measured on."""
        return self.images_per_second / self.vcpus

    @property
    def featurize_per_second(self) -> float:
        return self.images / self.featurize_seconds


@dataclass(frozen=True)
class InstancePrice:
    """One instance type's facts and prices, as ``prices.json`` gives them."""

    vcpus: int
    threads_per_core: int
    on_demand: float
    spot: float | None
    emr: float | None
    on_demand_source: str
    on_demand_read: str
    spot_source: str
    spot_read: str

    @property
    def physical_cores(self) -> int:
        return self.vcpus // self.threads_per_core


@dataclass(frozen=True)
class Prices:
    region: str
    currency: str
    instances: dict[str, InstancePrice]
    start_minutes: tuple[float, float]
    start_source: str
    excluded: str
    path: str

    def instance(self, instance_type: str) -> InstancePrice:
        if instance_type not in self.instances:
            raise ValueError(f"{self.path} has no prices for {instance_type!r} (it has: "
                             f"{', '.join(sorted(self.instances)) or 'none'}): add them, with their source and date")
        return self.instances[instance_type]


@dataclass(frozen=True)
class Group:
    """One instance group of the request: its role, type, count and market."""

    role: str
    instance_type: str
    count: int
    market: str


def _git(path: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "log", "-1", *args, "--", path.name], cwd=path.parent,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def read_measurements(paths: list[str | Path] | None = None) -> list[Measurement]:
    """The recorded runs at ``paths`` (their ``default`` result), or :data:`MEASUREMENTS`."""
    if not paths:
        return [read_measurement(config.project_root() / path, result) for path, result in MEASUREMENTS]
    return [read_measurement(path) for path in paths]


def read_measurement(path: str | Path | None = None, result: str | None = None) -> Measurement:
    """One recorded run (default: the first of :data:`MEASUREMENTS`), with the commit and date that recorded it.

    Raises
    ------
    ValueError
        The file is missing, is not JSON, or lacks the result or its fields.
    """
    if path is None:
        path, result = config.project_root() / MEASUREMENTS[0][0], result or MEASUREMENTS[0][1]
    path, result = Path(path), result or "default"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no measurement at {path}: the rate comes from a recorded run "
                         f"(bench/end_to_end.py writes them under bench/results/)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"measurement {path} is not readable JSON: {exc}") from None
    try:
        run = data["results"][result]
        stages = run["stages"]
        measurement = Measurement(
            path=_shown(str(path)), result=result, engine=str(run["engine"]), images=int(run["featurized"]),
            seconds=float(stages["total"]), featurize_seconds=float(stages["featurize"]), vcpus=int(data["cores"]),
            cpu=str(data.get("cpu") or "CPU not recorded"), commit=_git(path, "--format=%h") or "not committed",
            date=_git(path, "--format=%cs") or "unknown")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"measurement {path} has no usable result {result!r} "
                         f"(needs cores, results.{result}.engine, featurized, stages.total, stages.featurize): "
                         f"{exc!r}") from None
    if measurement.images <= 0 or measurement.seconds <= 0 or measurement.featurize_seconds <= 0 \
            or measurement.vcpus <= 0:
        raise ValueError(f"measurement {path} result {result!r} has a non-positive count or time")
    return measurement


def load_prices(path: str | Path | None = None) -> Prices:
    """``emr-config/prices.json`` (or ``path``), checked: every figure a positive number with its source.

    Raises
    ------
    ValueError
        The file is missing, is not JSON, or a price, source or date is missing or not a number.
    """
    if path is None:
        path = emr_config_dir() / "prices.json"
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no price file at {path}: the estimate needs emr-config/prices.json") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"price file {path} is not readable JSON: {exc}") from None

    def positive(value, what, *, optional=False):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"price file {path}: {what} must be a positive number, got {value!r}")
        return float(value)

    def text(value, what):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"price file {path}: {what} must be given (where and when the figure was read)")
        return value

    try:
        instances = {}
        for name, entry in data["instances"].items():
            instances[name] = InstancePrice(
                vcpus=int(positive(entry["vcpus"], f"{name}.vcpus")),
                threads_per_core=int(positive(entry["threads_per_core"], f"{name}.threads_per_core")),
                on_demand=positive(entry["on_demand_usd_per_hour"], f"{name}.on_demand_usd_per_hour"),
                spot=positive(entry.get("spot_usd_per_hour"), f"{name}.spot_usd_per_hour", optional=True),
                emr=positive(entry.get("emr_usd_per_hour"), f"{name}.emr_usd_per_hour", optional=True),
                on_demand_source=text(entry.get("on_demand_source"), f"{name}.on_demand_source"),
                on_demand_read=text(entry.get("on_demand_read"), f"{name}.on_demand_read"),
                spot_source=text(entry.get("spot_source"), f"{name}.spot_source")
                if entry.get("spot_usd_per_hour") is not None else "",
                spot_read=text(entry.get("spot_read"), f"{name}.spot_read")
                if entry.get("spot_usd_per_hour") is not None else "")
        start = data["cluster_start_minutes"]
        return Prices(region=text(data["region"], "region"), currency=text(data["currency"], "currency"),
                      instances=instances,
                      start_minutes=(positive(start["low"], "cluster_start_minutes.low"),
                                     positive(start["high"], "cluster_start_minutes.high")),
                      start_source=text(start["source"], "cluster_start_minutes.source"),
                      excluded=text(data["excluded"], "excluded"), path=str(path))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"price file {path} lacks a field: {exc!r}") from None


def instance_groups(request: dict) -> list[Group]:
    """The instance groups of an ``emr.run_job_flow`` request, as the cluster would get them."""
    try:
        groups = [Group(role=g["InstanceRole"], instance_type=g["InstanceType"], count=int(g["InstanceCount"]),
                        market=g.get("Market", "ON_DEMAND")) for g in request["Instances"]["InstanceGroups"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the cluster request has no usable Instances.InstanceGroups: {exc!r}") from None
    if not any(g.role in WORKER_ROLES and g.count > 0 for g in groups):
        raise ValueError("the cluster request has no core or task node: nothing would run the executors")
    return groups


def hourly_price(groups: list[Group], prices: Prices, *, task_market: str) -> float:
    """The cluster's price per hour: every instance's EC2 price (its market) plus the EMR price if known.

    ``task_market`` ("ON_DEMAND" or "SPOT") overrides the task groups' market; the other groups
    keep the request's.
    """
    total = 0.0
    for group in groups:
        price = prices.instance(group.instance_type)
        market = task_market if group.role == "TASK" else group.market
        if market == "SPOT":
            if price.spot is None:
                raise ValueError(f"{prices.path} has no spot price for {group.instance_type}")
            ec2 = price.spot
        else:
            ec2 = price.on_demand
        total += group.count * (ec2 + (price.emr or 0.0))
    return total


@dataclass(frozen=True)
class Row:
    """One size: its time from the optimistic end (``hours_low``) to the pessimistic (``hours_high``)."""

    images: int
    hours_low: float
    hours_high: float
    usd_per_hour_on_demand: float
    usd_per_hour_spot_task: float

    def usd(self, hours: float, *, spot_task: bool) -> float:
        return hours * (self.usd_per_hour_spot_task if spot_task else self.usd_per_hour_on_demand)


@dataclass(frozen=True)
class Estimate:
    measurements: list[Measurement]
    prices: Prices
    groups: list[Group]
    worker_vcpus: int
    worker_cores: int
    idle_timeout_s: int | None
    rows: list[Row]

    @property
    def fastest(self) -> Measurement:
        """The optimistic end's rate: the recorded run with the most images/s per vCPU."""
        return _extremes(self.measurements)[0]

    @property
    def slowest(self) -> Measurement:
        """The pessimistic end's rate: the recorded run with the fewest images/s per vCPU."""
        return _extremes(self.measurements)[1]

    @property
    def has_task(self) -> bool:
        return any(g.role == "TASK" and g.count > 0 for g in self.groups)


def estimate(request: dict, images: list[int] | tuple[int, ...], *, measurements: list[Measurement],
             prices: Prices) -> Estimate:
    """Hours and USD for each size in ``images`` on the cluster ``request`` describes.

    The optimistic end runs at the fastest measurement's rate per vCPU on every vCPU of the core
    and task nodes; the pessimistic end at the slowest measurement's rate on their physical cores
    only. With one measurement the two ends differ by the nodes' threads per core.
    """
    if not measurements:
        raise ValueError("the estimate needs at least one recorded run")
    for size in images:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"the number of images must be a positive integer, got {size!r}")
    groups = instance_groups(request)
    workers = [g for g in groups if g.role in WORKER_ROLES]
    worker_vcpus = sum(g.count * prices.instance(g.instance_type).vcpus for g in workers)
    worker_cores = sum(g.count * prices.instance(g.instance_type).physical_cores for g in workers)
    on_demand = hourly_price(groups, prices, task_market="ON_DEMAND")
    spot = hourly_price(groups, prices, task_market="SPOT") if any(g.role == "TASK" for g in groups) else on_demand
    fastest, slowest = _extremes(measurements)
    rows = [Row(images=size,
                hours_low=size / (fastest.per_vcpu * worker_vcpus) / 3600,
                hours_high=size / (slowest.per_vcpu * worker_cores) / 3600,
                usd_per_hour_on_demand=on_demand, usd_per_hour_spot_task=spot) for size in images]
    idle = request.get("AutoTerminationPolicy", {}).get("IdleTimeout")
    return Estimate(measurements=list(measurements), prices=prices, groups=groups, worker_vcpus=worker_vcpus,
                    worker_cores=worker_cores, idle_timeout_s=idle, rows=rows)


def _extremes(measurements) -> tuple[Measurement, Measurement]:
    """The recorded runs with the most and the fewest images/s per vCPU: the range's two ends."""
    return max(measurements, key=lambda m: m.per_vcpu), min(measurements, key=lambda m: m.per_vcpu)


def sizes(asked: int | None) -> list[int]:
    """The sizes to show: 1 M and 10 M, and the one asked for, in order, once each."""
    return sorted({*STANDARD_SIZES, *([asked] if asked is not None else [])})


def duration(hours: float) -> str:
    """``17 s`` under a minute, ``42 min`` under an hour, ``2.24 h`` above."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.2f} h"


def money(usd: float) -> str:
    return "<0.01" if 0 < usd < 0.005 else f"{usd:.2f}"


def render(est: Estimate) -> str:
    """The estimate as text: where every figure comes from, then one table row per size.

    Times and USD are ranges: the fastest recorded rate on every vCPU (optimistic) to the slowest
    on physical cores only (pessimistic).
    """
    p = est.prices
    shape = ", ".join(f"{g.count} {g.role.lower()} {g.instance_type} ({g.market.lower().replace('_', '-')})"
                      for g in est.groups)
    types = sorted({g.instance_type for g in est.groups})
    emr_known = all(p.instance(t).emr is not None for t in types)
    price_lines = []
    for name in types:
        price = p.instance(name)
        price_lines.append(f"  {name} on-demand: {price.on_demand:.3f} {p.currency}/h, read {price.on_demand_read} "
                           f"({price.on_demand_source})")
        if price.spot is not None:
            price_lines.append(f"  {name} spot: {price.spot:.3f} {p.currency}/h, read {price.spot_read} "
                               f"({price.spot_source})")
        price_lines.append(f"  {name} EMR price per instance-hour: "
                           + (f"{price.emr:.3f} {p.currency}/h, included" if price.emr is not None
                              else "no sourced figure, NOT included below"))
    usd = f"{p.currency}" if emr_known else f"{p.currency}, EC2 only"
    spot_label = "task on spot" if est.has_task else "no task node"
    rate_lines = [
        f"  rate: {m.per_vcpu:.1f} images/s per vCPU = {m.images_per_second:.1f} images/s on {m.vcpus} vCPUs "
        f"({m.cpu}), engine {m.engine}: {m.images:,} images in {m.seconds:.1f} s of the pipeline (read, featurize, "
        f"write, PCA; the featurization alone {m.featurize_per_second:.1f} images/s), "
        f"{m.path} [{m.result}], commit {m.commit}, {m.date}"
        for m in sorted(est.measurements, key=lambda m: -m.per_vcpu)]
    lines = [
        f"Cost estimate (not a quote) for the cluster above, {p.region}, prices from {_shown(p.path)}:",
        f"  cluster: {shape}; executors on the core and task nodes' {est.worker_vcpus} vCPUs "
        f"({est.worker_cores} physical cores); the primary runs the drivers",
        *rate_lines,
        f"  range: from {est.fastest.per_vcpu:.1f} images/s on each of the {est.worker_vcpus} vCPUs (optimistic) to "
        f"{est.slowest.per_vcpu:.1f} images/s on each of the {est.worker_cores} physical cores only (pessimistic). "
        "vCPUs are not alike: the recorded hosts' CPUs differ, and an m5 vCPU is one of the 2 hyper-threads of a "
        "physical core; the runs read their images from a local disk, a cluster reads them from S3 (not measured)",
        *price_lines,
        "",
        f"| images | time | {usd}, task on-demand | {usd}, {spot_label} |",
        "|---:|---:|---:|---:|",
    ]
    for row in est.rows:
        lines.append(
            f"| {row.images:,} | {duration(row.hours_low)} - {duration(row.hours_high)} "
            f"| {money(row.usd(row.hours_low, spot_task=False))} - "
            f"{money(row.usd(row.hours_high, spot_task=False))} "
            f"| {money(row.usd(row.hours_low, spot_task=True))} - "
            f"{money(row.usd(row.hours_high, spot_task=True))} |")
    per_hour = est.rows[0].usd_per_hour_on_demand if est.rows else 0.0
    low, high = p.start_minutes
    lines += [
        "",
        f"Fixed, on top ({usd}, task on-demand): the cluster's start, {low:g}-{high:g} min on every instance, "
        f"{money(per_hour * low / 60)}-{money(per_hour * high / 60)} ({p.start_source})",
    ]
    if est.idle_timeout_s:
        lines.append(f"  if left to terminate itself: its idle timeout ({est.idle_timeout_s} s) after the last "
                     f"step, {money(per_hour * est.idle_timeout_s / 3600)} (up to twice that while a notebook "
                     f"session stays open; fruits emr terminate avoids it)")
    lines.append(f"Excluded: {p.excluded}.")
    return "\n".join(lines)


def _shown(path: str) -> str:
    """``path`` relative to the checkout when inside it (shorter, and the same on every machine)."""
    root = config.project_root().resolve()
    resolved = Path(path).resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
