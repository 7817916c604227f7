"""Named JupyterHub users: secrets in Secrets Manager (moto), the step on the primary node (fakes), IAM, S3.

The step script runs for real, with bash, against doubles of the three programs it drives on the
primary node: ``docker`` (a fake ``jupyterhub`` container keeping its users, password hashes and
lock in a JSON file), ``aws`` (answers ``s3 cp`` and ``secretsmanager get-secret-value`` from the
moto server, through boto3) and ``curl`` (the Hub's REST API). Each records its argv and standard
input, so the tests assert on the exact commands and on where the hash travels: only on the
standard input of ``chpasswd -e``; the plaintext never reaches the node. The same script against a
real JupyterHub, PAM and the real AWS CLI: ``tests/test_hub.py``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fruits.cloud.emr import iam as emr_iam
from fruits.cloud.emr import users as emr_users
from tests.emr_network import prepared_subnet
from tests.test_emr import fruits, moto  # noqa: F401 - moto is a fixture used here

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-users-bucket"
SCRIPT = ROOT / "bootstrap" / "jupyterhub-users.sh"
REGION = "eu-west-3"
MOTO_ACCOUNT = "123456789012"

FAKE_DOCKER = r'''
import json, os, sys
from pathlib import Path

hub = Path(os.environ["FAKE_HUB"])
args = sys.argv[1:]
interactive = len(args) > 1 and args[1] == "-i"
stdin = sys.stdin.read() if interactive else ""
with open(hub / "log.jsonl", "a") as log:
    log.write(json.dumps({"tool": "docker", "argv": args, "stdin": stdin}) + "\n")
if args[:1] != ["exec"]:
    sys.exit("fake docker: only exec")
args = args[2:] if interactive else args[1:]
container, command = args[0], args[1:]
if container != "jupyterhub":
    sys.exit(f"Error: No such container: {container}")
state = json.loads((hub / "state.json").read_text())
users = state["users"]


def save():
    (hub / "state.json").write_text(json.dumps(state))


if command == ["true"]:
    sys.exit(0)
if command[:2] == ["id", "-u"]:
    if command[2] not in users:
        sys.exit(f"id: '{command[2]}': no such user")
    print(users[command[2]])
elif command[:1] == ["useradd"]:
    assert command[:-1] == ["useradd", "-m", "-s", "/bin/bash", "-N"], command
    if command[-1] in users:
        sys.exit(9)
    users[command[-1]] = max(1000, *users.values()) + 1
    save()
elif command[:2] == ["passwd", "-S"]:
    print(f"{command[2]} {'L' if command[2] in state['locked'] else 'P'} 01/01/2024 0 99999 7 -1")
elif command == ["usermod", "-L", "jovyan"]:
    state["locked"].append("jovyan")
    save()
elif command == ["chpasswd", "-e"]:
    for line in stdin.splitlines():
        name, password = line.split(":", 1)
        if name not in users:
            sys.exit(f"chpasswd: line 1: user '{name}' does not exist")
        state["passwords"][name] = password
    save()
elif command == ["/opt/conda/bin/jupyterhub", "token", "jovyan"]:
    token = f"hub-token-{len(state['tokens'])}"
    state["tokens"].append(token)
    save()
    print("[I 2026-11-01 10:00:00.000 JupyterHub app:1] a log line first")
    print(token)
else:
    sys.exit(f"fake docker: unexpected command {command}")
'''

FAKE_CURL = r'''
import json, os, sys
from pathlib import Path

hub = Path(os.environ["FAKE_HUB"])
args = sys.argv[1:]
stdin = sys.stdin.read() if args[:2] == ["--config", "-"] else ""
with open(hub / "log.jsonl", "a") as log:
    log.write(json.dumps({"tool": "curl", "argv": args, "stdin": stdin}) + "\n")
state = json.loads((hub / "state.json").read_text())
token = stdin.split("Authorization: token ", 1)[1].split('"', 1)[0] if "Authorization" in stdin else None
url, method = args[-1], args[args.index("--request") + 1]
if token not in state["tokens"]:
    print("403", end="")
elif method == "POST" and url.startswith("https://primary.test:9443/hub/api/users/"):
    name = url.rsplit("/", 1)[1]
    print("409" if name in state["registered"] else "201", end="")
    state["registered"] = sorted(set(state["registered"]) | {name})
    (hub / "state.json").write_text(json.dumps(state))
else:
    print("404", end="")
'''

FAKE_AWS = r'''
import json, os, sys
from pathlib import Path

import boto3

hub = Path(os.environ["FAKE_HUB"])
args = sys.argv[1:]
with open(hub / "log.jsonl", "a") as log:
    log.write(json.dumps({"tool": "aws", "argv": args, "stdin": ""}) + "\n")


def option(name):
    return args[args.index(name) + 1] if name in args else None


if args[:2] == ["s3", "cp"]:
    source, target = [a for a in args[2:] if not a.startswith("--")]
    bucket, key = source[len("s3://"):].split("/", 1)
    boto3.client("s3").download_file(bucket, key, target)
elif args[:2] == ["secretsmanager", "get-secret-value"]:
    assert option("--output") == "text", args
    request = {"SecretId": option("--secret-id")}
    if option("--version-id"):
        request["VersionId"] = option("--version-id")
    try:
        answer = boto3.client("secretsmanager", region_name=option("--region")).get_secret_value(**request)
    except Exception as exc:
        sys.exit(f"An error occurred: {exc}")
    print(answer[option("--query")])
else:
    sys.exit(f"fake aws: unexpected {args}")
'''


@pytest.fixture(scope="module")
def uploaded(moto):  # noqa: F811 - the imported fixture
    """The project uploaded by ``fruits emr upload --users alice,bob`` to a moto bucket."""
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    result = fruits("emr", "upload", "--bucket", BUCKET, "--users", "alice,bob")
    assert result.returncode == 0, result.stderr[-2000:]
    return BUCKET


@pytest.fixture
def node(tmp_path):
    """The primary node's programs, faked on PATH; ``node.run(argv)`` runs a command there."""

    class Node:
        hub = tmp_path / "hub"
        bin = tmp_path / "bin"
        state_dir = tmp_path / "fruits-state"

        def state(self) -> dict:
            return json.loads((self.hub / "state.json").read_text())

        def log(self) -> list[dict]:
            path = self.hub / "log.jsonl"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        def run(self, argv: list[str]) -> subprocess.CompletedProcess:
            env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "FAKE_HUB": str(self.hub),
                   "FRUITS_USERS_STATE": str(self.state_dir), "FRUITS_JUPYTERHUB_WAIT": "5",
                   "FRUITS_JUPYTERHUB_API": "https://primary.test:9443/hub/api"}
            return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)

    node = Node()
    node.hub.mkdir()
    node.bin.mkdir()
    (node.hub / "state.json").write_text(json.dumps({
        "users": {"root": 0, "daemon": 1, "postgres": 999, "jovyan": 1000},
        "passwords": {}, "locked": [], "tokens": [], "registered": []}))
    for name, source in (("docker", FAKE_DOCKER), ("curl", FAKE_CURL), ("aws", FAKE_AWS)):
        (node.bin / name).write_text(f"#!{sys.executable}\n{source}")
    (node.bin / "sudo").write_text('#!/usr/bin/env bash\nexec "$@"\n')
    for path in node.bin.iterdir():
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return node


