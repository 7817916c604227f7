"""``fruits`` command line: run the featurization notebook headlessly and render its report.

``fruits run --input PATH --output DIR [-p NAME VALUE ...]`` executes
``notebooks/01-featurize-local.py`` with papermill, then renders
``DIR/report.html`` with nbconvert (figures embedded, code hidden). With
``--livy URL`` it executes the cloud notebook ``02-featurize-emr.py`` instead, in
sparkmagic's PySpark kernel against that Livy server (EMR's, or the project's Livy
double): the path a JupyterHub user runs interactively, run headlessly. Parameter
mistakes are reported before any kernel or Spark session starts. The executed
notebook is built in a scratch folder and only copied into ``DIR`` when the run
succeeded, so a failed run does not overwrite the previous run's report.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from fruits import config
from fruits import params
from fruits.cloud import tunnel
from fruits.cloud.hub import cli as hub_cli
from fruits.cloud.registry import get_platform, platform_names
from fruits.inputs.listing import InputError
from fruits.report.early_map import EarlyMap
from fruits.run.notebook import execute_notebook, render_html
from fruits.spark import settings as spark_settings
from fruits.spark.session import local_spark
from fruits.storage import location
from fruits.storage.layout import OutputLayout, run_layout
from fruits.storage.lease import OutputBusy, describe, holder, stale_reason
from fruits.storage.publish import new_run_id
from fruits.storage.reach import check_reach

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fruits", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="featurize a folder of images and write the HTML report")
    run.add_argument("--input", help="folder of class sub-folders (default: generated synthetic demo images)")
    run.add_argument("--output", help=f"output folder (default: {config.default_output_dir()})")
    run.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                     help="YAML mapping of parameter names to values, e.g. params/emr.yaml "
                          "(repeatable: a later file wins; -p wins over files)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="notebook parameter, e.g. -p k 50 -p weights model.h5 (repeatable)")
    run.add_argument("--notebook", default=None, help="percent-format notebook to execute (a path or s3:// URL)")
    run.add_argument("--livy", metavar="URL", default=None,
                     help="run the cloud notebook in the PySpark (sparkmagic) kernel against this Livy server")
    run.add_argument("--quiet", action="store_true", help="do not stream the notebook's output")
    proj = commands.add_parser("project", help="featurize new images like a finished run and apply its PCA")
    proj.add_argument("--model", required=True, help="output folder of a finished run")
    proj.add_argument("--input", required=True, help="folder of new images")
    proj.add_argument("--output", required=True, help="where projected/, rejected/ and manifest.json go")
    proj.add_argument("--weights", help="weights to use (default: the source the run recorded)")
    proj.add_argument("--master", default=spark_settings.LOCAL_MASTER, help="local Spark master")
    proj.add_argument("--overwrite", action="store_true", help="replace an existing projection")
    for name in platform_names():  # fruits emr ...: each managed-Spark platform adds its verbs
        get_platform(name).add_parser(commands)
    livy = commands.add_parser("livy", help="serve the project's Livy double (a Livy-compatible test server)")
    livy.add_argument("--port", type=int, default=8998, help="port on 127.0.0.1 (default 8998, Livy's)")
    livy.add_argument("--master", default=spark_settings.LOCAL_MASTER, help="Spark master of the sessions' drivers")
    livy.add_argument("--request-log", help="append every request as a JSON line to this file")
    tunnel.add_parser(commands)
    hub_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    skip_unused_imports()
    args = build_parser().parse_args(argv)
    # papermill streams the notebook's output through its logger: show it plainly.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.command == "run":
        return run_command(args)
    if args.command == "tunnel":
        return tunnel_command_line(args)
    if args.command == "livy":
        return livy_command_line(args)
    if args.command == "hub":
        return hub_cli.run_command(args)
    if args.command == "project":
        return project_command_line(args)
    if args.command in platform_names():
        return get_platform(args.command).run_command(args)
    return EXIT_USAGE  # pragma: no cover - argparse enforces a command


#: Optional modules the CLI's libraries import when installed, for work the CLI never asks of them.
UNUSED_OPTIONAL_MODULES = (
    # nbformat's validator imports jsonschema, which imports it to check the `iri` string
    # format; it compiles ~35 Lark grammars at import (2.4 s here). Notebook schemas never use
    # it. `make env` leaves it out; an environment built otherwise (an EMR node) may have it.
    "rfc3987_syntax",
    # papermill's handler for gs:// notebooks (0.6 s); the CLI's notebooks are local files.
    "gcsfs",
)


def skip_unused_imports() -> None:
    """Keep out of this process optional modules that cost more to import than the work they do here.

    Marked absent in ``sys.modules``, they raise ``ImportError`` on import, which their
    importers handle as "not installed" (that one feature is then unavailable): the
    CLI starts 1.9 s sooner. See :data:`UNUSED_OPTIONAL_MODULES`.
    """
    for name in UNUSED_OPTIONAL_MODULES:
        sys.modules.setdefault(name, None)


def resolve_parameters(args) -> dict[str, Any]:
    """Every notebook parameter, checked: defaults, then each ``-f`` file, then ``-p``, then the flags.

    Defaults and known names come from :mod:`fruits.params` (the notebooks' ``parameters``
    cells are generated from it), never from the notebook. Later ``-f`` files win over
    earlier ones, ``-p`` over every file, ``--input``/``--output`` over ``-p``. All values
    are returned, so papermill injects exactly what was checked here.

    Raises
    ------
    ValueError
        An unknown name, a wrong type or a bad value, naming the parameter, and the file
        when one set it; a parameters file that is missing, not YAML or not a mapping.
    """
    groups = params.CLOUD_NOTEBOOK_PARAMETERS if args.livy else params.LOCAL_NOTEBOOK_PARAMETERS
    values, origin = params.given_values(
        groups, files=args.parameters_file, assignments=args.parameter,
        flags={"input_path": None if args.input is None else location.absolute(args.input),
               "output_dir": args.output or None})
    # Paths are made absolute here, where they were typed: the notebook runs in another folder.
    output = values.get("output_dir") or str(config.default_output_dir())
    values["output_dir"] = location.absolute(output) if isinstance(output, str) else output
    weights = values.get("weights")
    if isinstance(weights, str) and os.path.exists(weights):
        values["weights"] = os.path.abspath(weights)
    resolved = {**params.parameter_defaults(groups), **values}
    params.validate_parameters(resolved, groups, origin)
    return resolved


def run_command(args) -> int:
    scratch = tempfile.mkdtemp(prefix="fruits-run-")
    try:
        source = _notebook_source(args, scratch)
        kernel = "python3"
        if args.livy:
            kernel = _prepare_livy(args.livy, scratch)
        parameters = resolve_parameters(args)
        if not args.livy:  # the local notebook's master is a parameter: its paths are checked before any kernel
            check_reach(parameters, parameters["master"])
        if parameters["run_id"] is None:  # so the report goes next to this run's outputs
            parameters["run_id"] = new_run_id()
        _refuse_a_busy_output(parameters["output_dir"])
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
        return EXIT_USAGE
    layout = run_layout(parameters["output_dir"], parameters["run_id"])
    executed = os.path.join(scratch, os.path.basename(layout.notebook))
    report = os.path.join(scratch, os.path.basename(layout.report))
    where = f" (PySpark kernel, Livy at {args.livy})" if args.livy else ""
    output_dir = parameters["output_dir"]
    print(f"Running {os.path.basename(source)} -> {output_dir} (run {parameters['run_id']}){where}", flush=True)
    from papermill.exceptions import PapermillExecutionError

    started = time.perf_counter()
    # The kernel's temporary folders (e.g. the local mirror of an s3:// output written without
    # an S3 connector, which the notebook's figures read) live in the scratch folder, removed
    # after a successful run and kept with the failed notebook otherwise.
    kernel_tmp = os.path.join(scratch, "tmp")
    os.makedirs(kernel_tmp)
    outer_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = kernel_tmp  # the kernel inherits this process's environment
    # The report's interactive map is built as soon as the run is written, while the kernel draws.
    early_map = EarlyMap(layout.root).start()
    try:
        execute_notebook(source, executed, parameters, cwd=os.getcwd(), kernel_name=kernel,
                         log_output=not args.quiet)
    except PapermillExecutionError as exc:
        render_html(executed, report)
        print(
            f"error: cell {exc.exec_count} failed with {exc.ename}: {exc.evalue}\n"
            f"The failed notebook and its report are in {scratch}; {output_dir} was left as it was.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        early_map.stop()
        if outer_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = outer_tmp
    notebook_seconds, started = time.perf_counter() - started, time.perf_counter()
    render_html(executed, report, map_builder=early_map.build)
    timings = _write_timings(executed, notebook_seconds, time.perf_counter() - started, scratch,
                             early_map=early_map.used)
    location.deliver(executed, layout.notebook)
    location.deliver(report, layout.report)
    location.deliver(timings, layout.report.rsplit("/", 1)[0] + "/timings.json")
    shutil.rmtree(scratch, ignore_errors=True)
    for banner in _banners(layout):
        print(f"WARNING: {banner}", file=sys.stderr, flush=True)
    print(f"Report: {layout.report}", flush=True)
    return EXIT_OK


def _write_timings(executed: str, notebook_seconds: float, render_seconds: float, scratch: str, *,
                   early_map: bool) -> str:
    """``timings.json``: the seconds a run's manifest cannot hold, as they happen after it is written.

    ``kernel_start`` comes from papermill's timestamps (the notebook's start, stamped
    before the kernel starts, to the first cell's); ``notebook`` is papermill's whole
    execution, kernel start and shutdown included; ``render`` the HTML report;
    ``early_map`` whether its interactive map was built while the notebook ran
    (:mod:`fruits.report.early_map`) rather than during ``render``.
    """
    import datetime as dt
    import json

    def stamp(metadata):
        return dt.datetime.fromisoformat(metadata["papermill"]["start_time"])

    with open(executed, encoding="utf-8") as handle:
        notebook = json.load(handle)
    first = next(cell["metadata"] for cell in notebook["cells"]
                 if cell["metadata"].get("papermill", {}).get("start_time"))
    path = os.path.join(scratch, "timings.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"kernel_start": round((stamp(first) - stamp(notebook["metadata"])).total_seconds(), 3),
                   "notebook": round(notebook_seconds, 3), "render": round(render_seconds, 3),
                   "early_map": early_map}, handle)
    return path


def _refuse_a_busy_output(output_dir: str) -> None:
    """Refuse before any kernel starts if a live run holds the output's lease (the run itself checks again)."""

    try:
        other = holder(output_dir) if location.is_remote(output_dir) or os.path.isdir(output_dir) else None
    except OSError:  # an unreachable bucket: the run's own checks say so, with the parameter's name
        return
    if other is not None and stale_reason(other) is None:
        raise OutputBusy(f"output_dir {output_dir!r} is being written by another run: {describe(other)}. "
                         "Wait for it to finish, or choose another output_dir.")


