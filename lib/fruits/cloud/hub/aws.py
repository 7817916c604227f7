"""The AWS side of the local hub: moto's server (S3 and Secrets Manager), the bucket, secrets, notebooks.

The secrets and the notebooks are made by the project's own commands, run against moto exactly
as against AWS (``AWS_ENDPOINT_URL``): ``fruits emr users --users ...`` (the password and its
hash, :mod:`fruits.cloud.emr.users`) and ``fruits emr upload --users ...`` (the wheel, the users
step's script and each user's ``jupyter/<user>/fruits/02-featurize-emr.ipynb``). A user whose
notebook is already in the bucket is not uploaded again: their saved work stays.

moto keeps everything in memory. When the hub runs its own server, the bucket's objects and the
secrets are written to the state folder at stop and put back at the next start, so a restart is
a new cluster on the same bucket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from fruits.cloud.emr.deploy import JUPYTER_USER_PREFIX
from fruits.cloud.hub.settings import venv_bin

#: moto accepts any credentials; these are its documented throwaway ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for the servers whose port nobody types)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """Environment for boto3, s3fs and the AWS CLI to use ``endpoint_url`` (every service)."""
    env = {key: value for key, value in os.environ.items() if key not in ("AWS_PROFILE", "AWS_SESSION_TOKEN")}
    env.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint_url, AWS_DEFAULT_REGION=region, AWS_REGION=region,
               FSSPEC_S3_ENDPOINT_URL=endpoint_url)
    return env


class MotoServer:
    """moto's server on 127.0.0.1 (S3 and Secrets Manager, among others), stopped by :meth:`stop`."""

    def __init__(self, *, port: int | None = None, log: Path | None = None,
                 environment: dict[str, str] | None = None):
        self.port = port or free_port()
        #: Extra variables for the server process (e.g. ``MOTO_IAM_LOAD_MANAGED_POLICIES``).
        self.environment = dict(environment or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 60) -> "MotoServer":
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen([str(venv_bin() / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, **CREDENTIALS, **self.environment},
                                            start_new_session=True)  # a terminal's Ctrl-C is the hub's to handle
        finally:
            if self.log:
                out.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto's server did not start on port {self.port}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def clients(endpoint_url: str, region: str):
    """boto3's S3 and Secrets Manager clients for ``endpoint_url``."""
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    return (session.client("s3", endpoint_url=endpoint_url),
            session.client("secretsmanager", endpoint_url=endpoint_url))


def ensure_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # botocore's ClientError (404)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def fruits_command(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``fruits ARGS`` with ``env``; raises ``RuntimeError`` with its output when it fails."""
    result = subprocess.run([sys.executable, "-m", "fruits.cli", *args], capture_output=True, text=True, env=env,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"fruits {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def users_without_notebook(s3, bucket: str, users: list[str], notebook_key: str) -> list[str]:
    """Users whose ``jupyter/<user>/<notebook_key>`` is not in the bucket yet."""
    missing = []
    for user in users:
        key = f"{JUPYTER_USER_PREFIX.format(user=user)}/{notebook_key}"
        answer = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        if not answer.get("KeyCount"):
            missing.append(user)
    return missing


def save_snapshot(s3, secretsmanager, *, bucket: str, folder: Path, secrets_file: Path) -> int:
    """Copy the bucket's objects into ``folder`` and the secrets into ``secrets_file``; return objects saved."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    saved = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            target = folder / item["Key"]
            if not target.resolve().is_relative_to(folder.resolve()):
                raise ValueError(f"object key escapes the snapshot folder: {item['Key']!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            saved += 1
    secrets = {}
    for page in secretsmanager.get_paginator("list_secrets").paginate():
        for secret in page["SecretList"]:
            value = secretsmanager.get_secret_value(SecretId=secret["ARN"])["SecretString"]
            secrets[secret["Name"]] = {"SecretString": value, "Description": secret.get("Description", ""),
                                       "Tags": secret.get("Tags", [])}
    secrets_file.write_text("")
    os.chmod(secrets_file, 0o600)
    secrets_file.write_text(json.dumps(secrets, indent=1))
    return saved


def restore_snapshot(s3, secretsmanager, *, bucket: str, folder: Path, secrets_file: Path) -> int:
    """Put back what :func:`save_snapshot` saved; return objects restored."""
    restored = 0
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, path.relative_to(folder).as_posix())
            restored += 1
    if secrets_file.is_file():
        for name, secret in json.loads(secrets_file.read_text()).items():
            secretsmanager.create_secret(Name=name, **secret)
    return restored
