"""Federated training with Flower: simulation (real Flower simulation engine), strategies, original settings."""

import contextlib
import csv
import json
import os
import queue
import re
import signal
import subprocess
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import RAN_AS, REPO, free_port, read_run, settings_variant, single_experiment, wait_for
from test_serving_cli import OutputReader


FEDERATED_SETTINGS = "examples/federated/mysettings_federated_curve_fitting.py"
ORIGINAL_SETTINGS = REPO / "tests/data/federated/settings_original_federated.py"


def history(experiment_dir):
    with open(Path(experiment_dir) / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    'the same settings file trains from Kafka, federated, or as a sweep whose trials are ordinary experiments')
@pytest.mark.claim('`enable_federated_learning = True` makes a settings file federated; FedAvg by default')
@pytest.mark.claim(
    'each client trains `nbEpoch` local epochs per round with the same trainer',
    note='(client epochs == rounds × nbEpoch)')
@pytest.mark.claim("client `i` loads the settings with `hparams['procID'] = i`")
@pytest.mark.claim('`get_client_partition` splits a pipeline (IID)', note='(half the batches each)')
@pytest.mark.claim('`federated simulate --num-clients --rounds`')
@pytest.mark.claim(
    'the server logs aggregated training metrics and its own evaluation per round (TensorBoard, history.csv, PNG, '
    'run.json)',
    note='(the HParams part is not asserted)')
@pytest.mark.claim('the server exports the global model when the monitored value improves')
@pytest.mark.claim('clients keep their folders under `<experiment>/clients/client_<i>/`')
@pytest.mark.claim('`examples/kafka`, `examples/federated` train')
@pytest.mark.claim("`federated simulate --mlflow URI`: the server's run logs each round as a step and each exported "
                   "version; a server that does not answer keeps them for `mlflow sync`")