def secret_values(*users: str, name=emr_users.password_secret_name) -> dict[str, tuple[str, str]]:
    """{user: (password, version id)} as stored in moto's Secrets Manager (``name``: which of the two secrets)."""
    import boto3

    client = boto3.client("secretsmanager")
    values = {}
    for user in users:
        answer = client.get_secret_value(SecretId=name(BUCKET, user))
        values[user] = (answer["SecretString"], answer["VersionId"])
    return values


def hash_values(*users: str) -> dict[str, tuple[str, str]]:
    """{user: (crypt hash, version id)}: the secrets the cluster reads."""
    return secret_values(*users, name=emr_users.secret_name)


def cluster_record(cluster_id: str) -> str:
    """Everything EMR (moto) keeps of the cluster's request: description, steps, bootstrap actions."""
    import boto3

    emr = boto3.client("emr")
    return json.dumps([emr.describe_cluster(ClusterId=cluster_id)["Cluster"],
                       emr.list_steps(ClusterId=cluster_id)["Steps"],
                       emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]], default=str)


def cluster_id_of(result: subprocess.CompletedProcess) -> str:
    (cluster_id,) = re.findall(r"^cluster (j-\S+) starting", result.stdout, flags=re.M)
    return cluster_id


def users_step_args(cluster_id: str) -> list[str]:
    import boto3

    (step,) = [s for s in boto3.client("emr").list_steps(ClusterId=cluster_id)["Steps"]
               if s["Name"] == "fruits jupyterhub users"]
    assert step["Config"]["Jar"] == "command-runner.jar" and step["ActionOnFailure"] == "CONTINUE"
    return step["Config"]["Args"]


