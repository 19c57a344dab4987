"""Shared test setup: offline hub, deterministic CPU maths."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(__file__))  # tests import tiny_models directly

import torch  # noqa: E402

# The test models are tiny: one thread is faster than two (no fork/join per op) and immune to a busy machine.
torch.set_num_threads(1)
