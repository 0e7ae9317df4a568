"""On a cluster's shared file system, across nodes: three simulated nodes (tests/sim_cluster.py: their own
hostnames, pid namespaces, boot ids and GlusterFS client mounts of one volume) run the engine as a lab's nodes do.
A sweep's workers on every node with one node crashed and one frozen; a training run refused to a second node,
taken over by it after a freeze, and the frozen writer silent when it wakes; `list` and `serve` from a third node
(the versions both writers export, served there as they appear).

The lease timeout is 20 s (twice the floor) so the takeovers take seconds, while a live holder's renewal may still
take 13 s (its fence) on a loaded CI machine; `../shared/recipes/cluster-sim.md` has the volume's measured semantics
(what a node sees of another's writes, and when)."""

import contextlib
import datetime
import json
import os
import time

import pytest

from conftest import wait_for
from sim_cluster import SHARED
from test_one_writer import EPOCHS, PACED_BY_THE_TEST
from test_resume import WORKING_FOLDER

TIMEOUT_S = 20  # EXPERIMENTS_MANAGER_LEASE_TIMEOUT: twice its floor (at the floor, a holder fences itself once a
# renewal takes 6.7 s: on stop 48's loaded CI machine the sweep's live workers may have, leaving nobody to take over)
RAISED = 10  # trials a resume adds to the sweep while its workers run


def _env():
    return dict(os.environ, EXPERIMENTS_MANAGER_LEASE_TIMEOUT=str(TIMEOUT_S), TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONUNBUFFERED="1")


def _folder(name):
    return f"{SHARED}/{name}-{os.getpid()}-{time.monotonic_ns()}"


@pytest.mark.claim("a sweep's workers on three nodes sharing one folder train every trial once, with one node "
                   "crashed and one frozen past the lease timeout (its trial taken over, its late result refused)")
@pytest.mark.claim("a resume's new choices (more trials) are never undone by workers rewriting sweep.json from a "
                   "stale read", note="(10 trials added while 3 nodes tell; every one trained)")
def test_a_sweep_on_three_nodes_with_a_crashed_and_a_frozen_node_counts_each_trial_once(sim_cluster):
    sweep, total = _folder("sweep"), 80
    sim_cluster.run("node1", f"{sim_cluster.python} tests/cluster_sim/sweep_node.py setup {sweep} {total}")
    # node2's and node3's first trial lasts until the test says (a file): the freeze and the crash meet it, however
    # long the test's look at the claims takes on a loaded machine (with 1.5-s trials, stop 48's CI and a local one
    # froze node2 between two trials: nothing to take over); node1 has trials left to ask for (and to watch the
    # quiet claims meanwhile) until both are taken over
    paced = {"node1": {"TRIAL_SECONDS": "0.5"}, "node2": {"TRIAL_UNTIL": f"{sweep}/go-node2"},
             "node3": {"TRIAL_UNTIL": f"{sweep}/never"}}
    workers = {node: sim_cluster.start(node, f"{sim_cluster.python} tests/cluster_sim/sweep_node.py work {sweep}",
                                       env={**_env(), **paced[node]})
               for node in ("node1", "node2", "node3")}

    def holds_a_trial(node):  # a claim (trial-NNNN.lock) naming the node
        return sim_cluster.run("node1", f"grep -l '\"host\": \"{node}\"' {sweep}/trials/*.lock", check=False).stdout

    def taken_over():  # takeovers in all (node3 may have taken node2's trial, then crashed with it)
        return sim_cluster.run("node1", f"grep -ho '\"takeovers\": [0-9]*' {sweep}/trials/*.json | "
                                        "awk '{s += $2} END {print s}'", check=False).stdout.strip()

    # a resume with more trials while the workers run: their rewrites of sweep.json (each tell), from reads the
    # volume may serve stale, must not undo it (choices/NNNN.json)
    def recorded():  # trial records created so far
        return int(sim_cluster.run("node1", f"ls {sweep}/trials | grep -c 'json$'", check=False).stdout.strip() or 0)

    with _told_on_failure(sim_cluster, sweep, workers):
        _sweep_with_a_frozen_and_a_crashed_node(sim_cluster, sweep, total, workers, recorded, holds_a_trial,
                                                taken_over)


@contextlib.contextmanager
def _told_on_failure(sim_cluster, sweep, workers):
    """A failure inside the block says what each worker that ended printed, and the sweep's claims as node1 sees
    them (a worker still running is only named: reading its pipe would wait for it)."""
    try:
        yield
    except AssertionError as failure:
        told = [f"--- {node}: " + ("still running" if process.poll() is None else
                                   f"exit {process.returncode}:\n{process.communicate(timeout=60)[0]}")
                for node, process in workers.items()]
        claims = sim_cluster.run("node1", f"cd {sweep} && head -v -c 400 sweep.lock trials/*.lock", timeout=60,
                                 check=False)
        raise AssertionError("\n".join([str(failure), *told, "--- claims:", claims.stdout])) from None