def test_user_names_are_checked_and_each_bucket_has_its_own_secret_prefix(tmp_path):
    users_file = tmp_path / "team.txt"
    users_file.write_text("# data scientists\ncarol\nalice  # again\n\n")
    assert emr_users.parse_users("alice, bob", users_file) == ["alice", "bob", "carol"]
    for bad in ("Alice", "root", "jovyan", "a:b", "../x", "-x", "1abc", "x" * 33, "bob smith"):
        with pytest.raises(ValueError):
            emr_users.check_user(bad)
    assert emr_users.secret_name(BUCKET, "alice") == f"fruits-emr/{BUCKET}/jupyterhub/alice"
    assert emr_users.password_secret_name(BUCKET, "alice") == f"fruits-emr/{BUCKET}/jupyterhub-password/alice"
    assert emr_users.secret_prefix("other-bucket") == "fruits-emr/other-bucket/jupyterhub/"
    passwords = {emr_users.generate_password() for _ in range(50)}
    assert len(passwords) == 50 and all(len(p) == 24 and ":" not in p for p in passwords)


def test_the_hash_is_sha512_crypt_salted_and_checks_only_its_password():
    password = emr_users.generate_password()
    first, second = emr_users.hash_password(password), emr_users.hash_password(password)
    assert first.startswith("$6$") and emr_users.CRYPT_HASH.fullmatch(first) and first != second  # salted
    assert password not in first
    assert emr_users.password_matches(password, first) and emr_users.password_matches(password, second)
    assert not emr_users.password_matches(password + "x", first)
    assert not emr_users.password_matches(password, password)  # a plaintext is no hash
    # glibc's crypt(3) agrees with OpenSSL's SHA-512 crypt (what `openssl passwd -6` makes)
    salt = first.split("$")[2]
    openssl = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password,
                             capture_output=True, text=True)
    assert openssl.returncode == 0 and openssl.stdout.strip() == first


