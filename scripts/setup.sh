#!/usr/bin/env bash
# Create .venv and install alignkit into it, from nothing but Python 3.10+ and pip.
#   bash scripts/setup.sh        the package (enough for `alignkit demo`)
#   bash scripts/setup.sh dev    plus the test tools
# torch is installed FIRST and pinned: an unpinned torch (or one pulled in by transformers) can be a
# multi-GB CUDA build. Set TORCH_SPEC to choose another build, e.g. TORCH_SPEC="torch==2.13.0+cu128".
# Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
target="."
[ -n "$extra" ] && target=".[$extra]"

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.alignkit-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $torch_spec $extra"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$torch_spec"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
if [ "$extra" = "dev" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  # The annotation app's browser tests drive Debian's Chromium (Playwright's own download needs the network).
  # Best effort: without it those tests are skipped, nothing else changes.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
     { apt-get install -y -qq chromium >/dev/null 2>&1 ||
       { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; then
    echo "chromium installed for the annotation app's browser tests"
  else
    echo "no chromium (apt-get install chromium as root to add it): the annotation browser tests will be skipped"
  fi
fi
echo "$want" > "$stamp"
echo "alignkit installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
