"""``fruits emr setup`` and ``fruits emr users``: the AWS account's side, done once, outside a cluster's life.

``setup`` makes the IAM roles clusters launch with (:mod:`fruits.cloud.emr.iam`); ``users``
keeps the JupyterHub logins' passwords in Secrets Manager and, on request, adds the step that
creates them on a running cluster (:mod:`fruits.cloud.emr.users`). Neither has a counterpart
on every Spark platform, so they are verbs of EMR's own rather than of
:class:`~fruits.cloud.platform.SparkPlatform`.
"""

from __future__ import annotations

import json
import sys

from fruits.cloud.emr import iam, users
from fruits.cloud.emr.aws import check_bucket, client
from fruits.cloud.platform import show_request


def add_user_options(parser) -> None:
    """``--users`` and ``--users-file``, for every verb that takes JupyterHub users."""
    parser.add_argument("--users", metavar="A,B",
                        help="JupyterHub users (comma-separated): a login each, jovyan locked; "
                             "upload puts the cloud notebook in each one's folder")
    parser.add_argument("--users-file", metavar="PATH", help="JupyterHub users, one name per line (# comments)")


def add_verbs(verbs) -> None:
    """Register ``setup`` and ``users`` on ``fruits emr``'s verb parser."""
    def verb(name: str, help_text: str):
        sub = verbs.add_parser(name, help=help_text)
        sub.add_argument("--dry-run", action="store_true", help="print the API requests, touch nothing")
        return sub

    login = verb("users", "JupyterHub logins: passwords in Secrets Manager; --show NAME prints one; "
                          "--cluster-id adds the step that creates the users on a running cluster")
    login.add_argument("--bucket", required=True, help="bucket name (not a URI): the passwords belong to its clusters")
    login.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
    login.add_argument("--show", metavar="NAME",
                       help="print the password of NAME (from Secrets Manager) and nothing else")
    login.add_argument("--rotate", metavar="NAME",
                       help="give NAME a new password (both secrets); the next users step (--cluster-id) sets it")
    login.add_argument("--cluster-id", help="also add the users step to this running cluster")
    add_user_options(login)
    roles = verb("setup", "create the project's IAM roles and instance profile (idempotent)")
    roles.add_argument("--bucket", required=True, help="the one bucket the cluster instances may use")
    roles.add_argument("--prefix", default="fruits", help="key prefix in the bucket (default: fruits)")
    roles.add_argument("--subnet-id", help="also tag this subnet and its VPC for AmazonEMRServicePolicy_v2")
    roles.add_argument("--account-id", help="account id for the policies (default: from STS)")
    roles.add_argument("--print-policy", choices=["caller", "setup"],
                       help="print the IAM policy a cluster user (caller) or the administrator running "
                            "setup needs, rendered for this bucket and account; change nothing")


def named_users(args) -> list[str]:
    """The users ``--users`` and ``--users-file`` name (none when the verb takes neither)."""
    return users.parse_users(getattr(args, "users", None), getattr(args, "users_file", None))


