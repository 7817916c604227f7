"""The configuration files of the local hub: JupyterHub's, the single-user servers', sparkmagic's.

They follow what EMR configures (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-jupyterhub.html):

- JupyterHub: HTTPS on port 9443 with the certificate of :mod:`fruits.cloud.hub.state`,
  ``PAMAuthenticator`` (EMR's default) with ``jovyan`` as administrator; a user logs in only
  once registered through the REST API (``allow_existing_users``), which the users step does,
  as AWS documents for PAM users. Single-user servers run as the user (``LocalProcessSpawner``,
  its ``setuid``), on 127.0.0.1 ports the spawner picks.
- Single-user servers: notebooks in S3 by s3contents' ``S3ContentsManager`` under
  ``jupyter/<user>/`` of the bucket (EMR's ``jupyter-s3-conf`` with ``s3.persistence.enabled``),
  from ``/etc/jupyter/jupyter_server_config.py`` of the container (Jupyter's system-wide config
  folder, inside the container's own ``/etc``).
- sparkmagic: ``~/.sparkmagic/config.json`` of each user with the Livy URL
  (:func:`fruits.cloud.livy.client.sparkmagic_config`), from the container's ``/etc/skel`` (which
  ``useradd -m`` copies into each new home): sparkmagic also writes its logs into that folder, so
  it must be the user's own. EMR writes the file through ``jupyter-sparkmagic-conf``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fruits.cloud.hub.state import HubState
from fruits.cloud.livy.client import sparkmagic_config

#: Inside the container: Jupyter's system-wide configuration folder (on the container's own /etc).
JUPYTER_ETC = "/etc/jupyter"


def venv_bin() -> Path:
    """The folder of this Python's scripts (``jupyterhub``, ``jupyterhub-singleuser``, ``aws``)."""
    return Path(sys.executable).parent


def hub_config(*, state: HubState, port: int, hub_port: int, proxy_api_port: int, proxy_command: str) -> str:
    """``jupyterhub_config.py`` for the Hub in the container."""
    values = {
        "bind_url": f"https://127.0.0.1:{port}",
        "hub_bind_url": f"http://127.0.0.1:{hub_port}",
        "proxy_api": f"http://127.0.0.1:{proxy_api_port}",
        "proxy_command": [proxy_command],
        "proxy_pid": str(state.hub_dir / "proxy.pid"),
        "ssl_cert": str(state.cert),
        "ssl_key": str(state.key),
        "db_url": f"sqlite:///{state.hub_dir / 'jupyterhub.sqlite'}",
        "cookie_secret": str(state.hub_dir / "jupyterhub_cookie_secret"),
        "singleuser": [str(venv_bin() / "jupyterhub-singleuser")],
        # The image's PATH: its Python first (EMR's has /opt/conda/bin), then the system's; not the
        # caller's, which may name folders of root's home that the users cannot open.
        # JUPYTER_CONFIG_PATH: /etc/jupyter's settings win over those of this Python's own
        # etc/jupyter (which enables jupytext), as the image's settings do on EMR.
        "environment": {"PATH": f"{venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "JUPYTER_CONFIG_PATH": JUPYTER_ETC},
    }
    v = {key: json.dumps(value) for key, value in values.items()}
    return f'''# Written by fruits hub (fruits.cloud.hub.settings) at each start; EMR's JupyterHub, on this machine.
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = {v["bind_url"]}
c.JupyterHub.ssl_cert = {v["ssl_cert"]}
c.JupyterHub.ssl_key = {v["ssl_key"]}
c.JupyterHub.hub_bind_url = {v["hub_bind_url"]}
c.JupyterHub.db_url = {v["db_url"]}
c.JupyterHub.cookie_secret_file = {v["cookie_secret"]}
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.api_url = {v["proxy_api"]}
c.ConfigurableHTTPProxy.command = {v["proxy_command"]}
c.ConfigurableHTTPProxy.pid_file = {v["proxy_pid"]}
c.ConfigurableHTTPProxy.should_start = True

c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False  # no login sessions (systemd) inside the container
c.Authenticator.admin_users = {{"jovyan"}}
c.Authenticator.allow_existing_users = True  # users registered through the REST API may log in

c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = {v["singleuser"]}
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
c.Spawner.environment = {v["environment"]}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
'''


def server_config(*, bucket: str, endpoint_url: str, region: str) -> str:
    """``jupyter_server_config.py``: S3ContentsManager under ``jupyter/<user>/`` of ``bucket``.

    The credentials are moto's throwaway ones; on EMR s3contents uses the instance role, the same
    for every user (``emr-config/NETWORK.md``: what users of one cluster share).
    """
    values = {key: json.dumps(value) for key, value in
              {"bucket": bucket, "endpoint": endpoint_url, "region": region}.items()}
    return f'''# Written by fruits hub (fruits.cloud.hub.settings): EMR's jupyter-s3-conf, s3.persistence.enabled.
import os

c = get_config()  # noqa: F821
c.ServerApp.contents_manager_class = "s3contents.S3ContentsManager"
c.S3ContentsManager.bucket = {values["bucket"]}
c.S3ContentsManager.prefix = "jupyter/" + os.environ["JUPYTERHUB_USER"]
c.S3ContentsManager.endpoint_url = {values["endpoint"]}
c.S3ContentsManager.region_name = {values["region"]}
c.S3ContentsManager.access_key_id = "testing"
c.S3ContentsManager.secret_access_key = "testing"
# EMR's image has no jupytext; here it is installed (for the project's paired notebooks) and would
# save a .py copy next to every notebook saved: off, as on EMR.
c.ServerApp.jpserver_extensions = {{"jupyterlab_jupytext": False}}
'''


def write_all(*, state: HubState, port: int, hub_port: int, proxy_api_port: int, proxy_command: str,
              bucket: str, endpoint_url: str, region: str, livy_url: str) -> Path:
    """Write the three files into the container; return the Hub's config file."""
    hub = state.hub_dir / "jupyterhub_config.py"
    hub.write_text(hub_config(state=state, port=port, hub_port=hub_port, proxy_api_port=proxy_api_port,
                              proxy_command=proxy_command))
    jupyter = state.etc / JUPYTER_ETC.lstrip("/").split("/", 1)[1]
    jupyter.mkdir(parents=True, exist_ok=True)
    (jupyter / "jupyter_server_config.py").write_text(server_config(bucket=bucket, endpoint_url=endpoint_url,
                                                                    region=region))
    jupyter.chmod(0o755)
    sparkmagic = state.etc / "skel" / ".sparkmagic"
    sparkmagic.mkdir(parents=True, exist_ok=True)
    sparkmagic.chmod(0o755)
    (sparkmagic / "config.json").write_text(json.dumps(sparkmagic_config(livy_url), indent=2))
    return hub
