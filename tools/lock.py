"""Re-pin requirements/constraints.txt from the packages installed in the current environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "# Exact versions of every package the project was tested with (pip freeze of .venv).\n"
    "# Regenerate with 'make lock' after changing pyproject.toml; environment.yml derives from it.\n"
)


def main() -> int:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    kept = [line for line in frozen if line and not line.lower().startswith(("fruits-emr", "-e "))]
    (ROOT / "requirements" / "constraints.txt").write_text(HEADER + "\n".join(kept) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