def _sweep_with_a_frozen_and_a_crashed_node(sim_cluster, sweep, total, workers, recorded, holds_a_trial, taken_over):
    wait_for(lambda: recorded() >= 6, 120, "the workers to record 6 trials")
    sim_cluster.run("node1", f"{sim_cluster.python} tests/cluster_sim/sweep_node.py raise {sweep} {total + RAISED}")
    total += RAISED
    wait_for(lambda: holds_a_trial("node2"), 120, "node2 to train a trial")
    sim_cluster.freeze("node2")  # hung: its heartbeat stops, its trial is taken over after the timeout
    frozen = time.monotonic()
    wait_for(lambda: taken_over() == "1", 300, "node2's trial taken over while node2 is frozen")
    print(f"node2's trial taken over {time.monotonic() - frozen:.1f} s after node2 froze")
    sim_cluster.run("node1", f"touch {sweep}/go-node2")  # its trial ends once it wakes
    sim_cluster.thaw("node2")  # it wakes to find its trial another worker's: it records nothing (exit 75)
    wait_for(lambda: holds_a_trial("node3"), 120, "node3 to train a trial")
    sim_cluster.crash("node3")  # lost with its trial in progress: its claim stays behind
    wait_for(lambda: taken_over() == "2", 120, "node3's trial taken over by another node")
    outputs = {node: process.communicate(timeout=300)[0] for node, process in workers.items()}
    assert workers["node1"].returncode == 0, outputs["node1"]
    assert workers["node2"].returncode == 75 and "lost" in outputs["node2"], outputs["node2"]

    records = json.loads(sim_cluster.run("node1", f"{sim_cluster.python} tests/cluster_sim/sweep_node.py summary "
                                                  f"{sweep}").stdout)
    numbers = sorted(record["tid"] + 1 for record in records)
    print("trained per node:", {node: output.strip().splitlines()[-1:] for node, output in outputs.items()})
    assert numbers == list(range(1, total + 1)), "each trial number once, none beyond the total"
    assert all(record["status"] == "finished" for record in records), records
    assert sum(record["takeovers"] for record in records) == 2, "the crashed and the frozen node's trials"
    hosts = {record["worker"]["host"] for record in records}
    assert "node1" in hosts and hosts <= {"node1", "node2", "node3"}, hosts
    assert "another run took this over" in outputs["node2"], outputs["node2"]  # its claim, named
    results = sim_cluster.run("node1", f"cat {sweep}/results.csv").stdout.strip().splitlines()
    assert len(results) == 1 + total, results


@pytest.mark.claim("across nodes: a second node's resume of a live run is refused; after the writer's node froze, "
                   "it takes over once the heartbeat stood still for the timeout and finishes; the frozen writer, "
                   "thawed, writes nothing; `list` on a third node shows the quiet run as `stalled?`")
@pytest.mark.claim("a skew of minutes between nodes' clocks never breaks a live lease; a holder elsewhere is taken "
                   "over only once its heartbeat stood still for the timeout while the taker watched",
                   note="(across nodes: node2's clock 330 s ahead and behind, under libfaketime)")
@pytest.mark.claim("a lease timeout below 10 s is refused in one line (exit 2)", note="(on node2)")
@pytest.mark.claim("`serve` on a node other than the trainer's picks up a new version within the reload bound plus "
                   "the file system's lag", note="(node3 serves what node1, then node2 export; poll 1 s + 10 s)")
def test_a_run_across_nodes_refused_then_taken_over_and_the_frozen_writer_silent(sim_cluster):
    project = _folder("project")
    go = f"{project}/go"
    sim_cluster.run("node1", f"mkdir -p {project}/examples && cp -r examples/regression {project}/examples/ && "
                             f"cat >> {project}/examples/regression/mysettings_curve_fitting.py <<'END'\n"
                             f"{PACED_BY_THE_TEST.format(go=go)}\nEND")
    settings = "examples/regression/mysettings_curve_fitting.py"
    first = sim_cluster.start("node1", f"cd {project} && {sim_cluster.cli} train -u {settings} "
                                       f"--hparam nbEpoch={EPOCHS}", env=_env())

    def run_folder():
        found = sim_cluster.run("node2", f"ls -d {project}/{WORKING_FOLDER}/*/checkpoints/ckpt-*/state.json "
                                         "2>/dev/null | head -1", check=False).stdout.strip()
        return found.rsplit("/checkpoints/", 1)[0] if found else None

    root = wait_for(lambda: run_folder() or first.poll() is not None, 240, "the first checkpoint")
    assert first.poll() is None, first.communicate()[0]

    # node3 serves the run's versions from its own mount of the volume, while node1 (and later node2) write them
    server = sim_cluster.start("node3", f"timeout 900 {sim_cluster.cli} serve --model_dir {root} --rest-port "
                                        f"{REST_PORT} --grpc-port {REST_PORT - 1} --file_system_poll_wait_seconds "
                                        f"{POLL_S}", env=_env())
    try:
        _writer_refused_frozen_taken_over(sim_cluster, project, root, first, go)
    finally:
        sim_cluster.run("node3", "pkill -f 'experiments-manage[r] serve'", check=False)
        server.communicate(timeout=120)


