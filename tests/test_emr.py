"""EMR requests, bootstrap and IAM, tested against a moto server on 127.0.0.1 (no AWS reached)."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import moto_server
from tests.emr_network import prepared_subnet


ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-test-bucket"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's server on loopback, with throwaway credentials in the environment; stopped at the end."""
    with moto_server() as endpoint:
        yield endpoint


def fruits(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fruits.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def all_strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)
    elif isinstance(value, str):
        yield value


def test_create_cluster_dry_run_prints_a_complete_least_privilege_request():
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "fruits-key", "--spot-task",
                    "--subnet-id", "subnet-1", "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["operation"] == "emr.run_job_flow"
    request = printed["request"]
    assert request["ReleaseLabel"].startswith("emr-7.")
    assert {"Spark", "Livy", "JupyterHub"} <= {app["Name"] for app in request["Applications"]}
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    action = request["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert action["Path"] == f"s3://{BUCKET}/fruits/bootstrap/install-fruits.sh"
    assert action["Args"][1].startswith("fruits_emr-") and action["Args"][1].endswith(".whl")
    configurations = {c["Classification"]: c for c in request["Configurations"]}
    assert configurations["jupyter-s3-conf"]["Properties"] == {
        "s3.persistence.enabled": "true", "s3.persistence.bucket": BUCKET}
    assert configurations["jupyter-sparkmagic-conf"]["Properties"]["all_errors_are_fatal"] == "true"
    assert configurations["jupyter-sparkmagic-conf"]["Properties"]["shutdown_session_on_spark_statement_errors"] == "true"
    assert configurations["spark-env"]["Configurations"][0]["Properties"]["PYSPARK_PYTHON"].endswith("python3.11")
    assert "livy.server.session.timeout" in configurations["livy-conf"]["Properties"]
    groups = {g["InstanceRole"]: g for g in request["Instances"]["InstanceGroups"]}
    assert (groups["MASTER"]["InstanceCount"], groups["CORE"]["InstanceCount"], groups["TASK"]["InstanceCount"]) == (1, 2, 1)
    assert groups["TASK"]["Market"] == "SPOT" and groups["CORE"]["Market"] == "ON_DEMAND"
    assert request["Instances"]["Ec2KeyName"] == "fruits-key"
    assert request["JobFlowRole"] != "EMR_EC2_DefaultRole", "use the bucket-scoped instance profile"
    assert not [s for s in all_strings(request) if "0.0.0.0/0" in s or "${" in s]


def test_run_dry_run_prints_a_step_that_runs_the_cloud_notebook_through_livy():
    result = fruits("emr", "run", "--cluster-id", "j-TEST", "--bucket", BUCKET, "--input", f"s3://{BUCKET}/Test",
                    "--output", f"s3://{BUCKET}/runs/one", "-p", "k", "50", "--dry-run")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)["request"]
    step = request["Steps"][0]
    assert request["JobFlowId"] == "j-TEST" and step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    script = step["HadoopJarStep"]["Args"][2]
    assert "set -euo pipefail" in script and "-m fruits.cli run --livy" in script
    assert "http://localhost:8998" in script  # Livy on the primary node, where steps run
    assert f"--notebook s3://{BUCKET}/fruits/notebooks/02-featurize-emr.py" in script
    assert f"--output s3://{BUCKET}/runs/one" in script and "-p k 50" in script
    assert "master" not in script  # the session's master is Livy's (YARN), not a parameter


def test_run_takes_parameters_files_read_on_the_users_machine(tmp_path):
    first = tmp_path / "emr.yaml"
    first.write_text(f"input_path: s3://{BUCKET}/Test\noutput_dir: s3://{BUCKET}/runs/from-file\nk: 20\nseed: 7\n")
    second = tmp_path / "more.yaml"
    second.write_text("k: 30\n")
    result = fruits("emr", "run", "--cluster-id", "j-TEST", "--bucket", BUCKET, "-f", str(first), "-f", str(second),
                    "-p", "seed", "9", "--dry-run")
    assert result.returncode == 0, result.stderr
    script = json.loads(result.stdout)["request"]["Steps"][0]["HadoopJarStep"]["Args"][2]
    assert f"--input s3://{BUCKET}/Test" in script and f"--output s3://{BUCKET}/runs/from-file" in script
    assert "-p k 30" in script and "-p seed 9" in script  # the later file wins; -p wins over files
    assert "input_path" not in script and "output_dir" not in script

    flag = fruits("emr", "run", "--cluster-id", "j-TEST", "--bucket", BUCKET, "-f", str(first),
                  "--output", f"s3://{BUCKET}/runs/flag", "--dry-run")
    assert f"--output s3://{BUCKET}/runs/flag" in json.loads(flag.stdout)["request"]["Steps"][0]["HadoopJarStep"]["Args"][2]

    bad = tmp_path / "bad.yaml"
    bad.write_text("kk: 3\n")
    refused = fruits("emr", "run", "--cluster-id", "j-TEST", "--bucket", BUCKET, "-f", str(bad), "--dry-run")
    assert refused.returncode == 2 and "bad.yaml" in refused.stderr and "kk" in refused.stderr
    missing = fruits("emr", "run", "--cluster-id", "j-TEST", "--bucket", BUCKET, "-p", "k", "5", "--dry-run")
    assert missing.returncode == 2 and "--input and --output missing" in missing.stderr


