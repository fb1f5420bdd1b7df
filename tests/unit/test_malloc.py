"""The CLI's tcmalloc re-run: when it preloads the library, and that it re-runs the same command line."""

import os
import subprocess
import sys

import pytest

from alignkit import malloc
from alignkit.malloc import tcmalloc_to_preload


@pytest.fixture
def libdir(tmp_path):
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    return tmp_path


def test_preloads_the_first_library_found(tmp_path, libdir):
    found = tcmalloc_to_preload({}, "linux", [tmp_path / "missing", libdir])
    assert found == str(libdir / "libtcmalloc_minimal.so.4")


def test_full_tcmalloc_counts_too(tmp_path):
    (tmp_path / "libtcmalloc.so.4").write_bytes(b"")
    assert tcmalloc_to_preload({}, "linux", [tmp_path]) == str(tmp_path / "libtcmalloc.so.4")


@pytest.mark.parametrize("env, platform", [
    ({"LD_PRELOAD": "/opt/libjemalloc.so"}, "linux"),  # the user's own preload (or the re-run's) wins
    ({"ALIGNKIT_TCMALLOC": "0"}, "linux"),
    ({}, "darwin"),
    ({}, "win32"),
])
def test_leaves_the_process_alone(libdir, env, platform):
    assert tcmalloc_to_preload(env, platform, [libdir]) is None


def test_nothing_installed_means_nothing_to_do(tmp_path):
    assert tcmalloc_to_preload({}, "linux", [tmp_path]) is None


def test_rerun_replaces_the_process_with_the_same_command(monkeypatch, libdir):
    calls = []
    monkeypatch.setattr(malloc, "DIRS", (str(libdir),))
    monkeypatch.setattr(malloc.sys, "platform", "linux")
    monkeypatch.setattr(malloc.sys, "orig_argv", ["python3", "/venv/bin/alignkit", "demo", "--quick"])
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("ALIGNKIT_TCMALLOC", raising=False)
    monkeypatch.setattr(malloc.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    malloc.rerun_with_tcmalloc()
    (path, argv, env), = calls
    assert path == sys.executable and argv == [sys.executable, "/venv/bin/alignkit", "demo", "--quick"]
    assert env["LD_PRELOAD"] == str(libdir / "libtcmalloc_minimal.so.4")


def test_a_real_rerun_loads_it_once():
    found = tcmalloc_to_preload({}, sys.platform)
    if found is None:
        pytest.skip("tcmalloc is not installed here")
    script = ("import os; from alignkit.malloc import rerun_with_tcmalloc; rerun_with_tcmalloc(); "
              "print(os.environ['LD_PRELOAD'], any('tcmalloc' in line for line in open('/proc/self/maps')))")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ALIGNKIT_TCMALLOC")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [found, "True"]
