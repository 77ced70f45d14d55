"""Peak memory of this process, as the stages and the candidates record it.

`getrusage`'s `ru_maxrss` is not this process's own on Linux: a child starts from the parent's high-water mark
(it is kept across fork and exec), so every kernel a big process starts would report at least the parent's
size — the flywheel's runner, which holds the router service's models, made all four stages of a week report
its own 1.2–1.3 GB. `/proc/self/status`'s VmHWM is the high-water mark of this process's own memory since it
started its program; elsewhere `ru_maxrss` stands in (macOS counts it in bytes, Linux in KiB)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 / 1024 if sys.platform == "darwin" else maxrss / 1024
