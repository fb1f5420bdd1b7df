"""Run the real `alignkit` command line in a subprocess, as a user would."""

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = True):
    """Run `python -m alignkit ...` as a user would, returning the completed process."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "alignkit", *args], capture_output=True, text=True, cwd=cwd,
                         env=full_env, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"alignkit {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out
