"""tcmalloc for the `alignkit` command: glibc's malloc is slow to hand back the large, short-lived tensors
of a training step (logits above all), and TCMalloc (Google's allocator, Debian package libtcmalloc-minimal4)
is faster at it. An allocator can only be swapped before a process starts, so the command re-runs itself once
with LD_PRELOAD naming the library, as PyTorch's own CPU launcher (torch.backends.xeon.run_cpu) does
on request.

Nothing happens off Linux, when the library is not installed, when LD_PRELOAD is already set (by the user, or
by this re-run), or with ALIGNKIT_TCMALLOC=0. Results are the same either way: only allocation changes.
Measured in docs/benchmarks.md ("Memory allocator").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
SWITCH = "ALIGNKIT_TCMALLOC"


def tcmalloc_to_preload(env: Mapping[str, str], platform: str = sys.platform,
                        dirs: Sequence[str | Path] | None = None) -> str | None:
    """The library to preload for a process with this environment, or None to leave it as it is."""
    if platform != "linux" or env.get(SWITCH, "1") == "0" or env.get("LD_PRELOAD"):
        return None
    for folder in DIRS if dirs is None else dirs:
        for name in NAMES:
            path = Path(folder) / name
            if path.is_file():
                return str(path)
    return None


def rerun_with_tcmalloc() -> None:
    """Replace this process with the same command line, tcmalloc preloaded; return when there is nothing
    to do."""
    library = tcmalloc_to_preload(os.environ)
    if library is None:
        return
    # tcmalloc reports every allocation over 1 GiB on stderr unless told otherwise
    env = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 62), **os.environ, "LD_PRELOAD": library}
    # argv[0] as sys.executable: a venv's python finds its packages through the path it was started by
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
