"""Cumulative inference statistics, in the shape of Triton's ModelStatistics.

Per request: time decoding inputs (compute_input), running the model (compute_infer) and
encoding outputs (compute_output); success and fail count whole requests; batch_stats
counts executions per batch size. The sidecar has no queue of its own, so queue is zero.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict


class Stats:
    """Thread-safe counters; `to_proto` snapshots them into a `ModelStatistics` message."""

    def __init__(self):
        self._lock = threading.Lock()
        self._d = defaultdict(lambda: [0, 0])  # name -> [count, ns]
        self._batches = defaultdict(
            lambda: [0, 0, 0, 0]
        )  # size -> [count, in ns, infer ns, out ns]
        self._inferences = 0
        self._executions = 0
        self._last_ms = 0

    def _add(self, key: str, ns: int) -> None:
        d = self._d[key]
        d[0] += 1
        d[1] += ns

    def success(self, batch: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        with self._lock:
            self._add("success", input_ns + infer_ns + output_ns)
            self._add("queue", 0)
            self._add("compute_input", input_ns)
            self._add("compute_infer", infer_ns)
            self._add("compute_output", output_ns)
            b = self._batches[batch]
            b[0] += 1
            b[1] += input_ns
            b[2] += infer_ns
            b[3] += output_ns
            self._inferences += batch
            self._executions += 1
            self._last_ms = time.time_ns() // 1_000_000

    def fail(self, ns: int) -> None:
        with self._lock:
            self._add("fail", ns)
            self._last_ms = time.time_ns() // 1_000_000

    def to_proto(self, pb, name: str, version: str):
        with self._lock:
            dur = {k: pb.StatisticDuration(count=v[0], ns=v[1]) for k, v in self._d.items()}
            batches = [
                pb.InferBatchStatistics(
                    batch_size=size,
                    compute_input=pb.StatisticDuration(count=b[0], ns=b[1]),
                    compute_infer=pb.StatisticDuration(count=b[0], ns=b[2]),
                    compute_output=pb.StatisticDuration(count=b[0], ns=b[3]),
                )
                for size, b in sorted(self._batches.items())
            ]
            return pb.ModelStatistics(
                name=name,
                version=version,
                last_inference=self._last_ms,
                inference_count=self._inferences,
                execution_count=self._executions,
                inference_stats=pb.InferStatistics(**dur),
                batch_stats=batches,
            )