def _notebook_source(args, scratch: str) -> str:
    """The notebook to run: ``--notebook`` (fetched first when it is an ``s3://`` URL) or the default."""
    default = config.CLOUD_NOTEBOOK if args.livy else config.LOCAL_NOTEBOOK
    source = args.notebook or str(config.notebooks_dir() / default)
    if location.is_remote(source):
        local = os.path.join(scratch, os.path.basename(source))
        location.copy(source, local)
        return local
    source = location.local_path(source)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"notebook {source} not found (set FRUITS_NOTEBOOKS or --notebook)")
    return source


def _prepare_livy(url: str, scratch: str) -> str:
    """Point sparkmagic at ``url`` for this run only; return the kernel to start.

    Raises
    ------
    RuntimeError
        The PySpark kernel is not registered, or nothing answers at ``url``.
    """
    from fruits.cloud.livy import client
    from fruits.cloud.livy.rest import LivyClient, LivyError

    client.check_kernel()
    try:
        LivyClient(url, request_timeout=5.0).ping()
    except LivyError as exc:
        raise RuntimeError(f"no Livy server answers at {url} (GET {url.rstrip('/')}/sessions): {exc}") from None
    # The kernel is a child of papermill: it inherits this environment.
    os.environ.update(client.sparkmagic_environment(os.path.join(scratch, "sparkmagic"), url))
    return client.KERNEL_NAME


