"""Start and stop the local hub: moto, secrets and notebooks, the Livy double, the container, the users step.

:class:`LocalHub` is a context manager; ``fruits hub`` and the browser test use the same one.
Every wait is bounded, and :meth:`LocalHub.stop` undoes what :meth:`LocalHub.start` did, in
reverse order, also after a failed start: the namespace (and with it every process and mount of
the container), the Livy double's sessions, and the moto server it started (after saving the
bucket and secrets into the state folder).
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from fruits import config
from fruits.cloud.emr.users import check_user, show_password
from fruits.cloud.hub import aws, container, settings
from fruits.cloud.hub.state import HubState, make_certificate
from fruits.cloud.hub.users_step import run_users_step
from fruits.spark.settings import LOCAL_MASTER

DEFAULT_PORT = 9443
DEFAULT_BUCKET = "fruits-local-hub"
DEFAULT_REGION = "eu-west-3"
#: The uploaded notebook, relative to each user's folder (``fruits emr upload``'s prefix ``fruits``).
NOTEBOOK_KEY = f"fruits/{Path(config.CLOUD_NOTEBOOK).with_suffix('.ipynb').name}"


def proxy_command() -> Path:
    """configurable-http-proxy as ``make env`` installs it (``npm ci`` in ``requirements/npm``)."""
    return config.project_root() / "requirements" / "npm" / "node_modules" / ".bin" / "configurable-http-proxy"


def check_proxy() -> Path:
    path = proxy_command()
    if not path.exists():
        raise container.HubUnavailable(f"configurable-http-proxy is not installed ({path} is missing): run "
                                       "`make env` (needs npm)")
    return path


def wait_for_login_page(url: str, *, timeout: float, alive: Callable[[], bool]) -> float:
    """Seconds until ``GET url`` answers 200 (the certificate is self-signed: not verified)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        if not alive():
            raise RuntimeError("JupyterHub exited before serving its login page")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"no login page at {url} after {timeout:.0f}s")
        time.sleep(0.5)


