"""`utils/cpus.py`: the CPUs this process may run on."""

import os

from experiments_manager.utils.cpus import usable_cpus


def test_usable_cpus_are_the_affinity_not_the_machines_count(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3})  # a Slurm job given 2 of a node's CPUs
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cpus() == 2


def test_usable_cpus_fall_back_to_the_count_where_there_is_no_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # (unknown: Python says None)
    assert usable_cpus() == 1
