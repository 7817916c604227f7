"""``fruits emr run``: the EMR step that runs the cloud notebook headlessly through the cluster's Livy."""

from __future__ import annotations

import json
import shlex
from typing import Any, Mapping

from fruits import config
from fruits.cloud.emr.aws import check_bucket


def notebook_step_request(*, cluster_id: str, bucket: str, prefix: str, input_path: str, output: str,
                          parameters: Mapping[str, Any], name: str = "fruits run") -> dict:
    """The ``emr.add_job_flow_steps`` request that runs the cloud notebook through the cluster's Livy.

    The step runs on the primary node, next to Livy (``localhost:8998``):
    ``fruits run --livy`` executes ``02-featurize-emr`` with papermill in sparkmagic's
    PySpark kernel, exactly as a JupyterHub user runs it, and writes the executed
    notebook and the HTML report (figures included) to ``output``. A step, rather than a
    run from the user's machine through a tunnel, keeps going when the laptop sleeps,
    needs no port forwarded and leaves its log in the cluster's S3 log folder.
    ``FRUITS_PYTHON`` and ``FRUITS_LIVY_URL`` may override the interpreter and the Livy
    address where the command is run elsewhere (the tests run it against the Livy double).
    """
    check_bucket(bucket)
    if not output.startswith("s3://"):
        raise ValueError(f"output must be an s3:// URI on EMR, got {output!r}")
    notebook = f"s3://{bucket}/{prefix.strip('/')}/notebooks/{config.CLOUD_NOTEBOOK}"
    arguments = ["--livy", "LIVY", "--notebook", notebook, "--input", input_path, "--output", output]
    for key, value in parameters.items():
        arguments += ["-p", key, json.dumps(value) if not isinstance(value, str) else value]
    command = " ".join(shlex.quote(a) for a in arguments).replace("LIVY", '"$livy"', 1)
    script = "\n".join([
        "set -euo pipefail",
        'python="${FRUITS_PYTHON:-/usr/bin/python3.11}"',
        'livy="${FRUITS_LIVY_URL:-http://localhost:8998}"',
        f'"$python" -m fruits.cli run {command}',
    ])
    if len(script) > 10_000:
        raise ValueError("the step's command is longer than EMR allows (10,240 characters)")
    return {
        "JobFlowId": cluster_id,
        "Steps": [{
            "Name": name,
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["bash", "-c", script]},
        }],
    }
