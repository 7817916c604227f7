"""The project's users step, run as EMR runs it, against the local hub.

The command is the one ``fruits emr create-cluster --users`` gives EMR
(:func:`fruits.cloud.emr.users.users_step`): ``aws s3 cp`` of ``bootstrap/jupyterhub-users.sh``
from the bucket, then ``sudo bash`` on it. What differs is only the environment of the primary
node: the AWS CLI (the real one, from PyPI) is pointed at moto by ``AWS_ENDPOINT_URL``, ``docker``
is the shim of :mod:`fruits.cloud.hub.container`, and three of the script's own settings name
the Hub's API, the ``jupyterhub`` program and the step's state folder.
"""

from __future__ import annotations

import os
import subprocess

from fruits.cloud.emr.users import users_step
from fruits.cloud.hub.aws import aws_environment
from fruits.cloud.hub.settings import venv_bin
from fruits.cloud.hub.state import HubState


def step_environment(*, state: HubState, port: int, endpoint_url: str, region: str) -> dict[str, str]:
    env = aws_environment(endpoint_url, region)
    env.update(PATH=os.pathsep.join([str(state.bin), str(venv_bin()), env.get("PATH", "/usr/bin:/bin")]),
               FRUITS_JUPYTERHUB_API=f"https://127.0.0.1:{port}/hub/api",
               FRUITS_JUPYTERHUB_BIN=str(venv_bin() / "jupyterhub"),
               FRUITS_USERS_STATE=str(state.users_step_state),
               FRUITS_JUPYTERHUB_WAIT="60")
    return env


def run_users_step(*, state: HubState, port: int, endpoint_url: str, region: str, bucket: str,
                   users: list[str], prefix: str = "fruits", timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the step; its output is appended to ``users-step.log`` in the container folder."""
    args = users_step(bucket=bucket, prefix=prefix, region=region, users=users)["HadoopJarStep"]["Args"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=state.container,
                            env=step_environment(state=state, port=port, endpoint_url=endpoint_url, region=region))
    with open(state.container / "users-step.log", "a", encoding="utf-8") as log:
        log.write(result.stdout + result.stderr)
    return result