def test_dry_run_shows_every_request_and_step_with_the_secrets_redacted():
    result = fruits("emr", "create-cluster", "--bucket", BUCKET, "--users", "alice,bob", "--subnet-id", "subnet-1",
                    "--dry-run")
    assert result.returncode == 0, result.stderr
    operations = json.loads(result.stdout)
    assert [o["operation"] for o in operations] == ["secretsmanager.create_secret"] * 4 + ["emr.run_job_flow"]
    assert [o["request"]["Name"] for o in operations[:4]] == [
        f"fruits-emr/{BUCKET}/jupyterhub-password/alice", f"fruits-emr/{BUCKET}/jupyterhub/alice",
        f"fruits-emr/{BUCKET}/jupyterhub-password/bob", f"fruits-emr/{BUCKET}/jupyterhub/bob"]
    assert {o["request"]["SecretString"] for o in operations[:4]} == {emr_users.REDACTED}
    (step,) = operations[4]["request"]["Steps"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    bash, dash_c, command = step["HadoopJarStep"]["Args"]
    assert (bash, dash_c) == ("bash", "-c") and "set -euo pipefail" in command
    assert f"aws s3 cp --only-show-errors s3://{BUCKET}/fruits/bootstrap/jupyterhub-users.sh" in command
    assert command.endswith(f"--secret-prefix fruits-emr/{BUCKET}/jupyterhub/ alice bob")
    assert "SecretString" not in json.dumps(operations[4])

    added = fruits("emr", "users", "--bucket", BUCKET, "--users", "carol", "--cluster-id", "j-RUNNING", "--dry-run")
    assert added.returncode == 0, added.stderr
    operations = json.loads(added.stdout)
    assert [o["operation"] for o in operations] == ["secretsmanager.create_secret"] * 2 + ["emr.add_job_flow_steps"]
    assert {o["request"]["SecretString"] for o in operations[:2]} == {emr_users.REDACTED}
    assert operations[2]["request"]["JobFlowId"] == "j-RUNNING"
    show = fruits("emr", "users", "--bucket", BUCKET, "--show", "alice", "--dry-run")
    assert json.loads(show.stdout) == {"operation": "secretsmanager.get_secret_value",
                                       "request": {"SecretId": f"fruits-emr/{BUCKET}/jupyterhub-password/alice"}}
    rotate = fruits("emr", "users", "--bucket", BUCKET, "--rotate", "alice", "--cluster-id", "j-RUNNING", "--dry-run")
    assert rotate.returncode == 0, rotate.stderr
    operations = json.loads(rotate.stdout)
    assert [(o["operation"], o["request"].get("SecretId")) for o in operations] == [
        ("secretsmanager.put_secret_value", f"fruits-emr/{BUCKET}/jupyterhub-password/alice"),
        ("secretsmanager.put_secret_value", f"fruits-emr/{BUCKET}/jupyterhub/alice"),
        ("emr.add_job_flow_steps", None)]


def test_create_cluster_makes_each_secret_once_and_never_shows_it(uploaded):
    subnet = prepared_subnet()
    first = fruits("emr", "create-cluster", "--bucket", uploaded, "--users", "alice,bob", "--subnet-id", subnet)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("created:") == 2 and "jovyan is locked" in first.stdout
    stored, hashes = secret_values("alice", "bob"), hash_values("alice", "bob")
    assert all(emr_users.password_matches(stored[u][0], hashes[u][0]) for u in stored)
    second = fruits("emr", "create-cluster", "--bucket", uploaded, "--users", "bob,alice", "--subnet-id", subnet)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("in place:") == 2 and "created:" not in second.stdout
    assert secret_values("alice", "bob") == stored  # reused: same value, same version
    assert hash_values("alice", "bob") == hashes

    import boto3

    kept = [s for s in boto3.client("secretsmanager").list_secrets()["SecretList"] if s["Name"].endswith("/alice")]
    assert len(kept) == 2 and all({"Key": "project", "Value": "fruits-emr"} in s["Tags"] for s in kept)
    seen = [first.stdout, first.stderr, second.stdout, second.stderr]
    seen += [cluster_record(cluster_id_of(r)) for r in (first, second)]
    for (password, _), (hashed, _) in zip(stored.values(), hashes.values()):
        assert not [text for text in seen if password in text or hashed in text]

    shown = fruits("emr", "users", "--bucket", uploaded, "--show", "alice")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == stored["alice"][0] + "\n"


def test_the_step_creates_the_users_locks_jovyan_and_a_second_run_changes_nothing(uploaded, node):
    created = fruits("emr", "create-cluster", "--bucket", uploaded, "--users", "alice,bob",
                     "--subnet-id", prepared_subnet())
    assert created.returncode == 0, created.stderr[-2000:]
    args = users_step_args(cluster_id_of(created))
    stored, hashes = secret_values("alice", "bob"), hash_values("alice", "bob")

    first = node.run(args)
    assert first.returncode == 0, first.stderr
    state = node.state()
    assert state["locked"] == ["jovyan"]
    assert state["passwords"] == {user: hashed for user, (hashed, _) in hashes.items()}
    assert state["users"]["alice"] >= 1001 and state["users"]["bob"] >= 1001
    assert state["registered"] == ["alice", "bob"] and len(state["tokens"]) == 1
    docker = [e for e in node.log() if e["tool"] == "docker"]
    commands = [e["argv"] for e in docker]
    assert commands.index(["exec", "jupyterhub", "usermod", "-L", "jovyan"]) < commands.index(
        ["exec", "jupyterhub", "useradd", "-m", "-s", "/bin/bash", "-N", "alice"])
    chpasswd = [e for e in docker if e["argv"] == ["exec", "-i", "jupyterhub", "chpasswd", "-e"]]
    assert [e["stdin"] for e in chpasswd] == [f"alice:{hashes['alice'][0]}\n", f"bob:{hashes['bob'][0]}\n"]
    curl = [e for e in node.log() if e["tool"] == "curl"]
    assert [e["argv"][-1] for e in curl] == ["https://primary.test:9443/hub/api/users/alice",
                                             "https://primary.test:9443/hub/api/users/bob"]
    assert all(e["stdin"] == f'header = "Authorization: token {state["tokens"][0]}"\n' for e in curl)

    every_argv = json.dumps([e["argv"] for e in node.log()])
    every_stdin = json.dumps([e["stdin"] for e in node.log()])
    for (password, _), (hashed, _) in zip(stored.values(), hashes.values()):  # the hash only on chpasswd's stdin
        assert hashed not in every_argv and hashed not in first.stdout + first.stderr
        assert password not in every_argv + every_stdin + first.stdout + first.stderr + json.dumps(state)
        assert not [p for p in node.state_dir.iterdir() if password in p.read_text() or hashed in p.read_text()]
    assert state["tokens"][0] not in every_argv + first.stdout + first.stderr

    entries = len(node.log())
    second = node.run(args)
    assert second.returncode == 0, second.stderr
    assert node.state() == state
    again = [e["argv"] for e in node.log()[entries:]]
    writes = [a for a in again if a[0] == "exec" and
              any(w in a for w in ("useradd", "usermod", "chpasswd", "/opt/conda/bin/jupyterhub"))]
    assert writes == [] and not [a for a in node.log()[entries:] if a["tool"] == "curl"]
    assert "jovyan is already locked" in second.stdout and "already registered" in second.stdout

    rotated = fruits("emr", "users", "--bucket", uploaded, "--rotate", "alice")
    assert rotated.returncode == 0, rotated.stderr[-2000:]
    new_password, new_hash = secret_values("alice")["alice"][0], hash_values("alice")["alice"][0]
    assert new_password != stored["alice"][0] and emr_users.password_matches(new_password, new_hash)
    assert new_password not in rotated.stdout + rotated.stderr
    third = node.run(args)
    assert third.returncode == 0, third.stderr
    assert node.state()["passwords"] == {"alice": new_hash, "bob": hashes["bob"][0]}
    assert "password hash of alice set" in third.stdout and "password hash of bob" not in third.stdout


def test_the_step_fails_closed_and_never_touches_system_accounts(uploaded, node):
    import boto3

    boto3.client("secretsmanager").create_secret(Name=emr_users.secret_name(BUCKET, "postgres"),
                                                 SecretString=emr_users.hash_password("x1"))
    boto3.client("secretsmanager").create_secret(Name=emr_users.secret_name(BUCKET, "dave"), SecretString="plain-pw")
    fruits("emr", "users", "--bucket", uploaded, "--users", "alice")
    prefix = emr_users.secret_prefix(BUCKET)

    missing = node.run(["bash", str(SCRIPT), "--region", REGION, "--secret-prefix", prefix, "alice", "ghost"])
    assert missing.returncode != 0
    state = node.state()
    assert state["locked"] == ["jovyan"]  # locked before anything could fail
    assert set(state["passwords"]) == {"alice"} and "ghost" not in state["users"] and state["tokens"] == []

    system = node.run(["bash", str(SCRIPT), "--region", REGION, "--secret-prefix", prefix, "postgres"])
    assert system.returncode != 0 and "system account" in system.stderr
    assert "postgres" not in node.state()["passwords"]

    plaintext = node.run(["bash", str(SCRIPT), "--region", REGION, "--secret-prefix", prefix, "dave"])
    assert plaintext.returncode != 0 and "holds no SHA-512 crypt hash" in plaintext.stderr
    assert "dave" not in node.state()["passwords"] and "plain-pw" not in plaintext.stdout + plaintext.stderr

    wrong = node.run(["bash", str(SCRIPT), "--region", REGION, "--secret-prefix", prefix, "jovyan"])
    assert wrong.returncode != 0 and "refusing" in wrong.stderr
    usage = node.run(["bash", str(SCRIPT), "alice"])
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_users_adds_the_step_to_a_running_cluster(uploaded):
    import boto3

    created = fruits("emr", "create-cluster", "--bucket", uploaded, "--subnet-id", prepared_subnet())
    assert created.returncode == 0, created.stderr[-2000:]
    cluster_id = cluster_id_of(created)
    assert not boto3.client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    added = fruits("emr", "users", "--bucket", uploaded, "--users", "carol", "--cluster-id", cluster_id)
    assert added.returncode == 0, added.stderr[-2000:]
    assert f"added to {cluster_id}" in added.stdout
    assert users_step_args(cluster_id)[2].endswith(f"--secret-prefix fruits-emr/{BUCKET}/jupyterhub/ carol")
    (password, _), = secret_values("carol").values()
    (hashed, _), = hash_values("carol").values()
    assert password not in added.stdout + added.stderr + cluster_record(cluster_id)
    assert hashed not in added.stdout + added.stderr + cluster_record(cluster_id)


def test_notebooks_land_under_each_users_prefix_and_s3contents_lists_them(uploaded, moto):  # noqa: F811
    import boto3
    from s3contents import S3ContentsManager

    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=uploaded, Prefix="jupyter/")["Contents"]}
    assert keys == {f"jupyter/{user}/fruits/{name}" for user in ("alice", "bob")
                    for name in ("02-featurize-emr.ipynb", ".s3keep")}
    for user in ("alice", "bob"):
        manager = S3ContentsManager(bucket=uploaded, prefix=f"jupyter/{user}", endpoint_url=moto,
                                    access_key_id="testing", secret_access_key="testing", region_name=REGION)
        assert [(i["name"], i["type"]) for i in manager.get("")["content"]] == [("fruits", "directory")]
        assert [i["name"] for i in manager.get("fruits")["content"]] == ["02-featurize-emr.ipynb"]
        assert manager.get("fruits/02-featurize-emr.ipynb")["type"] == "notebook"


