"""``fruits hub``: JupyterHub set up like EMR's, on this machine, to try and test the interactive path.

On EMR, JupyterHub runs in a Docker container named ``jupyterhub`` on the primary node: PAM
users of the container's own ``/etc``, the image's default administrator ``jovyan``/``jupyter``,
HTTPS on port 9443 with a self-signed certificate, notebooks kept in S3 under
``s3://BUCKET/jupyter/<user>/`` by s3contents (``jupyter-s3-conf``), and sparkmagic's PySpark
kernel talking to Livy. Here each piece is the real program, and only AWS and Livy are doubles:

- :mod:`~fruits.cloud.hub.state`: the hub's state folder and its self-signed certificate;
- :mod:`~fruits.cloud.hub.container`: "the container": mount and PID namespaces (``unshare``)
  with their own ``/etc`` (passwd, shadow, group, PAM) and ``/home``, and the ``docker`` shim
  that lets ``docker exec jupyterhub ...`` enter them (``nsenter``);
- :mod:`~fruits.cloud.hub.settings`: the Hub's, the single-user servers' (S3ContentsManager)
  and sparkmagic's configuration files;
- :mod:`~fruits.cloud.hub.aws`: moto's server (S3 and Secrets Manager), the bucket, the
  secrets made by the project's own :func:`fruits.cloud.emr.users.ensure_secrets` and the
  notebooks uploaded by :mod:`fruits.cloud.emr.deploy`'s plan;
- :mod:`~fruits.cloud.hub.users_step`: ``bootstrap/jupyterhub-users.sh``, unchanged, with the
  real AWS CLI and the ``docker`` shim;
- :mod:`~fruits.cloud.hub.runner`: starts and stops all of it (:class:`LocalHub`).

What differs from EMR is listed in ``docs/jupyterhub.md``.
"""
