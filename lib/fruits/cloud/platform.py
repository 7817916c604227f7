"""What ``fruits`` needs from a managed-Spark platform: the :class:`SparkPlatform` interface.

A platform (AWS EMR today; Google Dataproc, Databricks or Spark on Kubernetes could follow)
is one class implementing :class:`SparkPlatform` plus one line in :mod:`fruits.cloud.registry`.
The CLI asks the registry and never names a platform: each registered one becomes
``fruits <name> <verb>``, with the verbs below and their common options, plus the options
and verbs of its own that it adds.

The life of a cloud run, verb by verb; every verb takes ``--dry-run`` (print the platform's
API requests as JSON, touch nothing):

``upload``
    Deploy the project: the wheel, its pinned constraints, the bootstrap, the cluster
    configuration and the cloud notebook, where the platform's clusters and notebook
    server read them.
``create-cluster``
    Start a cluster that installs that wheel on every node and serves Livy (what
    sparkmagic's PySpark kernel talks to).
``run``
    Run the cloud notebook headlessly on a cluster: ``fruits run --livy`` on the cluster
    itself (papermill in the PySpark kernel against the cluster's Livy), the executed
    notebook and its HTML report written next to the run's outputs.
``status``, ``terminate``
    The cluster's state and driver address; stop it.
``doctor``
    Check a live cluster through its Livy: implemented once here
    (:mod:`fruits.cloud.doctor`), given :meth:`SparkPlatform.storage_location`.

``fruits tunnel --cluster-id`` reaches a cluster's notebook server or Livy from
``localhost`` through :meth:`SparkPlatform.forward_command`.

Verbs receive the parsed command line (an ``argparse.Namespace``): the common options have
the same names on every platform (:meth:`SparkPlatform.add_parser` adds them: ``--dry-run``
everywhere, ``--cluster-id``, ``--input``, ``--output``, ``-p`` and ``--livy`` where they apply),
and a platform reads its own.
A verb returns the process exit status; a ``ValueError`` it raises becomes ``error: ...``
and exit status 2, like every usage error of ``fruits``.
"""

from __future__ import annotations

import abc
import argparse
import json
import sys
from typing import Any, Callable, ClassVar
from fruits import __version__
from fruits import params
from fruits.cloud import doctor
from fruits.storage.reach import check_reach

#: The verbs every platform offers, in the order its help lists them.
COMMON_VERBS = ("upload", "create-cluster", "run", "status", "terminate", "doctor")
#: Livy's own default port, where sparkmagic finds it on a cluster's driver node.
LIVY_PORT = 8998


def show_request(operation: str, request: Any) -> None:
    """Print one API request as ``--dry-run`` shows it: ``{"operation": ..., "request": ...}``."""
    print(json.dumps({"operation": operation, "request": request}, indent=2))