def test_bucket_must_be_a_bare_name():
    result = fruits("emr", "create-cluster", "--bucket", f"s3://{BUCKET}", "--dry-run")
    assert result.returncode == 2 and "bare S3 bucket name" in result.stderr


def test_iam_policy_is_scoped_to_the_project_bucket():
    policy = json.loads((ROOT / "emr-config" / "iam-instance-policy.json").read_text())
    secret_reads = []
    for statement in policy["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        assert not any(a.endswith(":*") or a == "*" for a in actions)
        if all(a.startswith("s3:") for a in actions):
            assert all(r.startswith("arn:aws:s3:::${BUCKET}") for r in resources), resources
        else:  # the JupyterHub users step reads its passwords: that prefix, nothing else
            secret_reads.append((actions, resources))
    assert secret_reads == [(["secretsmanager:GetSecretValue"],
                             ["arn:aws:secretsmanager:*:${ACCOUNT}:secret:fruits-emr/${BUCKET}/jupyterhub/*"])]


def test_shell_scripts_pass_shellcheck():
    scripts = sorted(ROOT.glob("bootstrap/*.sh")) + [ROOT / ".ci" / "run"]
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([str(shellcheck), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_upload_writes_the_expected_keys(moto):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    result = fruits("emr", "upload", "--bucket", BUCKET)
    assert result.returncode == 0, result.stderr[-2000:]
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {"fruits/dist/constraints.txt", "fruits/dist/sparkmagic.txt", "fruits/bootstrap/install-fruits.sh",
            "fruits/emr-config/cluster.json", "fruits/emr-config/configurations.json",
            "fruits/notebooks/02-featurize-emr.py", "jupyter/jovyan/fruits/02-featurize-emr.ipynb",
            "jupyter/jovyan/fruits/.s3keep"} <= keys
    # JupyterHub's Python 3 kernel has neither fruits nor Spark: only the cloud notebook is shown there.
    assert not [k for k in keys if k.startswith("jupyter/") and "01-featurize-local" in k]
    assert any(k.startswith("fruits/dist/fruits_emr-") and k.endswith(".whl") for k in keys)


def test_create_status_terminate_against_moto(moto):
    created = fruits("emr", "create-cluster", "--bucket", BUCKET, "--key-name", "k", "--subnet-id", prepared_subnet())
    assert created.returncode == 0, created.stderr[-2000:]
    cluster_id = created.stdout.split()[1]
    status = fruits("emr", "status", "--cluster-id", cluster_id)
    assert status.returncode == 0 and json.loads(status.stdout)["release"].startswith("emr-7.")
    import boto3

    actions = boto3.client("emr").list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    assert actions[0]["ScriptPath"].endswith("/bootstrap/install-fruits.sh")
    assert fruits("emr", "terminate", "--cluster-id", cluster_id).returncode == 0


@pytest.mark.spark
def test_images_in_a_bucket_through_local_spark_and_back(moto, tmp_path):
    """Local Spark has no S3 connector: the library lists, reads and publishes through s3fs."""
    import boto3
    import pyarrow.parquet as pq
    import s3fs

    from fruits.run.demo_data import generate_demo_images

    s3 = boto3.client("s3")
    bucket = "fruits-roundtrip"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    images = generate_demo_images(tmp_path / "images", per_class=4, seed=5)
    for path in images.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"images/{path.relative_to(images).as_posix()}")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    s3.upload_file(str(tmp_path / "broken.jpg"), bucket, "images/Synthetic Kiwi/broken.jpg")

    scratch = tmp_path / "scratch"  # the run's temporary folders (its local mirror of the S3 output)
    scratch.mkdir()
    result = fruits("run", "--input", f"s3://{bucket}/images", "--output", f"s3://{bucket}/runs/one",
                    "-p", "weights", "random", "-p", "k", "4", "--quiet", env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(scratch.glob("fruits-mirror-*")), "the local mirror is removed when the kernel exits"
    from fruits.storage.layout import current_run

    fs = s3fs.S3FileSystem()
    run = current_run(f"s3://{bucket}/runs/one").removeprefix("s3://")
    assert run.startswith(f"{bucket}/runs/one/runs/")
    manifest = json.loads(fs.cat_file(f"{run}/manifest.json"))
    assert manifest["counts"] == {"input": 26, "images": 25, "featurized": 24, "rejected": 2,
                                  "featurized_this_run": 24}
    assert manifest["output_dir"] == f"s3://{bucket}/runs/one"
    features = pq.read_table(f"{run}/features", filesystem=fs)
    assert features.num_rows == 24 and features.column("path")[0].as_py().startswith(f"s3://{bucket}/images/")
    assert pq.read_table(f"{run}/pca", filesystem=fs).num_rows == 24
    assert fs.exists(f"{run}/pca_model/metadata") and fs.exists(f"{run}/report.html")
    assert not [p for p in fs.ls(f"{bucket}/runs/one") if p.rsplit("/", 1)[1].startswith(".")]

    s3.upload_file(str(next(images.rglob("*.jpg"))), bucket, "images/Synthetic Lime/extra.jpg")
    again = fruits("run", "--input", f"s3://{bucket}/images", "--output", f"s3://{bucket}/runs/one",
                   "-p", "weights", "random", "-p", "k", "4", "-p", "mode", "incremental", "--quiet")
    assert again.returncode == 0, again.stderr[-3000:]
    fs.invalidate_cache()
    grown_run = current_run(f"s3://{bucket}/runs/one").removeprefix("s3://")
    grown = json.loads(fs.cat_file(f"{grown_run}/manifest.json"))
    assert grown["counts"]["featurized_this_run"] == 1 and grown["counts"]["featurized"] == 25
    assert grown["incremental"]["previous_run_id"] == manifest["run_id"]
    assert {p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/runs/one/runs")} == {run.rsplit("/", 1)[1],
                                                                               grown_run.rsplit("/", 1)[1]}


def test_unreachable_bucket_is_a_clear_error_before_spark(moto, tmp_path):
    result = fruits("run", "--input", "s3://no-such-bucket-here/images", "--output", str(tmp_path / "out"),
                    "-p", "weights", "random", "--quiet")
    assert result.returncode == 1
    assert "InputError: input_path 's3://no-such-bucket-here/images'" in result.stderr


def test_create_cluster_refuses_to_launch_without_a_subnet_setup_tagged(moto):
    """Issue 24, finding 1: AmazonEMRServicePolicy_v2 launches only into a tagged subnet."""
    import boto3

    for dry in ([], ["--dry-run"]):
        missing = fruits("emr", "create-cluster", "--bucket", BUCKET, *dry)
        assert missing.returncode == 2, missing.stdout
        assert "--subnet-id" in missing.stderr and "fruits emr setup" in missing.stderr
        assert "for-use-with-amazon-emr-managed-policies=true" in missing.stderr

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    untagged = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"]
    clusters_before = boto3.client("emr").list_clusters()["Clusters"]
    refused = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", untagged)
    assert refused.returncode == 2
    assert f"subnet {untagged} is not tagged" in refused.stderr
    assert f"fruits emr setup --bucket BUCKET --subnet-id {untagged}" in refused.stderr
    assert boto3.client("emr").list_clusters()["Clusters"] == clusters_before, "nothing launched"

    subnet = prepared_subnet("10.51.0.0/16")
    created = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", subnet)
    assert created.returncode == 0, created.stderr[-2000:]
    cluster_id = created.stdout.split()[1]
    attributes = boto3.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Ec2InstanceAttributes"]
    assert attributes["Ec2SubnetId"] == subnet


@pytest.mark.parametrize("idle", [None, "7200"])
def test_livy_ends_a_forgotten_session_within_the_idle_timeout(idle):
    """Issue 24, finding 5: an open Livy session is an active YARN application, so EMR never counts
    the cluster idle while it lasts; Livy's session timeout must not outlast the idle timeout."""
    options = ["--idle-timeout", idle] if idle else []
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--subnet-id", "subnet-1", *options, "--dry-run")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)["request"]
    livy = next(c for c in request["Configurations"] if c["Classification"] == "livy-conf")["Properties"]
    timeout = livy["livy.server.session.timeout"]
    units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    number, unit = re.fullmatch(r"(\d+)([a-z]+)", timeout).groups()
    assert int(number) * units[unit] <= request["AutoTerminationPolicy"]["IdleTimeout"] == int(idle or 3600)
    assert livy["livy.server.session.timeout-check"] == "true"
    assert livy["livy.server.session.timeout-check.skip-busy"] == "true", "a running cell is never ended"


def _fake_node(tmp_path: Path, *, primary: bool, agent_installed: bool, agent_starts: bool = True) -> dict:
    """The node programs install-fruits.sh calls, faked on PATH; each call is logged, one line each.

    The fakes follow the real programs' contracts where the script depends on them: ``rpm -q``
    exits 0 only for an installed package, ``dnf install`` installs it, ``systemctl enable --now``
    enables and starts a unit, ``systemctl is-active --quiet`` exits 0 only while it runs.
    """
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(parents=True)
    state.mkdir()
    log = tmp_path / "calls.log"
    if agent_installed:
        (state / "installed").touch()
    scripts = {
        "sudo": 'exec "$@"',
        "rpm": f'echo "rpm $*" >> {log}; [[ -f {state}/installed ]]',
        "dnf": f'echo "dnf $*" >> {log}; touch {state}/installed',
        "yum": f'echo "yum $*" >> {log}; touch {state}/installed',
        "systemctl": (f'echo "systemctl $*" >> {log}\n'
                      f'case "$1" in enable) [[ -f {state}/installed ]] && '
                      + (f'touch {state}/running' if agent_starts else 'true') + ' ;;\n'
                      f'is-active) [[ -f {state}/running ]] ;; esac'),
        "aws": f'echo "aws $*" >> {log}; touch "${{@: -1}}"',
        "python": (f'echo "python $*" >> {log}\n'
                   'case "$1" in --version) echo "Python 3.11.9" ;; -c) echo /tmp/sparkmagic ;; esac'),
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    info = tmp_path / "instance.json"
    info.write_text(json.dumps({"isMaster": primary}))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FRUITS_PYTHON": str(bin_dir / "python"),
           "FRUITS_BOOTSTRAP_DIR": str(tmp_path / "work"), "FRUITS_INSTANCE_INFO": str(info), "HOME": str(tmp_path)}
    return {"env": env, "log": log, "state": state}


def _bootstrap(node: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "bootstrap" / "install-fruits.sh"), f"s3://{BUCKET}/fruits/dist",
                           "fruits_emr-0.1.0-py3-none-any.whl"], env=node["env"], capture_output=True, text=True,
                          timeout=60)


def test_bootstrap_installs_and_starts_the_ssm_agent_on_the_primary_node(tmp_path):
    """Issue 24, finding 7: `fruits tunnel` needs the SSM Agent running on the primary node."""
    node = _fake_node(tmp_path / "primary", primary=True, agent_installed=False)
    first = _bootstrap(node)
    assert first.returncode == 0, first.stdout + first.stderr
    calls = node["log"].read_text().splitlines()
    assert "dnf install -y -q amazon-ssm-agent" in calls
    assert calls.index("dnf install -y -q amazon-ssm-agent") < calls.index("systemctl enable --now amazon-ssm-agent")
    assert "SSM Agent running" in first.stdout

    node["log"].write_text("")
    again = _bootstrap(node)  # idempotent: installed and running, and the wheel marker is there
    assert again.returncode == 0, again.stdout + again.stderr
    calls = node["log"].read_text().splitlines()
    assert not [c for c in calls if c.startswith(("dnf", "yum"))]
    assert "systemctl enable --now amazon-ssm-agent" in calls and "already installed" in again.stdout

    core = _fake_node(tmp_path / "core", primary=False, agent_installed=False)
    assert _bootstrap(core).returncode == 0
    assert not [c for c in core["log"].read_text().splitlines() if "ssm" in c], "the tunnel reaches the primary only"

    dead = _fake_node(tmp_path / "dead", primary=True, agent_installed=True, agent_starts=False)
    failed = _bootstrap(dead)
    assert failed.returncode != 0 and "SSM Agent is not running" in failed.stdout
