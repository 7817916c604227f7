"""The SparkPlatform interface and its registry: a new platform is one class and one line.

``Sandbox`` below is a test platform (it records what it was asked instead of calling a
cloud); registered for one test, it gets ``fruits sandbox <verb>`` with the common options,
the shared ``doctor`` and a ``fruits tunnel --platform sandbox``, through the same code
paths EMR uses.
"""

from __future__ import annotations

import json

import pytest

from fruits import cli
from fruits.cloud import registry
from fruits.cloud.platform import COMMON_VERBS, SparkPlatform


class Sandbox(SparkPlatform):
    name = "sandbox"
    summary = "a platform of the tests"
    calls: list[tuple[str, dict]] = []

    def add_options(self, parsers, verbs) -> None:
        parsers["doctor"].add_argument("--root", required=True)
        verbs.add_parser("rotate")

    def verbs(self):
        return {**super().verbs(), "rotate": lambda args: self._record("rotate", args)}

    def _record(self, verb, args) -> int:
        self.calls.append((verb, {k: v for k, v in vars(args).items() if k not in {"command", "verb"}}))
        return 7

    def storage_location(self, args) -> str:
        if not args.root.startswith("mem://"):
            raise ValueError(f"root must be a mem:// URI, got {args.root!r}")
        return args.root

    def deploy(self, args):
        return self._record("upload", args)

    def create_cluster(self, args):
        return self._record("create-cluster", args)

    def run_notebook(self, args):
        return self._record("run", args)

    def status(self, args):
        return self._record("status", args)

    def terminate(self, args):
        raise ValueError(f"cluster {args.cluster_id!r} is protected")

    def forward_command(self, cluster_id, *, port, local_port):
        return ["sandbox-forward", cluster_id, str(port), str(local_port)]


@pytest.fixture
def sandbox(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    registry.register("sandbox", Sandbox)
    Sandbox.calls = []
    return Sandbox


def test_a_registered_platform_gets_the_common_verbs_and_its_own(sandbox):
    assert registry.platform_names() == ["emr", "sandbox"]
    assert cli.main(["sandbox", "status", "--cluster-id", "c-1"]) == 7
    assert cli.main(["sandbox", "run", "--cluster-id", "c-1", "--input", "mem://in", "--output", "mem://out",
                     "-p", "k", "20"]) == 7
    assert cli.main(["sandbox", "rotate"]) == 7
    assert [verb for verb, _ in sandbox.calls] == ["status", "run", "rotate"]
    assert sandbox.calls[0][1] == {"cluster_id": "c-1", "dry_run": False}
    assert sandbox.calls[1][1]["parameter"] == [["k", "20"]]
    for verb in COMMON_VERBS:  # every common verb parses with --dry-run
        with pytest.raises(SystemExit) as exit_:
            cli.main(["sandbox", verb, "--help"])
        assert exit_.value.code == 0


def test_a_verb_s_value_error_is_a_usage_error(sandbox, capsys):
    assert cli.main(["sandbox", "terminate", "--cluster-id", "c-9"]) == 2
    assert capsys.readouterr().err.strip() == "error: cluster 'c-9' is protected"


def test_the_shared_doctor_checks_the_platform_s_storage(sandbox, capsys):
    assert cli.main(["sandbox", "doctor", "--root", "mem://fruits", "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["operation"] == "livy.statement"
    assert shown["request"]["livy"] == "http://localhost:8998"
    assert "_checks(spark, 'mem://fruits'" in shown["request"]["code"]
    assert cli.main(["sandbox", "doctor", "--root", "/tmp/x", "--dry-run"]) == 2
    assert "root must be a mem:// URI, got '/tmp/x'" in capsys.readouterr().err


def test_the_tunnel_asks_the_cluster_s_platform(sandbox, capsys):
    assert cli.main(["tunnel", "--platform", "sandbox", "--cluster-id", "c-2", "--port", "8998", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "sandbox-forward c-2 8998 8998"


def test_the_registry_refuses_unknown_names_bad_names_and_mismatched_classes(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    with pytest.raises(ValueError, match="unknown platform 'dataproc'; known: emr"):
        registry.get_platform("dataproc")
    with pytest.raises(ValueError, match="lowercase word"):
        registry.register("Data Proc", Sandbox)
    registry.register("other", Sandbox)
    with pytest.raises(TypeError, match="whose name is 'sandbox'"):
        registry.get_platform("other")
    registry.register("broken", "fruits.cloud.tunnel:tunnel_command")
    with pytest.raises(TypeError, match="not a SparkPlatform class"):
        registry.get_platform("broken")


def test_the_built_in_emr_platform_implements_every_verb():
    emr = registry.get_platform("emr")
    assert set(COMMON_VERBS) | {"setup", "users"} == set(emr.verbs())