class SparkPlatform(abc.ABC):
    """A managed-Spark platform as the ``fruits`` command line uses it.

    Subclasses set :attr:`name` and :attr:`summary`, add their own options in
    :meth:`add_options` and implement the verbs. The base class builds the parsers of the
    common verbs, dispatches to the verbs, turns a ``ValueError`` into exit status 2 and
    implements ``doctor`` for any platform whose clusters serve Livy.
    """

    #: The CLI word and registry key: ``fruits <name> <verb>``.
    name: ClassVar[str]
    #: One line for ``fruits --help``.
    summary: ClassVar[str]
    #: One line per common verb for ``fruits <name> --help``; a platform may say it in its own words.
    verb_help: ClassVar[dict[str, str]] = {
        "upload": "deploy the project (wheel, bootstrap, configuration, cloud notebook) to the platform",
        "create-cluster": "start a cluster that installs the project and serves Livy",
        "run": "run the cloud notebook headlessly on a cluster (papermill, PySpark kernel, the cluster's Livy)",
        "status": "the cluster's state and driver address",
        "terminate": "stop a cluster",
        "doctor": "check a live cluster through its Livy: Python, fruits, executors, engine, storage",
    }

    # -- the command line -------------------------------------------------------------------

    def add_parser(self, commands) -> None:
        """Register ``fruits <name> <verb>`` on the CLI's sub-command parser."""
        parser = commands.add_parser(self.name, help=self.summary)
        verbs = parser.add_subparsers(dest="verb", required=True)
        parsers: dict[str, argparse.ArgumentParser] = {}
        for verb in COMMON_VERBS:
            parsers[verb] = verbs.add_parser(verb, help=self.verb_help[verb])
            parsers[verb].add_argument("--dry-run", action="store_true", help="print the API requests, touch nothing")
        for verb in ("run", "status", "terminate"):
            parsers[verb].add_argument("--cluster-id", required=True)
        run = parsers["run"]
        run.add_argument("--input", default=None,
                         help="folder of class sub-folders in the platform's storage (or input_path in a -f file)")
        run.add_argument("--output", default=None,
                         help="output folder in the platform's storage (or output_dir in a -f file)")
        run.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                         help="YAML file of notebook parameters, read here (repeatable; later files win)")
        run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                         help="notebook parameter, as for fruits run (repeatable; wins over -f)")
        parsers["doctor"].add_argument(
            "--livy", default=f"http://localhost:{LIVY_PORT}",
            help=f"Livy URL (default: http://localhost:{LIVY_PORT}, i.e. through "
                 f"`fruits tunnel --cluster-id ID --port {LIVY_PORT}`)")
        self.add_options(parsers, verbs)

    def verbs(self) -> dict[str, Callable[[argparse.Namespace], int]]:
        """Verb name -> the method that runs it; a platform with verbs of its own extends this."""
        return {"upload": self.deploy, "create-cluster": self.create_cluster, "run": self.run_notebook,
                "status": self.status, "terminate": self.terminate, "doctor": self.doctor}

    def run_command(self, args: argparse.Namespace) -> int:
        """Run the verb ``args`` names; ``error: ...`` and 2 on a ``ValueError``."""
        try:
            return self.verbs()[args.verb](args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    @staticmethod
    def run_parameters(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
        """``run``'s input, output and notebook parameters: each ``-f`` file, then ``-p``, then the flags.

        The files are read here, on the user's machine, and their values travel with the
        run as parameters, so the cluster needs no copy of them. Names and types are
        checked against :class:`fruits.params.RunParams` before anything is submitted.

        Raises
        ------
        ValueError
            A bad file, an unknown name or a wrong type (naming file and key), no
            input/output from either the flags or a file, or a path the cluster's
            executors cannot reach (:mod:`fruits.storage.reach`).
        """
        values, _ = params.given_values(params.CLOUD_NOTEBOOK_PARAMETERS, files=args.parameters_file,
                                        assignments=args.parameter,
                                        flags={"input_path": args.input or None, "output_dir": args.output or None})
        input_path, output = values.pop("input_path", None), values.pop("output_dir", None)
        if not input_path or not output:
            missing = " and ".join(n for n, v in (("--input", input_path), ("--output", output)) if not v)
            raise ValueError(f"{missing} missing: give the flag, or input_path/output_dir in a -f file")
        # The cluster's executors run on its worker nodes (YARN), never on the driver's host.
        check_reach({**values, "input_path": input_path, "output_dir": output}, "yarn")
        return input_path, output, values

    # -- what a platform implements ---------------------------------------------------------

    @abc.abstractmethod
    def add_options(self, parsers: dict[str, argparse.ArgumentParser], verbs) -> None:
        """Add the platform's own options to the common verbs' ``parsers`` and its own verbs to ``verbs``."""

    @abc.abstractmethod
    def storage_location(self, args: argparse.Namespace) -> str:
        """The URI under which the project's files live and clusters may write (``s3://BUCKET/PREFIX``).

        Raises
        ------
        ValueError
            The options do not name a valid location.
        """

    @abc.abstractmethod
    def deploy(self, args: argparse.Namespace) -> int:
        """``upload``: put the project where the platform's clusters and notebook server read it."""

    @abc.abstractmethod
    def create_cluster(self, args: argparse.Namespace) -> int:
        """``create-cluster``: start a cluster with the project installed on every node and Livy serving."""

    @abc.abstractmethod
    def run_notebook(self, args: argparse.Namespace) -> int:
        """``run``: run the cloud notebook headlessly on ``args.cluster_id`` (``--input``, ``--output``, ``-p``)."""

    @abc.abstractmethod
    def status(self, args: argparse.Namespace) -> int:
        """``status``: print the state of ``args.cluster_id`` and the address of its driver node."""

    @abc.abstractmethod
    def terminate(self, args: argparse.Namespace) -> int:
        """``terminate``: stop ``args.cluster_id``."""

    @abc.abstractmethod
    def forward_command(self, cluster_id: str, *, port: int, local_port: int) -> list[str]:
        """The command that forwards ``localhost:local_port`` to ``port`` on the cluster's driver node.

        ``fruits tunnel`` prints it, then runs it. It should need no inbound rule where the
        platform allows (EMR: a Session Manager port forward).
        """

    # -- the same on every platform whose clusters serve Livy -------------------------------

    def doctor(self, args: argparse.Namespace) -> int:
        """``doctor``: open one small Livy session at ``args.livy`` and check the cluster from its driver."""

        target = self.storage_location(args)
        if args.dry_run:
            show_request("livy.statement", {"livy": args.livy, "session": doctor.SESSION,
                                            "code": doctor.statement_code(target, __version__)})
            return 0
        print(f"Checking the cluster behind {args.livy} (a small Livy session; takes a minute or two)...",
              flush=True)
        return 0 if doctor.print_verdicts(doctor.diagnose(args.livy, target)) else 1