REST_PORT, POLL_S = 8501, 1  # node3's server (its own network namespace: the port is free there)
LAG_S = 10  # the version's folder renamed on one node, shown by another's mount (measured: 0.8-1.9 s), with margin


def _served_versions(sim_cluster):
    """The versions node3's server has AVAILABLE (REST model status, asked on node3), [] before it answers."""
    answer = sim_cluster.run("node3", f"curl -sf http://127.0.0.1:{REST_PORT}/v1/models/model_curve_fitting",
                             check=False)
    if answer.returncode != 0:
        return []
    return sorted(int(status["version"]) for status in json.loads(answer.stdout)["model_version_status"]
                  if status["state"] == "AVAILABLE")


def _writer_refused_frozen_taken_over(sim_cluster, project, root, first, go):
    wait_for(lambda: 1 in _served_versions(sim_cluster), 180, "node3 to serve version 1, written by node1")
    # node2's resume is refused, with its clock right and with its clock minutes ahead (node1's heartbeat then
    # looks old there: it watches it move) or behind (libfaketime, for that process only)
    for skew in ("", "+330s", "-330s"):
        started = time.monotonic()
        faked = f"faketime -f {skew} " if skew else ""  # its monotonic clock moved too (as one offset)
        second = sim_cluster.run("node2", f"cd {project} && {faked}{sim_cluster.cli} train --resume {root}",
                                 env=_env(), check=False)
        errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert second.returncode == 75 and len(errors) == 1 and "on host node1" in errors[0], (skew, second.stderr)
        watched = "looks stale by this host's clock; watching" in second.stderr
        assert watched == (skew == "+330s"), (skew, second.stderr)
        print(f"node2's resume with its clock {skew or 'right'}: refused after {time.monotonic() - started:.1f} s")
    short = sim_cluster.run("node2", f"cd {project} && {sim_cluster.cli} train --resume {root}",
                            env={**_env(), "EXPERIMENTS_MANAGER_LEASE_TIMEOUT": "1"}, check=False)
    assert short.returncode == 2 and "expected at least 10 seconds" in short.stderr, short.stderr

    sim_cluster.freeze("node1")  # hung in epoch 2
    frozen = time.monotonic()

    def listed_status():
        listing = sim_cluster.run("node3", f"{sim_cluster.cli} list {project}/{WORKING_FOLDER} --format json",
                                  env=_env(), check=False)
        return json.loads(listing.stdout or "[{}]")[0].get("status")

    wait_for(lambda: listed_status() == "stalled?", 60, "`list` on node3 to call the quiet run stalled?")
    sim_cluster.run("node2", f"echo 99 > {go}")
    takeover = sim_cluster.run("node2", f"cd {project} && {sim_cluster.cli} train --resume {root}", env=_env(),
                               timeout=600, check=False)
    assert takeover.returncode == 0, takeover.stdout + takeover.stderr
    assert time.monotonic() - frozen >= TIMEOUT_S
    assert "watching its heartbeat" in takeover.stderr and "did not change for" in takeover.stderr, takeover.stderr
    finished = time.monotonic()
    info = json.loads(sim_cluster.run("node2", f"cat {root}/run.json").stdout)
    assert info["status"] == "finished" and info["epochs_completed"] == EPOCHS
    newest = info["exported_versions"][-1]
    assert newest > 1, info["exported_versions"]
    wait_for(lambda: newest in _served_versions(sim_cluster), POLL_S + LAG_S,
             f"node3 to serve version {newest}, written by node2")
    print(f"node3 served version {newest} {time.monotonic() - finished:.1f} s after node2's run ended")
    answer = json.loads(sim_cluster.run("node3", f"curl -sf -d '{{\"instances\": [[0.5]]}}' http://127.0.0.1:"
                                                 f"{REST_PORT}/v1/models/model_curve_fitting/versions/{newest}:predict"
                                        ).stdout)
    assert len(answer["predictions"]) == 1, answer

    thawed = time.time()
    sim_cluster.thaw("node1")
    output = first.communicate(timeout=120)[0]
    assert first.returncode == 75, output
    assert [line for line in output.splitlines() if line.startswith("error: ")][-1:] and \
        "stopping without writing more" in output, output
    written = sim_cluster.run("node1", f"find {root} -type f -newermt @{thawed:.3f}", check=False).stdout.split()
    assert written == [], f"the thawed writer wrote after it lost the lease: {written}"
    history = sim_cluster.run("node1", f"cut -d, -f1 {root}/history.csv").stdout.split()[1:]
    assert history == [str(epoch) for epoch in range(1, EPOCHS + 1)], history


