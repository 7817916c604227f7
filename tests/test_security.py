"""No credentials in the repository; private keys with open permissions are refused."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from fruits.cloud.tunnel import KeyPermissionError, check_private_key, tunnel_command

ROOT = Path(__file__).resolve().parents[1]
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key assignment": re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"),
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "password in config": re.compile(r"[\"']?password[\"']?\s*[:=]\s*[\"'][^\"'\s]{6,}[\"']", re.I),
}


def find_secrets(text: str) -> list[str]:
    return [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def test_the_scanner_finds_a_planted_key():
    planted = "aws_access_key_id = AKIA" + "ABCDEFGHIJKLMNOP\naws_secret_access_key = " + "a" * 40
    assert find_secrets(planted) == ["AWS access key id", "AWS secret key assignment"]


def test_no_tracked_file_holds_a_credential():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    findings = []
    for name in filter(None, tracked.decode().split("\0")):
        path = ROOT / name
        if path.is_file() and path.stat().st_size < 5_000_000 and name != "tests/test_security.py":
            found = find_secrets(path.read_text(errors="ignore"))
            if found:
                findings.append(f"{name}: {', '.join(found)}")
    assert not findings, findings


def test_open_private_key_is_refused_with_the_fix(tmp_path):
    key = tmp_path / "emr.pem"
    key.write_text("not a real key")
    os.chmod(key, 0o644)
    with pytest.raises(KeyPermissionError, match=r"permissions 0644.*chmod 400"):
        tunnel_command(str(key), "ec2-1-2-3-4.compute.amazonaws.com")
    os.chmod(key, 0o400)
    check_private_key(str(key))
    command = tunnel_command(str(key), "primary.example")
    assert command[-1] == "hadoop@primary.example" and "9443:localhost:9443" in command
