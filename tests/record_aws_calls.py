"""Run one ``fruits`` command and record every AWS API call it makes, through botocore's own events.

``python -m tests.record_aws_calls OUT.jsonl emr setup --bucket B ...`` runs ``fruits emr setup
--bucket B ...`` in this process, after registering a ``before-parameter-build`` handler on
boto3's default session: every client the project makes (:func:`fruits.cloud.emr.aws.client`
calls ``boto3.client``, which uses that session) emits it once per API request, with the
operation model and the caller's parameters (``Bucket``, ``RoleName``...), before they are
serialized, signed and sent (``before-call`` comes later and carries the serialized HTTP
request instead). Each call is
appended to OUT as one JSON line ``{"service", "operation", "params"}``, where ``service`` is
the endpoint prefix IAM actions are named after (``elasticmapreduce``, ``s3``, ``ec2``...).
The exit status is the command's. Paginated calls appear once per page, as they are sent.
"""

from __future__ import annotations

import json
import sys


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(type(value).__name__)  # bodies and streams: their content is not needed


def main(argv: list[str]) -> int:
    import boto3

    out, command = argv[0], argv[1:]
    boto3.setup_default_session()

    def record(model, params, **_):
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"service": model.service_model.endpoint_prefix,
                                     "operation": model.name, "params": _jsonable(params)}) + "\n")

    boto3.DEFAULT_SESSION.events.register("before-parameter-build", record)
    from fruits.cli import main as fruits_main

    return fruits_main(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
