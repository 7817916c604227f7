"""The hub's state folder and the self-signed certificate it serves HTTPS with.

One folder holds everything ``fruits hub`` writes (default ``output/hub``)::

    tls/           hub.crt, hub.key: self-signed for 127.0.0.1 and localhost, made at each start
    s3/            the bucket's objects between runs (only when the hub runs its own moto server)
    secrets.json   the secrets between runs (same; mode 600)
    container/     "the container" of this start: etc/, home/, hub/ (JupyterHub's
                   database, config, logs); made afresh at each start, as a new cluster is

Restarting on the same folder is a new cluster on the same bucket: the notebooks and the
passwords stay, the container's users are created again by the users step.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HubState:
    """Paths under the state folder ``root``."""

    root: Path

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def cert(self) -> Path:
        return self.tls / "hub.crt"

    @property
    def key(self) -> Path:
        return self.tls / "hub.key"

    @property
    def s3_snapshot(self) -> Path:
        return self.root / "s3"

    @property
    def secrets_snapshot(self) -> Path:
        return self.root / "secrets.json"

    @property
    def container(self) -> Path:
        return self.root / "container"

    @property
    def etc(self) -> Path:
        return self.container / "etc"

    @property
    def home(self) -> Path:
        return self.container / "home"

    @property
    def hub_dir(self) -> Path:
        """JupyterHub's working folder: its config, database, cookie secret and log."""
        return self.container / "hub"

    @property
    def bin(self) -> Path:
        """The ``docker`` shim, put first on the users step's PATH."""
        return self.container / "bin"

    @property
    def users_step_state(self) -> Path:
        """What the users step keeps on the primary node (``FRUITS_USERS_STATE``)."""
        return self.container / "users-step"

    def make(self) -> "HubState":
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return self


def make_certificate(cert: Path, key: Path, *, days: int = 30) -> None:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1``, as EMR's JupyterHub has one.

    EMR makes its own at cluster start (the browser warns; AWS documents replacing it); so does
    each start here. RSA 2048, SHA-256; the key file is readable by its owner only.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fruits-emr local JupyterHub")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(b"")
    os.chmod(key, 0o600)
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
