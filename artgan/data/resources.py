"""The CPUs and memory this process may really use, and so how many image-decoding processes
to start.

`os.cpu_count()` counts the machine's cores, not the ones a process may run on: `taskset`
(CPU affinity) and a container's cgroup CPU quota both allow fewer, and each decoding process
costs memory besides. `decode_workers` takes the smallest of the CPUs affinity allows, the
cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, in this process's
cgroup and every one above it) and the available memory (`MemAvailable`, and the cgroup's
memory limit less its usage) over `WORKER_MEMORY`; `ARTGAN_DECODE_WORKERS` overrides it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from artgan.errors import ArtganError

log = logging.getLogger(__name__)

WORKERS_VARIABLE = "ARTGAN_DECODE_WORKERS"
#: Memory budgeted per decoding process: the largest peak measured was 237 MB (resident,
#: the cache pages it wrote included), decoding web-genre-wild's images of up to 6848x4436
#: pixels, Louvre and NGA paintings into a 224 px cache.
WORKER_MEMORY = 256 * 1024**2


def decode_workers(root=Path("/")) -> int:
    """Processes to decode images with: `ARTGAN_DECODE_WORKERS` when set, else the CPUs this
    process may use, at most one per `WORKER_MEMORY` of available memory (at least 1).
    `root` is where /proc and /sys are found (tests give a fake one)."""
    value = os.environ.get(WORKERS_VARIABLE, "").strip()
    if value:
        if not value.isdecimal() or int(value) < 1:
            raise ArtganError(
                f"{WORKERS_VARIABLE}={value!r}: expected a whole number of processes, at least 1"
            )
        return int(value)
    cpus = usable_cpus(root)
    memory = available_memory(root)
    by_memory = cpus if memory is None else max(1, memory // WORKER_MEMORY)
    log.debug(
        "decoding with %d process(es): %d usable CPU(s), %s bytes of memory available",
        min(cpus, by_memory),
        cpus,
        memory,
    )
    return min(cpus, by_memory)


def usable_cpus(root=Path("/")) -> int:
    """The CPUs this process may run on (affinity), at most its cgroup quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota(root)
    return max(1, min(cpus, math.ceil(quota)) if quota is not None else cpus)


def cpu_quota(root=Path("/")) -> float | None:
    """CPUs the tightest cgroup quota above this process allows (1.5: 150 ms per 100 ms), or
    None when there is none."""
    quotas = []
    for folder in cgroup_folders(root, "cpu"):
        v2 = _read(folder / "cpu.max").split()  # "max 100000" or "150000 100000"
        if len(v2) == 2 and v2[0].isdecimal() and v2[1].isdecimal() and int(v2[1]) > 0:
            quotas.append(int(v2[0]) / int(v2[1]))
        quota, period = _number(folder / "cpu.cfs_quota_us"), _number(folder / "cpu.cfs_period_us")
        if quota is not None and quota > 0 and period:  # v1; -1: no quota
            quotas.append(quota / period)
    return min(quotas) if quotas else None


def available_memory(root=Path("/")) -> int | None:
    """Bytes this process may still take: the system's `MemAvailable`, at most what the
    tightest cgroup memory limit above it leaves. None when neither is known."""
    known = []
    for line in _read(root / "proc" / "meminfo").splitlines():
        if line.startswith("MemAvailable:") and line.split()[1].isdecimal():
            known.append(int(line.split()[1]) * 1024)
    for folder in cgroup_folders(root, "memory"):
        for limit_file, usage_file in (
            ("memory.max", "memory.current"),
            ("memory.limit_in_bytes", "memory.usage_in_bytes"),
        ):
            limit, usage = _number(folder / limit_file), _number(folder / usage_file)
            if limit is not None and usage is not None and limit < 1 << 60:  # v1 "unlimited"
                known.append(max(0, limit - usage))
    return min(known) if known else None


def cgroup_folders(root, controller) -> list[Path]:
    """The cgroup folders (v2, and v1 of `controller`) of this process and their parents up
    to the hierarchy's root, from /proc/self/cgroup (lines `ID:CONTROLLERS:PATH`)."""
    folders = []
    base = root / "sys" / "fs" / "cgroup"
    for line in _read(root / "proc" / "self" / "cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            mount = base  # v2: the unified hierarchy
        elif controller in controllers.split(","):
            mount = base / controllers  # v1: e.g. /sys/fs/cgroup/cpu,cpuacct
            if not mount.is_dir():
                mount = base / controller
        else:
            continue
        relative = Path(path.lstrip("/"))
        folders += [mount / parent for parent in (relative, *relative.parents)]
    return folders


def _read(path) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _number(path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.lstrip("-").isdecimal() else None