def test_simulation_learns_logs_every_round_and_exports_the_global_model(run_cli, workdir):
    dead = f"http://127.0.0.1:{free_port()}"  # an MLflow server that does not answer: what it would get is kept
    result = run_cli("federated", "simulate", "-u", FEDERATED_SETTINGS, "--num-clients", "2", "--rounds", "3",
                     "--hparam", "nbEpoch=1", "--mlflow", dead, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    server = single_experiment(workdir / "experiments/examples/federated_curve_fitting")
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 3
    assert run["federated"]["strategy"] == "FedAvg" and run["federated"]["minFit"] == 2
    rounds = history(server)
    assert [row["epoch"] for row in rounds] == ["1", "2", "3"]  # rounds counted from 1, as in the log
    val_losses = [float(row["val_loss"]) for row in rounds]
    assert val_losses[-1] < val_losses[0], val_losses  # the global model improves
    assert all(float(row["loss"]) > 0 for row in rounds)  # the clients' aggregated training loss
    assert run["exported_versions"] and run["best_value"] == min(val_losses)
    assert (server / "exported_models" / str(run["last_exported_version"]) / "saved_model.pb").is_file()
    assert list((server / "logs" / "validation").glob("events.out.tfevents.*"))
    assert (server / "training_curves.png").stat().st_size > 0
    assert f"experiment folder: {server.relative_to(workdir)}" in result.stdout
    kept = [json.loads(line) for line in (server / "mlflow_outbox.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in kept if entry["kind"] == "metrics"] == [1, 2, 3]
    assert [entry["metrics"]["val_loss"] for entry in kept if entry["kind"] == "metrics"] == pytest.approx(val_losses)
    assert [entry["version"] for entry in kept if entry["kind"] == "version"] == sorted(map(int, run["version_records"]))
    assert kept[-1]["kind"] == "end" and kept[-1]["status"] == "FINISHED" and run["mlflow"]["tracking_uri"] == dead
    assert f"MLflow run:        not sent yet: {RAN_AS} mlflow sync" in result.stdout
    listing = run_cli("list", "experiments/examples/federated_curve_fitting").stdout
    assert "finished" in listing and "r3/3" in listing  # a federation's progress counts rounds
    for client_id in (0, 1):
        client = server / "clients" / f"client_{client_id}"
        client_run = read_run(client)
        assert client_run["hparams"]["procID"] == client_id
        assert client_run["epochs_completed"] == 3  # one local epoch per round, counted across rounds
        # IID split by the example's get_client_partition: half of the 40 batches each
        assert client_run["last_round"]["num_examples"] == 20 * 50
        assert len(history(client)) == 3
        assert not (client / "exported_models").exists()


def test_unknown_strategy_lists_the_available_ones_and_creates_nothing(run_cli, workdir):
    result = run_cli("federated", "simulate", "-u", FEDERATED_SETTINGS, "--hparam", "federated=FedMagic")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    line = errors[0]
    assert "mysettings_federated_curve_fitting.py: hparams['federated']: unknown Flower strategy 'FedMagic'" in line
    assert "FedAvg" in line and "FedProx" in line and "FedAdam" in line
    assert not (workdir / "experiments").exists()


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim("`federated = 'FedProx'` with `proximal_mu` passed to the strategy")
@pytest.mark.claim("client `i` loads the settings with `hparams['procID'] = i`")
@pytest.mark.claim('`train -u` of a federated settings file simulates the federation')
@pytest.mark.claim('files of the original framework run unchanged')
def test_original_federated_settings_run_unchanged_through_train(run_cli, workdir, monkeypatch):
    """`train` of an original-framework file with enable_federated_learning simulates the federation;
    each client loads its own data file through hparams['procID']."""
    rng = np.random.default_rng(0)
    for name, rows in (("client0", 100), ("client1", 300), ("val", 100)):
        x = rng.uniform(-1, 1, size=(rows, 1))
        np.savetxt(workdir / f"{name}.csv", np.hstack([x, 2 * x + 1]), delimiter=",")
    monkeypatch.setenv("FEDERATED_TEST_DATA", str(workdir))
    result = run_cli("train", "-u", str(ORIGINAL_SETTINGS), "--hparam", "rounds=2",
                     "--hparam", "federated='FedProx'", "--hparam", "proximal_mu=0.1", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    server = single_experiment(workdir / "experiments/federated_original")
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 2
    assert run["federated"]["strategy"] == "FedProx" and run["federated"]["parameters"] == {"proximal_mu": 0.1}
    examples = [read_run(server / "clients" / f"client_{i}")["last_round"]["num_examples"] for i in (0, 1)]
    assert examples == [100, 300]  # 5 and 15 batches of 20: each client read its own file


def fake_settings(**hparams):
    return types.SimpleNamespace(experiment=types.SimpleNamespace(hparams=hparams), path=Path("s.py"),
                                 federated=types.SimpleNamespace(round_timeout_secs=60), overrides={},
                                 unknown_overrides=frozenset())


@pytest.mark.claim('`enable_federated_learning = True` makes a settings file federated; FedAvg by default')
@pytest.mark.claim('`minCl`, `minFit`, `minEval`, `rounds` read from hparams')
def test_federation_config_reads_the_original_hparams_and_strategy_parameters():
    from experiments_manager.federated.federation_config import FederationConfig

    config = FederationConfig.from_settings(
        fake_settings(federated="FedProx", minCl=3, minFit=2, proximal_mu=0.5, learningRate=0.1), rounds=4)
    assert (config.min_clients, config.min_fit, config.min_eval, config.rounds) == (3, 2, 2, 4)
    assert config.strategy_arguments() == {"proximal_mu": 0.5, "min_available_nodes": 3, "min_train_nodes": 2,
                                           "min_evaluate_nodes": 2}
    assert FederationConfig.from_settings(fake_settings()).strategy_name == "FedAvg"


@pytest.mark.parametrize("hparams, num_clients, expected", [
    ({"minCl": 2, "minFit": 3}, None, "s.py: hparams['minFit']: expected <= minCl (2), got 3"),
    ({"minCl": 0}, None, "s.py: hparams['minCl']: expected an int >= 1, got 0"),
    ({"minCl": 4}, 2, "s.py: hparams['minCl']: 4 clients required but only 2 simulated"),
    ({"federated": "QFedAvg"}, None, "s.py: hparams: QFedAvg needs 'client_learning_rate'"),
])
@pytest.mark.claim('`minCl`, `minFit`, `minEval`, `rounds` read from hparams')
def test_federation_config_rejects_bad_hparams_with_one_line_each(hparams, num_clients, expected):
    from experiments_manager.utils.errors import UserInputError
    from experiments_manager.federated.federation_config import FederationConfig

    with pytest.raises(UserInputError) as error:
        FederationConfig.from_settings(fake_settings(**hparams), num_clients=num_clients)
    assert any(problem.startswith(expected) for problem in error.value.problems), error.value.problems


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim('otherwise the federation ends `failed` with one line: round, how many answered, their errors')
def test_a_failing_client_below_minfit_stops_the_federation_with_a_clear_message(run_cli, workdir):
    broken = settings_variant(workdir, "broken_client.py", [
        "_pipeline = get_input_pipeline",
        "def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
        "    if hparams['procID'] == 1:",
        "        raise OSError('client 1 lost its data disk')",
        "    return _pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch)",
    ], base=FEDERATED_SETTINGS)
    result = run_cli("federated", "simulate", "-u", str(broken), "--rounds", "2", "--hparam", "nbEpoch=1",
                     timeout=400)
    assert result.returncode == 1, result.stdout + result.stderr
    server = single_experiment(workdir / "experiments/examples/federated_curve_fitting")
    run = read_run(server)
    assert run["status"] == "failed"
    assert run["error"].startswith("round 1: 1 of 2 clients returned weights, minFit=2 required; client errors:")
    assert "client 1 lost its data disk" in run["error"]
    assert "client 1 lost its data disk" in result.stdout  # the report's status line


@pytest.mark.claim('`federated run` without a SuperLink: one line, nothing created')
def test_run_without_a_superlink_says_so_in_one_line_and_creates_nothing(run_cli, workdir):
    from conftest import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli("federated", "run", "-u", FEDERATED_SETTINGS, "--superlink", address)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: --superlink {address}: no SuperLink answers there (Connection refused); "
                      f"start one with `{RAN_AS} federated superlink`"], result.stderr
    assert not (workdir / "experiments").exists()


@pytest.mark.slow
def test_client_messages_leave_no_settings_or_model_modules_behind(workdir):
    """A process that serves many federated messages (a simulation actor serves client after client) loads the
    settings and builds the model for each; what it loaded must go with the message, or it keeps every message's
    modules, and whatever they hold (a dataset read at module level), for good."""
    import sys

    from experiments_manager.federated.federated_client import FederatedClient
    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.settings.pipeline import DataPartition
    from experiments_manager.settings.loader import MODEL_MODULE_PREFIX, SETTINGS_MODULE_PREFIX

    def loaded():
        return {name for name in sys.modules if name.startswith((SETTINGS_MODULE_PREFIX, MODEL_MODULE_PREFIX))}

    job = FederatedJob(FEDERATED_SETTINGS, "examples/regression/model_curve_fitting.py", {"nbEpoch": 1},
                       workdir / "server")
    before = loaded()
    for message in range(3):
        client = FederatedClient(job, DataPartition(message % 2, 2))
        try:
            assert len(loaded() - before) == 2  # this message's settings and model modules, while it runs
            weights, logs = client.train_round(client.session.model.get_weights(), server_round=message + 1)
            assert logs["num-examples"] > 0
        finally:
            client.close()
        assert loaded() == before, f"message {message} left {sorted(loaded() - before)}"
    assert read_run(workdir / "server" / "clients" / "client_0")["epochs_completed"] == 2  # messages 0 and 2

    # a client killed while its folder was being made (no run.json yet) leaves leftovers its next message clears
    unfinished = workdir / "server" / "clients" / "client_2"
    unfinished.mkdir()
    (unfinished / "experiment_settings.py").write_text("# half-copied")
    client = FederatedClient(job, DataPartition(2, 3))
    try:
        client.train_round(client.session.model.get_weights(), server_round=1)
    finally:
        client.close()
    assert read_run(unfinished)["epochs_completed"] == 1 and loaded() == before

    # a client folder has one writer, as an experiment: another federation's client for it is refused, unwritten
    from experiments_manager.utils.lease import Lease, LeaseHeld

    client_0 = workdir / "server" / "clients" / "client_0"
    before_bytes = (client_0 / "run.json").read_bytes()
    other = Lease.acquire(client_0, ["another federation's client 0"], what="experiment")
    try:
        with pytest.raises(LeaseHeld, match=re.escape(f"{client_0}: another run writes this experiment: pid {os.getpid()} ")):
            FederatedClient(job, DataPartition(0, 2))
    finally:
        other.release()
    assert (client_0 / "run.json").read_bytes() == before_bytes and loaded() == before


def _a_second_federation_on_its_folder_is_refused(server):
    """A ServerApp pointed at the folder a running federation writes (a second `flwr run` with the same
    experiment-dir) is refused in one line naming the writer, before it writes anything."""
    from experiments_manager.federated.apps import run_federation
    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.utils.lease import LeaseHeld

    info = read_run(server)
    job = FederatedJob(server / "experiment_settings.py", server / f"{info['model_name']}.py", {"nbEpoch": 1}, server)
    with pytest.raises(LeaseHeld, match="federated_curve_fitting/federated_.*: another run writes this experiment"):
        run_federation(job, grid=None)
    assert read_run(server)["federated"] == info["federated"]  # (its rounds go on: the first federation's)


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.parametrize("signum", [signal.SIGTERM])  # SIGINT and SIGUSR1: the same handler (2.5 min each here)
@pytest.mark.claim("`federated simulate` (and `train` of a federated file) stops on SIGINT / SIGTERM / SIGUSR1 as "
                   "`train` does: within seconds, `interrupted` with the rounds done, exit 128 + signal",
                   note="(SIGTERM to the whole process group after round 1, as scancel delivers it; SIGINT and SIGUSR1 "
                        "take the same handler)")
@pytest.mark.claim("a federation, simulated or deployed, signalled as `scancel` does (every process of it, Ray's "
                   "too) exits 128 + signal within seconds with nothing of it left running",
                   note="(simulated, Ray's raylet dying of the signal; a deployed run is signalled in its "
                        "`federated run` process only: test_a_stop_signal_stops_a_deployed_...)")
def test_a_stop_signal_ends_a_simulated_federation_within_seconds(start_cli, workdir, signum):
    process, reader, working_folder = _simulated_federation_at_round(start_cli, workdir, rounds=50, reached=1)
    _a_second_federation_on_its_folder_is_refused(single_experiment(working_folder))
    done_at_signal = rounds_done(working_folder)
    os.killpg(process.pid, signum)  # every process of it, Ray's too
    started = time.monotonic()
    process.wait(timeout=300)  # (seconds here; more than a minute on a loaded CI machine, where Ray ends slowly)
    took = time.monotonic() - started
    print(f"the federation stopped {took:.1f} s after {signal.Signals(signum).name} to its process group")
    output = all_lines(reader)
    assert process.returncode == 128 + signum, output
    assert took < 55, "Ray's 60-s wait for its dead processes"  # (10 s here)
    left = wait_for(lambda: not _group_alive(process.pid), 30, "nothing of the federation left running")
    assert left
    run = read_run(single_experiment(working_folder))
    name = signal.Signals(signum).name
    assert run["status"] == "interrupted" and run["exit_code"] == 128 + signum, run
    done = run["rounds_completed"]
    assert run["reason"] == f"stopped by {name} after {done} round{'' if done == 1 else 's'}", run
    # the command's summary, or (Ray's processes gone with the signal: left without Ray's shutdown) the one line
    assert f"status:            interrupted (stopped by {name} after" in output or \
        f"{name} stopped Ray's processes too (a signal to the whole job): leaving without Ray's shutdown; status: " \
        f"interrupted (stopped by {name} after" in output, output
    # at the round in progress, not after the 50: what "within seconds" means whatever the machine's load (at most
    # a round being recorded as the signal came and the one in progress)
    assert run["rounds_completed"] <= done_at_signal + 2, (done_at_signal, run)


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim("a simulated federation killed mid-run (kill -9, a preempted job) continues from its last recorded "
                   "round with `train --resume RUN` (or `federated simulate --resume RUN`): every round in history.csv "
                   "once, its versions and clients' folders kept, federated to the planned end; `--rounds R` extends "
                   "a finished one",
                   note="(5 rounds, the whole process group killed with -9 after round 2, resumed by the job's own "
                        "command again with --requeue-file, as a requeued Slurm job does: a `--resume` of the folder; "
                        "a live `serve` of the folder only ever serves the federation's versions; the extension: "
                        "unit-tested refusals only)")
@pytest.mark.claim("`train -u FEDERATED_SETTINGS --requeue-file FILE` remembers the federation's folder: the requeued "
                   "job's same command resumes its rounds")
@pytest.mark.claim("`--init-from RUN` starts a federation's global model from a run's version (centralised or "
                   "federated), reported and recorded as a run's fine-tuning; a resumed federation starts from its "
                   "checkpoint instead", note="(a centralised regression run's version: val_loss before round 1 far "
                   "below a fresh model's)")
def test_a_federation_killed_with_kill_9_resumes_from_its_last_round(start_cli, run_cli, workdir, trained):
    requeue_file = workdir / "requeue" / "job-1"
    command = ("train", "-u", FEDERATED_SETTINGS, "--hparam", "rounds=5", "--hparam", "nbEpoch=1",
               "--init-from", str(trained.dir),  # the same model file, trained centrally
               "--requeue-file", str(requeue_file))  # a Slurm job script's line: minCl = 2 clients
    process = start_cli(*command, own_group=True)
    reader = OutputReader(process)  # read as it comes: Ray's log lines would fill the pipe
    working_folder = workdir / "experiments/examples/federated_curve_fitting"
    wait_for(lambda: rounds_done(working_folder) >= 2 or process.poll() is not None, 300, "round 2 completed")
    os.killpg(process.pid, signal.SIGKILL)  # every process of it, Ray's too: nothing records how it ended
    process.wait(timeout=60)
    wait_for(lambda: not _group_alive(process.pid), 60, "nothing of the killed federation left running")
    server = single_experiment(working_folder)
    killed, output = read_run(server), all_lines(reader)
    assert killed["status"] == "running" and killed["rounds_completed"] == 2, (killed, output)
    assert Path(requeue_file.read_text().strip()) == server.resolve()
    assert killed["fine_tuned_from"]["run"] == str(trained.dir.resolve()), killed
    assert f"Fine-tuning: loaded 6 of 6 weights of the new model from {trained.dir.resolve()} version" in output, output
    before = float(re.search(r"Global model before round 1: val_loss=([0-9.e+-]+)", output)[1])
    assert before < 1.0, f"val_loss {before} before round 1: not the trained run's weights (a fresh model's: ~3.5)"
    versions = sorted(path.name for path in (server / "exported_models").iterdir())
    client_rows = len(history(server / "clients" / "client_0"))
    # a `serve` following the folder, live through the kill and the resume
    serving = start_cli("serve", "--model_dir", str(server), "--grpc-port", "0", "--rest-port", "0", warm=True)
    served = OutputReader(serving)
    served.wait_for(r": serving version \d+", 120)
    result = run_cli(*command, timeout=600)  # the requeued job: `train --resume` of the folder the file names
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Global model before round 3" in result.stderr and "Fine-tuning" not in result.stderr, result.stderr[-3000:]
    run = read_run(server)
    assert (run["status"], run["rounds_completed"], len(run["attempts"])) == ("finished", 5, 2), run
    # rounds 3-5 trained federated, each round once
    assert [row["epoch"] for row in history(server)] == ["1", "2", "3", "4", "5"]
    after = sorted(path.name for path in (server / "exported_models").iterdir())
    assert after[:len(versions)] == versions and not any(name.startswith("discarded") for name in after), after
    assert len(history(server / "clients" / "client_0")) == client_rows + 3  # its folder continued: 3 more rounds
    # the live serve only ever served the federation's versions, and follows it to its last one
    served.wait_for(rf": serving version {max(int(name) for name in after)}\b", 120)
    serving.send_signal(signal.SIGTERM)
    serving.wait(timeout=60)
    loaded = {found for line in served.seen for found in re.findall(r": serving version (\d+)", line)}
    assert loaded <= set(after) and loaded <= {str(version) for version in run["exported_versions"]}, (loaded, run)
    assert single_experiment(working_folder) == server  # no second federation
    # a simulated federation is not resumed on a SuperLink: one line naming the command that resumes it
    refused = run_cli("federated", "run", "--resume", str(server), "--superlink", "127.0.0.1:9")
    assert refused.returncode == 2 and f"federated simulate --resume {server}" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and read_run(server) == run


@pytest.mark.claim("a warm start the global model cannot take (no block shared, weights of other shapes) is refused in "
                   "one line before the federation's folder exists, as `train --init-from` refuses it")
def test_a_warm_start_the_global_model_cannot_take_is_refused_before_any_folder(run_cli, workdir, trained):
    result = run_cli("federated", "simulate", "-u", FEDERATED_SETTINGS, "--num-clients", "2", "--rounds", "1",
                     "--init-from", str(trained.dir), "--hparam", "hiddenNeurons=8")  # the source has 32 neurons
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stdout + result.stderr
    assert f"{trained.dir.resolve()}" in errors[0] and "--init-from" in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    assert not (workdir / "experiments").exists()  # no server folder, nothing else either


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim("a federation whose disk fills is recorded `interrupted` with the path it could not write, exit 75, "
                   "as a run is (a Slurm job requeues it)")
def test_a_full_disk_in_a_federation_is_interrupted_75_with_the_path_named(start_cli, workdir):
    from real_filesystems import tmpfs

    with tmpfs(workdir / "experiments", "40m") as disk:
        process, reader, working_folder = _simulated_federation_at_round(start_cli, workdir, rounds=20, reached=1)
        with open(disk / "filler", "wb", buffering=0) as filler:  # the disk full from round 2 on
            with contextlib.suppress(OSError):
                while True:
                    filler.write(bytes(1 << 16))
        process.wait(timeout=300)
        output = all_lines(reader)
        server = single_experiment(working_folder)
        run = read_run(server)
    assert process.returncode == 75, output[-3000:]
    assert run["status"] == "interrupted" and run["exit_code"] == 75, run
    assert "No space left on device" in run["reason"] and str(disk) in run["reason"], run["reason"]
    assert run["rounds_completed"] < 20, run
    # the command's own summary says it in one line (Flower's actors log the clients' errors with their tracebacks),
    # whichever write met the full disk first: a client's (its folder is in the server's) or the server's own file
    said = [line for line in output.splitlines() if line.startswith("status:")]
    assert said and re.match(rf"status: +interrupted \({re.escape(str(server))}(/[^:]+)?: No space left on device",
                             said[-1]), said or output[-3000:]


def _simulated_federation_at_round(start_cli, workdir, rounds, reached):
    """`federated simulate` of 2 clients, 1 local epoch, `rounds` rounds, in a process group of its own (a test may
    signal it whole, as `scancel` does), once `reached` rounds are recorded. Returns (the Popen, its OutputReader,
    the working folder)."""
    process = start_cli("federated", "simulate", "-u", FEDERATED_SETTINGS, "--num-clients", "2", "--rounds",
                        str(rounds), "--hparam", "nbEpoch=1", own_group=True)
    reader = OutputReader(process)  # read as it comes: Ray's log lines would fill the pipe
    working_folder = workdir / "experiments/examples/federated_curve_fitting"
    wait_for(lambda: rounds_done(working_folder) >= reached or process.poll() is not None, 300,
             f"round {reached} completed")
    assert process.poll() is None, all_lines(reader)
    return process, reader, working_folder


def _group_alive(group):
    """Whether a process of process group `group` still runs (a zombie does not)."""
    listed = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout.splitlines()
    return any(line.split()[0] == str(group) and not line.split()[1].startswith("Z") for line in listed)


def all_lines(reader):
    """Every line the process wrote, once it ended (its reader thread reaches the end of the pipe)."""
    reader_lines = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            reader_lines.append(reader.lines.get(timeout=0.5))
        except queue.Empty:
            break
    return "\n".join(reader.seen + reader_lines)


def rounds_done(working_folder):
    runs = list(Path(working_folder).glob("*/run.json"))
    return json.loads(runs[0].read_text()).get("rounds_completed", 0) if runs else 0