def project_command_line(args) -> int:
    from fruits.run.projection import project_images
    from fruits.engines.weights import MissingWeightsError

    spark = local_spark(args.master, app_name="fruits-project")
    try:
        document = project_images(spark, location.absolute(args.model), location.absolute(args.input), location.absolute(args.output),
                                  weights=args.weights, overwrite=args.overwrite)
    except (ValueError, InputError, MissingWeightsError, OutputBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        spark.stop()
    print(f"Projected {document['counts']['projected']} images ({document['counts']['rejected']} rejected) "
          f"into {args.output}")
    return EXIT_OK


def livy_command_line(args) -> int:
    from fruits.cloud.livy.server import LivyDouble

    livy = LivyDouble(port=args.port, master=args.master, request_log=args.request_log)
    print(f"Livy double (a test stand-in for Apache Livy) at {livy.url}, sessions on {args.master}; "
          f"session logs in {livy.work_dir}. Ctrl-C stops it and its sessions.", flush=True)
    print(f"Run the cloud notebook headlessly: fruits run --livy {livy.url} --input DIR --output DIR", flush=True)
    try:
        livy.serve_forever()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def tunnel_command_line(args) -> int:
    return tunnel.run_command(args)  # SSM port forward by default, SSH opt-in


def _banners(layout: OutputLayout) -> list[str]:
    """Repeat the run's warnings (synthetic data, random weights) where a console user looks last."""
    from fruits.engines.weights import RANDOM_WARNING

    manifest = location.read_json(layout.manifest)
    notes = []
    if manifest.get("synthetic_data"):
        notes.append("the images were SYNTHETIC demo data, generated by the project.")
    if manifest.get("weights", {}).get("random"):
        notes.append(RANDOM_WARNING)
    return notes


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