def test_instance_policy_reads_the_secret_prefix_and_nothing_broader():
    def statements(document):
        return [{**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]],
                 "Resource": s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]}
                for s in document["Statement"]]

    docs = emr_iam.policy_documents(bucket=BUCKET, account=MOTO_ACCOUNT)
    instance = statements(docs["iam-instance-policy"])
    assert not [s for s in instance if "*" in s["Resource"]]
    (secrets,) = [s for s in instance if any(a.startswith("secretsmanager:") for a in s["Action"])]
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"] and secrets["Effect"] == "Allow"
    (pattern,) = secrets["Resource"]
    arn = f"arn:aws:secretsmanager:{REGION}:{MOTO_ACCOUNT}:secret:fruits-emr/{BUCKET}/jupyterhub/"
    assert fnmatch.fnmatchcase(arn + "alice-AbC123", pattern)
    for other in (f"arn:aws:secretsmanager:{REGION}:{MOTO_ACCOUNT}:secret:fruits-emr/other-bucket/jupyterhub/alice-AbC123",
                  f"arn:aws:secretsmanager:{REGION}:{MOTO_ACCOUNT}:secret:fruits-emr/{BUCKET}/database-AbC123",
                  f"arn:aws:secretsmanager:{REGION}:111122223333:secret:fruits-emr/{BUCKET}/jupyterhub/alice-AbC123",
                  f"arn:aws:secretsmanager:{REGION}:{MOTO_ACCOUNT}:secret:prod/db-AbC123"):
        assert not fnmatch.fnmatchcase(other, pattern), other

    caller = statements(emr_iam.caller_policy(bucket=BUCKET, account=MOTO_ACCOUNT))
    (people,) = [s for s in caller if any(a.startswith("secretsmanager:") for a in s["Action"])]
    assert people["Resource"] == [pattern, pattern.replace("/jupyterhub/*", "/jupyterhub-password/*")]
    assert "secretsmanager:ListSecrets" not in people["Action"]


