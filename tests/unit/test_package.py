"""Package-level promises: light imports, a fast --help, and CI running the README's test command."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_light_modules_do_not_import_heavy_dependencies():
    code = (
        "import sys, alignkit, alignkit.cli, alignkit.config, alignkit.losses.sft, alignkit.data;"
        "heavy = [m for m in ('transformers', 'datasets', 'matplotlib', 'peft', 'fastapi') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_is_fast():
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "alignkit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "sft" in out.stdout
    # generous: the point is that no torch/transformers import happens (that alone takes seconds)
    assert time.perf_counter() - started < 3.0


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    assert ci in readme
    assert "pytest" in ci and "alignkit demo" in readme