@pytest.mark.claim("a crashed trial on another node is taken over after one watch of the timeout, not one per "
                   "process", note="(a real sweep: node2 crashed in its trial's second epoch, node1 takes over)")
def test_a_trial_whose_node_crashed_is_taken_over_once_and_continues_from_its_checkpoint(sim_cluster):
    """A one-trial sweep joined from node2 trains its first epoch, then node2 crashes. node1's worker, joining,
    watches the trial's claim stand still for the timeout (and its experiment's lease meanwhile), takes the trial
    over, and its trial process continues from the checkpoint at once: no second wait in the worker, none in the
    trial process (it inherits the worker's watch)."""
    project = _folder("sweep-project")
    go = f"{project}/go"
    sim_cluster.run("node1", f"mkdir -p {project}/examples && cp -r examples/regression {project}/examples/ && "
                             f"cat >> {project}/examples/regression/mysettings_curve_fitting.py <<'END'\n"
                             f"{PACED_BY_THE_TEST.format(go=go)}\nEND")
    sweep = (f"cd {project} && {sim_cluster.cli} sweep -u examples/regression/mysettings_curve_fitting.py --join "
             f"crash --max-evals 1 --seed 3 --hparam nbEpoch=3")
    crashed = sim_cluster.start("node2", sweep, env=_env())
    checkpoint = wait_for(lambda: sim_cluster.run("node1", f"ls -d {project}/{WORKING_FOLDER}/*_sweep_crash/*/"
                                                           "checkpoints/ckpt-*/state.json 2>/dev/null | head -1",
                                                  check=False).stdout.strip() or crashed.poll() is not None,
                          300, "the trial's first checkpoint on node2")
    assert crashed.poll() is None, crashed.communicate()[0]
    experiment = checkpoint.rsplit("/checkpoints/", 1)[0]
    sweep_root = experiment.rsplit("/", 1)[0]
    sim_cluster.crash("node2")  # with its worker, its trial process and their leases' heartbeats (the fixture
    crashed.communicate(timeout=60)  # brings node2 back after the test)
    sim_cluster.run("node1", f"echo 99 > {go}")
    # a worker that asks while every claim looks live leaves (nothing for it to do): start it once the claim's
    # heartbeat is two beats late, as a requeued array task on another node would find it
    claim = f"{sweep_root}/trials/trial-0001.lock"
    wait_for(lambda: time.time() - json.loads(sim_cluster.run("node1", f"cat {claim}").stdout)["heartbeat"]
             > TIMEOUT_S / 3 + 1, 60, "the crashed worker's claim to look stale")
    taker = sim_cluster.start("node1", sweep, env=_env())
    lines = []
    for line in taker.stdout:
        lines.append((time.time(), line.rstrip("\n")))
    taker.wait(timeout=60)
    output = "\n".join(line for _, line in lines)
    assert taker.returncode == 0, output
    [took] = [moment for moment, line in lines if "taking over trial 1/1" in line]
    assert "continues its experiment from its last checkpoint" in output, output
    record = json.loads(sim_cluster.run("node1", f"cat {sweep_root}/trials/trial-0001.json").stdout)
    started = datetime.datetime.fromisoformat(record["started"]).timestamp()
    print(f"the trial process started {started - took:.1f} s after the takeover line")
    assert started - took < TIMEOUT_S / 2, "the worker watched the trial's gone writer a second time"
    trial_log = sim_cluster.run("node1", f"cat {sweep_root}/trials/trial-0001.log").stdout
    assert "watching its heartbeat" not in trial_log, trial_log  # the trial process did not watch it again
    info = json.loads(sim_cluster.run("node1", f"cat {experiment}/run.json").stdout)
    assert info["status"] == "finished" and info["epochs_completed"] == 3, info
    history = sim_cluster.run("node1", f"cut -d, -f1 {experiment}/history.csv").stdout.split()[1:]
    assert history == ["1", "2", "3"], history
