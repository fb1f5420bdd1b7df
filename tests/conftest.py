"""Test-wide settings: offline and quiet. Runs that train pass train.threads=1, and subprocesses get
OMP_NUM_THREADS=1, so two processes share a 2-core machine without oversubscribing it."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
