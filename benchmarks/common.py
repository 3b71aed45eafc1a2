"""What the throughput benchmarks (train_step.py, inference.py) share: clocks, load, sizes, table.

Two clocks per measurement on the CPU: wall time (what a user waits) and the process's CPU time
(``time.process_time``). With one intra-op thread the CPU time is what the step would take on an
idle core, so it stays comparable while other jobs share the machine; wall time on a busy machine
also counts the time the process waited for a core. On CUDA only wall time means anything: a whole
call is timed after a synchronize (:class:`Stopwatch`), a part of a step between two CUDA events
(:class:`EventStopwatch`), since a synchronize inside the step would change what is timed.
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
    """Per-call seconds on both clocks (CPU time is meaningless on CUDA and left empty there).

    ``events`` holds (start, end) CUDA event pairs not read yet: they become wall seconds when the
    timings are read, so that recording them never waits for the GPU.
    """

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)

    def median(self, clock: str) -> float:
        self.read_events()
        values = self.wall if clock == "wall" else self.cpu
        return statistics.median(values) if values else float("nan")

    def read_events(self) -> None:
        """Elapsed time of every recorded event pair into ``wall`` (waits for the last to complete)."""
        for start, end in self.events:
            end.synchronize()
            self.wall.append(start.elapsed_time(end) / 1000)  # elapsed_time is in ms
        self.events.clear()

    def clear(self) -> None:
        self.wall.clear()
        self.cpu.clear()
        self.events.clear()


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


class EventStopwatch(Stopwatch):
    """For a part of a step (the criterion inside a training step): times its block without a host-
    device sync. On CUDA two events on the current stream bracket the block and ``timings`` reads
    them later: the GPU's own time from reaching the block to finishing it, launch gaps included.
    On the CPU it is :class:`Stopwatch` (whose synchronize is a no-op there)."""

    def __enter__(self) -> EventStopwatch:
        if self.device.type != "cuda":
            return super().__enter__()
        self.start = torch.cuda.Event(enable_timing=True)
        self.start.record()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type != "cuda":
            return super().__exit__(*exc)
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        self.timings.events.append((self.start, end))


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
