"""The Ray backend a simulated federation asks Flower for (experiments_manager/federated/simulation.py)."""

import os

import pytest

from experiments_manager.federated.simulation import _backend_config


@pytest.mark.claim("a simulated federation starts one Ray worker per client that can train at once: no more than "
                   "its clients, nor than the CPUs the process may run on (a Slurm job's, not its node's)")
@pytest.mark.parametrize("clients, allowed, expected", [(1, 2, 1), (2, 2, 2), (8, 2, 2), (3, 64, 3)])
def test_ray_gets_no_more_cpus_than_clients_or_the_cpus_the_process_may_use(monkeypatch, clients, allowed, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(allowed)))
    config = _backend_config(clients)
    assert config["init_args"]["num_cpus"] == expected
    assert config["client_resources"] == {"num_cpus": 1, "num_gpus": 0.0}  # one client per Ray worker