def test_the_instance_role_may_read_no_secret_that_holds_a_plaintext_password(uploaded):
    """Every secret ``fruits emr`` keeps, as stored: those the instance policy grants hold only crypt hashes."""
    import boto3

    assert fruits("emr", "users", "--bucket", uploaded, "--users", "alice,bob,erin").returncode == 0
    assert fruits("emr", "users", "--bucket", uploaded, "--rotate", "erin").returncode == 0
    client = boto3.client("secretsmanager")
    granted = [resource for statement in emr_iam.policy_documents(bucket=BUCKET, account=MOTO_ACCOUNT)[
                   "iam-instance-policy"]["Statement"]
               if any(a.startswith("secretsmanager:") for a in
                      (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]))
               for resource in (statement["Resource"] if isinstance(statement["Resource"], list)
                                else [statement["Resource"]])]
    assert granted
    readable, plaintexts = [], []
    for secret in client.list_secrets()["SecretList"]:
        arn = secret["ARN"].replace(":us-east-1:", f":{REGION}:")
        value = client.get_secret_value(SecretId=secret["ARN"])["SecretString"]
        by_instance = any(fnmatch.fnmatchcase(arn, pattern) for pattern in granted)
        for user in ("alice", "bob", "erin"):
            if value == emr_users.show_password(client, bucket=BUCKET, user=user):
                plaintexts.append(secret["Name"])
                assert not by_instance, f"the instance role may read {secret['Name']}, which holds {user}'s password"
        if by_instance and secret["Name"].rsplit("/", 1)[1] in ("alice", "bob", "erin"):
            readable.append(secret["Name"])
            assert emr_users.CRYPT_HASH.fullmatch(value), secret["Name"]
    assert sorted(plaintexts) == [f"fruits-emr/{BUCKET}/jupyterhub-password/{u}" for u in ("alice", "bob", "erin")]
    assert sorted(readable) == [f"fruits-emr/{BUCKET}/jupyterhub/{u}" for u in ("alice", "bob", "erin")]


