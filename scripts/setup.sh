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
echo "$want" > "$stamp"
echo "alignkit installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