def users_command(args) -> int:
    """``fruits emr users``: see :mod:`fruits.cloud.emr.users`."""
    check_bucket(args.bucket)
    names = named_users(args)
    if args.show:
        if names or args.cluster_id:
            raise ValueError("--show NAME prints one password and takes no --users or --cluster-id")
        name = users.password_secret_name(args.bucket, args.show)
        if args.dry_run:
            show_request("secretsmanager.get_secret_value", {"SecretId": name})
            return 0
        print(users.show_password(client("secretsmanager"), bucket=args.bucket, user=args.show))
        return 0
    if args.rotate:
        users.check_user(args.rotate)
        if names:
            raise ValueError("--rotate NAME takes no --users (add --cluster-id to set it on a running cluster)")
        names = [args.rotate]
    if not names:
        raise ValueError("name the users (--users A,B or --users-file PATH), or --show NAME, or --rotate NAME")

    def step_request(region: str) -> dict:
        return users.add_step_request(cluster_id=args.cluster_id, bucket=args.bucket, prefix=args.prefix,
                                      region=region, users=names)

    if args.dry_run:
        rotation = [{"operation": "secretsmanager.put_secret_value",
                     "request": {"SecretId": name, "SecretString": users.REDACTED}}
                    for name in (users.password_secret_name(args.bucket, args.rotate),
                                 users.secret_name(args.bucket, args.rotate))] if args.rotate else []
        print(json.dumps((rotation or users.dry_run_operations(bucket=args.bucket, users=names))
                         + ([{"operation": "emr.add_job_flow_steps", "request": step_request(users.region_name())}]
                            if args.cluster_id else []), indent=2))
        return 0
    secrets_client = client("secretsmanager")
    if args.rotate:
        users.rotate_password(secrets_client, bucket=args.bucket, user=args.rotate)
        print(f"rotated: new password of {args.rotate} in {users.password_secret_name(args.bucket, args.rotate)}, "
              f"its hash in {users.secret_name(args.bucket, args.rotate)}"
              + ("" if args.cluster_id else "; the cluster keeps the old one until the users step runs "
                                            "(--cluster-id ID)"))
    else:
        users.ensure_secrets(secrets_client, bucket=args.bucket, users=names)
    if args.cluster_id:
        step = step_request(secrets_client.meta.region_name)
        step_id = client("emr").add_job_flow_steps(**step)["StepIds"][0]
        print(f"step {step_id} added to {args.cluster_id}: creates {', '.join(names)} in JupyterHub, jovyan locked "
              f"(aws emr describe-step --cluster-id {args.cluster_id} --step-id {step_id})")
    print(f"each password: fruits emr users --bucket {args.bucket} --show NAME")
    return 0


def setup(args) -> int:
    """``fruits emr setup``: see :mod:`fruits.cloud.emr.iam`."""
    check_bucket(args.bucket)
    account = args.account_id
    if not account:
        try:
            account = iam.account_id()
        except Exception as exc:  # no credentials: a dry run can still show the requests
            if not (args.dry_run or args.print_policy):
                raise ValueError(f"cannot tell the AWS account ({exc}); give --account-id or set credentials")
            account = iam.UNKNOWN_ACCOUNT
            print(f"note: no AWS credentials ({exc.__class__.__name__}); the account id is shown as {account}",
                  file=sys.stderr)
    if args.print_policy:
        policy = (iam.caller_policy(bucket=args.bucket, account=account) if args.print_policy == "caller"
                  else iam.setup_policy(account=account))
        print(json.dumps(policy, indent=2))
        return 0
    if args.dry_run:
        planned = iam.plan(bucket=args.bucket, prefix=args.prefix, account=account, subnet_id=args.subnet_id)
        print(json.dumps([{"operation": s.operation, "request": s.request} for s in planned], indent=2))
        return 0
    planned = iam.plan(bucket=args.bucket, prefix=args.prefix, account=account, iam=client("iam"),
                       ec2=client("ec2") if args.subnet_id else None, subnet_id=args.subnet_id)
    try:
        changed = iam.run(planned)
    except Exception as exc:  # botocore's ClientError, e.g. AccessDenied: say what to grant
        error = getattr(exc, "response", {}).get("Error")
        if not error:
            raise
        print(f"error: {error.get('Code')}: {error.get('Message')}\nThe administrator running setup needs: "
              f"fruits emr setup --bucket {args.bucket} --print-policy setup", file=sys.stderr)
        return 1
    if changed:
        print(f"{changed} change(s) made. Clusters use instance profile {iam.INSTANCE_ROLE} and service "
              f"role {iam.SERVICE_ROLE} (emr-config/cluster.json).")
    else:
        print("Nothing changed: every role, policy and profile was already in place.")
    print("People who launch clusters need iam:PassRole on both roles: "
          f"fruits emr setup --bucket {args.bucket} --print-policy caller")
    return 0
