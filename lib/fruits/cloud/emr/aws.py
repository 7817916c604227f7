"""What every EMR module shares with AWS: the bucket-name check and boto3 clients.

Credentials and region come from the standard AWS chain (profile, instance role,
``AWS_ENDPOINT_URL`` for an S3-compatible test server such as moto), never from the repo;
``boto3`` is imported on first use, so building and printing requests needs no AWS package.
"""

from __future__ import annotations

import re


def check_bucket(bucket: str) -> None:
    """A bucket name, not a URI (EMR's jupyter-s3-conf wants the bare name).

    Raises
    ------
    ValueError
        ``bucket`` is a URI, has a slash or is not a valid S3 bucket name.

    Examples
    --------
    >>> check_bucket("s3://my-bucket")
    Traceback (most recent call last):
    ...
    ValueError: bucket must be a bare S3 bucket name (no s3://, no slash), got 's3://my-bucket'
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket or ""):
        raise ValueError(f"bucket must be a bare S3 bucket name (no s3://, no slash), got {bucket!r}")


def client(service: str):
    """A boto3 client; endpoint and credentials come from the standard AWS environment."""
    import boto3

    return boto3.client(service)