class LocalHub:
    """JupyterHub as on EMR, on 127.0.0.1:``port``; see :mod:`fruits.cloud.hub`.

    Parameters
    ----------
    state_dir
        The state folder (:mod:`fruits.cloud.hub.state`).
    users
        Named users: their secrets are made if absent, their notebook uploaded if absent, and the
        users step creates them in the container (and locks ``jovyan``).
    endpoint_url
        An S3 and Secrets Manager endpoint to use (a moto server the caller runs); ``None``: the
        hub runs its own and keeps the bucket in the state folder between runs.
    livy_url
        A Livy server for the PySpark kernel; ``None``: the hub runs the Livy double.
    """

    def __init__(self, state_dir: str | Path, *, users: list[str], port: int = DEFAULT_PORT,
                 bucket: str = DEFAULT_BUCKET, region: str = DEFAULT_REGION, endpoint_url: str | None = None,
                 livy_url: str | None = None, livy_master: str = LOCAL_MASTER, echo: Callable[[str], None] = print):
        self.state = HubState(Path(state_dir).resolve())
        self.users = [check_user(u) for u in users]
        if not self.users:
            raise ValueError("name at least one user (--users alice,bob)")
        self.port, self.bucket, self.region = port, bucket, region
        self.endpoint_url, self.livy_url, self.livy_master = endpoint_url, livy_url, livy_master
        self.echo = echo
        self.url = f"https://127.0.0.1:{port}"
        self.moto: aws.MotoServer | None = None
        self.livy = None
        self.container: container.Container | None = None
        self.timings: dict[str, float] = {}
        self.users_step_output = ""

    # --- start ---------------------------------------------------------------------

    def start(self) -> "LocalHub":
        started = time.monotonic()
        container.check_prerequisites()
        proxy = check_proxy()
        self.state.make()
        try:
            self._start_aws()
            self._start_livy()
            self._start_container(proxy)
            self.timings["login_page_s"] = time.monotonic() - started
            self.echo(f"JupyterHub login page at {self.url}/hub/login after {self.timings['login_page_s']:.1f}s")
            self.run_users_step()
            self.timings["ready_s"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def _start_aws(self) -> None:
        if self.endpoint_url is None:
            self.moto = aws.MotoServer(log=self.state.root / "moto.log").start()
            self.endpoint_url = self.moto.url
        s3, secrets = aws.clients(self.endpoint_url, self.region)
        aws.ensure_bucket(s3, self.bucket, self.region)
        if self.moto is not None:
            restored = aws.restore_snapshot(s3, secrets, bucket=self.bucket, folder=self.state.s3_snapshot,
                                            secrets_file=self.state.secrets_snapshot)
            if restored:
                self.echo(f"bucket {self.bucket}: {restored} objects put back from {self.state.s3_snapshot}")
        env = aws.aws_environment(self.endpoint_url, self.region)
        aws.fruits_command("emr", "users", "--bucket", self.bucket, "--users", ",".join(self.users), env=env)
        missing = aws.users_without_notebook(s3, self.bucket, self.users, NOTEBOOK_KEY)
        if missing:
            aws.fruits_command("emr", "upload", "--bucket", self.bucket, "--users", ",".join(missing), env=env)
            self.echo(f"uploaded {NOTEBOOK_KEY} for {', '.join(missing)} (fruits emr upload)")

    def _start_livy(self) -> None:
        if self.livy_url is not None:
            return
        from fruits.cloud.livy.server import LivyDouble

        work = self.state.root / "livy"
        work.mkdir(exist_ok=True)
        # The sessions read and write the hub's bucket: its moto endpoint, never a real AWS.
        self.livy = LivyDouble(port=aws.free_port(), master=self.livy_master, work_dir=work, startup_timeout=300,
                               environment=aws.aws_environment(self.endpoint_url, self.region)).start()
        self.livy_url = self.livy.url

    def _start_container(self, proxy: Path) -> None:
        container.prepare(self.state)
        make_certificate(self.state.cert, self.state.key)
        container.write_shims(self.state)
        config_file = settings.write_all(state=self.state, port=self.port, hub_port=aws.free_port(),
                                         proxy_api_port=aws.free_port(), proxy_command=str(proxy),
                                         bucket=self.bucket, endpoint_url=self.endpoint_url, region=self.region,
                                         livy_url=self.livy_url)
        hub = [str(settings.venv_bin() / "jupyterhub"), "-f", str(config_file)]
        self.container = container.Container(self.state, hub).start()
        try:
            wait_for_login_page(f"{self.url}/hub/login", timeout=180, alive=self.container.running)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; the hub's log ({self.container.log}):\n{self.container.log_tail()}") from exc

    def run_users_step(self) -> str:
        """Run the users step again (it is idempotent); returns its output, raises if it fails."""
        result = run_users_step(state=self.state, port=self.port, endpoint_url=self.endpoint_url,
                                region=self.region, bucket=self.bucket, users=self.users)
        self.users_step_output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"the users step failed ({result.returncode}):\n{self.users_step_output[-3000:]}")
        return self.users_step_output

    def password(self, user: str) -> str:
        """What ``fruits emr users --show USER`` prints (the caller's view of Secrets Manager)."""
        return show_password(aws.clients(self.endpoint_url, self.region)[1], bucket=self.bucket, user=user)

    # --- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything started, in reverse order; each part even if another fails."""
        errors = []
        if self.container is not None:
            try:
                self.container.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                errors.append(exc)
            self.container = None
        if self.livy is not None:
            try:
                self.livy.stop()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            self.livy = None
        if self.moto is not None:
            try:
                s3, secrets = aws.clients(self.endpoint_url, self.region)
                saved = aws.save_snapshot(s3, secrets, bucket=self.bucket, folder=self.state.s3_snapshot,
                                          secrets_file=self.state.secrets_snapshot)
                self.echo(f"bucket {self.bucket}: {saved} objects kept in {self.state.s3_snapshot} for the next start")
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                self.moto.stop()
                self.moto = None
        if errors:
            raise errors[0]

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
