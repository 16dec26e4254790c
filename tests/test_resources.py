"""How many image-decoding processes: the CPUs and memory this process may use, not the
machine's core count; `ARTGAN_DECODE_WORKERS` overrides. Cgroup files come from fake trees."""

import os

import pytest

from artgan.data import images, resources
from artgan.data.resources import WORKER_MEMORY, decode_workers
from artgan.errors import ArtganError

GIB = 1024**3


def fake_root(tmp_path, cgroup, files, available=64 * GIB):
    """A root with /proc/self/cgroup, /proc/meminfo and the cgroup files given (path: text)."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(cgroup)
    (tmp_path / "proc" / "meminfo").write_text(
        f"MemTotal:       99999999 kB\nMemAvailable:   {available // 1024} kB\n"
    )
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


@pytest.fixture()
def many_cores(monkeypatch):
    """A 64-core machine on which this process may run on all of them."""
    monkeypatch.delenv(resources.WORKERS_VARIABLE, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))


def test_the_tightest_cgroup_v2_quota_counts(tmp_path, many_cores):
    root = fake_root(
        tmp_path,
        "0::/user.slice/job.scope\n",
        {
            "sys/fs/cgroup/user.slice/job.scope/cpu.max": "max 100000\n",
            "sys/fs/cgroup/user.slice/cpu.max": "150000 100000\n",  # 1.5 CPUs, one level up
            "sys/fs/cgroup/cpu.max": "800000 100000\n",
        },
    )
    assert resources.cpu_quota(root) == 1.5
    assert decode_workers(root) == 2


def test_a_cgroup_v1_quota_seen_from_inside_a_container(tmp_path, many_cores):
    """The host's path (/docker/ID) does not exist in the container: its mount root counts."""
    root = fake_root(
        tmp_path,
        "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",  # unlimited
            "sys/fs/cgroup/memory/memory.usage_in_bytes": str(GIB),
        },
    )
    assert decode_workers(root) == 3
    assert resources.available_memory(root) == 64 * GIB


def test_cpu_affinity_counts(tmp_path, many_cores, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5})  # taskset -c 3,5
    root = fake_root(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000"})
    assert decode_workers(root) == 2


def test_memory_caps_the_processes(tmp_path, many_cores):
    root = fake_root(
        tmp_path,
        "0::/job\n",
        {
            "sys/fs/cgroup/job/memory.max": str(2 * GIB),
            "sys/fs/cgroup/job/memory.current": str(GIB),
        },
    )
    assert resources.available_memory(root) == GIB
    assert decode_workers(root) == GIB // WORKER_MEMORY
    assert decode_workers(fake_root(tmp_path / "small", "0::/\n", {}, available=GIB // 10)) == 1


def test_the_setting_overrides_and_is_checked(tmp_path, many_cores, monkeypatch):
    root = fake_root(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": "100000 100000"})
    monkeypatch.setenv("ARTGAN_DECODE_WORKERS", "3")
    assert decode_workers(root) == 3
    for bad in ("0", "-2", "many", "2.5"):
        monkeypatch.setenv("ARTGAN_DECODE_WORKERS", bad)
        with pytest.raises(ArtganError, match=f"ARTGAN_DECODE_WORKERS='{bad}': expected a whole"):
            decode_workers(root)


def test_the_decoding_pool_is_not_sized_by_the_machines_core_count(
    tmp_path, many_cores, monkeypatch
):
    """64 cores, but this process may use two of them: two decoding processes, not 64."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    started = []

    def pool(jobs, workers, cache_file):
        started.append(workers)
        return ((i, None) for i, *_ in jobs)

    monkeypatch.setattr(images, "_decode_in_pool", pool)
    paths = [tmp_path / f"{n}.jpg" for n in range(images.MIN_PARALLEL)]
    images.cache_images(paths, 8, cache_dir=tmp_path / "cache", progress=False)
    assert started == [2]