def test_a_plaintext_left_under_the_hash_name_by_an_earlier_layout_is_replaced_by_its_hash(uploaded):
    import boto3

    client = boto3.client("secretsmanager")
    # The earlier layout: one secret, the plaintext under the name the instance role may read.
    client.create_secret(Name=emr_users.secret_name(BUCKET, "frank"), SecretString="old-layout-pw")
    outcome = emr_users.ensure_secrets(client, bucket=BUCKET, users=["frank"], echo=lambda line: None)
    assert outcome == {"frank": "created"}
    # frank keeps his password: it moved to the people's secret, and the cluster's holds its hash.
    assert emr_users.show_password(client, bucket=BUCKET, user="frank") == "old-layout-pw"
    hashed = client.get_secret_value(SecretId=emr_users.secret_name(BUCKET, "frank"))["SecretString"]
    assert emr_users.password_matches("old-layout-pw", hashed)
    # The replaced plaintext is no longer reachable by the AWSPREVIOUS stage.
    stages = [v.get("VersionStages", []) for v in client.list_secret_version_ids(
        SecretId=emr_users.secret_name(BUCKET, "frank"))["Versions"]]
    assert not [s for s in stages if "AWSPREVIOUS" in s], stages
    assert emr_users.ensure_secrets(client, bucket=BUCKET, users=["frank"], echo=lambda line: None) == {
        "frank": "in place"}


def test_the_step_script_never_traces_and_passes_shellcheck():
    code = [line.split(" #", 1)[0] for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert "set -euo pipefail" in code and "set +x" in code[code.index("set -euo pipefail") + 1]
    assert not [line for line in code if "set -x" in line or "xtrace" in line or "bash -x" in line]
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([str(shellcheck), str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
