"""Peak memory of a block of benchmark code: CUDA allocator statistics, or the process RSS sampled
every millisecond on a CPU (shared by the benchmarks; run them as scripts from the repository root)."""

from __future__ import annotations

import os
import threading
import time

import torch


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator statistics, or RSS sampled every ms."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self.extra, self._stop = device, 0, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
        self.extra = max(0, self.peak - self.start)
