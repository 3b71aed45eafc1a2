"""What the throughput benchmarks (train_step.py, inference.py) share: clocks, load, sizes, table.

Two clocks per measurement on the CPU: wall time (what a user waits) and the process's CPU time
(``time.process_time``). With one intra-op thread the CPU time is what the step would take on an
idle core, so it stays comparable while other jobs share the machine; wall time on a busy machine
also counts the time the process waited for a core. On CUDA only wall time (after a synchronize)
means anything.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch

# BCCD (640x480, 3 classes), the data of the CPU experiment config.
BCCD_NUM_CLASSES = 3


@dataclass
class Timings:
    """Per-call seconds on both clocks (CPU time is meaningless on CUDA and left empty there)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def median(self, clock: str) -> float:
        values = self.wall if clock == "wall" else self.cpu
        return statistics.median(values) if values else float("nan")


class Stopwatch:
    """Context manager that appends the elapsed wall and CPU seconds of its block to ``timings``."""

    def __init__(self, timings: Timings, device: torch.device) -> None:
        self.timings, self.device = timings, device

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.timings.wall.append(time.perf_counter() - self.wall)
        if self.device.type == "cpu":
            self.timings.cpu.append(time.process_time() - self.cpu)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"800x1333"`` -> (800, 1333) (height, width); None stays None."""
    if text is None:
        return None
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def resident_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_resident() -> None:
    """Restart the high-water mark of resident memory (Linux: "5" into /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")


def peak_resident_mb() -> float:
    """High-water mark of resident memory in MB since the last :func:`reset_peak_resident`
    (VmHWM; getrusage's maxrss cannot be reset and would keep the peak of setting up)."""
    with open("/proc/self/status") as file:
        line = next(line for line in file if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_line(device: torch.device, threads: int) -> str:
    """One line naming the machine, torch version, threads and the current load average."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return (f"{what}; torch {torch.__version__}; {threads} intra-op thread(s); "
            f"load average (1/5/15 min) {load_average()}")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` as ``1.23x`` (higher is better for throughputs)."""
    if not baseline or baseline != baseline or value != value:
        return "-"
    return f"{value / baseline:.2f}x"
