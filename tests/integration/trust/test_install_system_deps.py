"""The system-deps script is safe to run again and again."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "infra" / "scripts" / "install-system-deps.sh"


def test_running_the_script_twice_changes_nothing_the_second_time() -> None:
    first = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    second = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    # Either everything is present (nothing installed the second time), or this is not root
    # and the script only said what to install.
    assert "all present" in second.stdout or "install them with" in second.stdout
