"""A deployed federation: a real SuperLink and two SuperNodes started through `experiments-manager federated
superlink|supernode`, each SuperNode's persistent worker (experiments_manager/federated/supernode_worker.py,
keeper.py), and real `federated run`s. Every test of this file shares one federation (it takes ~25 CPU-s to start:
three Flower processes and two workers importing TensorFlow); the last one stops it.

- the wrappers bind loopback unless told, turn Flower's telemetry, update check and `uv sync` off, and pass what
  follows `--` to Flower;
- too few SuperNodes for minCl: round 1 fails after the round timeout, in one line;
- rounds run in one worker per SuperNode (TensorFlow imported once, before round 1), the `flwr-clientapp`
  processes Flower starts for each message never load TensorFlow, one message per client and round;
- a worker killed (SIGKILL) in round 1: that round completes under minFit with the other client, the keeper starts
  the worker again and round 2 has both clients;
- `federated run` stops its run on the SuperLink on SIGTERM;
- (last) a SuperNode killed after round 1: round 2 completes with the other one once the round timeout gives up on
  it; the worker and its keeper go with their SuperNode, killed (SIGKILL) or stopped (SIGTERM), with their
  private folder.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (FlowerFederation, REPO, cli_env, free_port, process_stat, read_run, run_command,
                      settings_variant, start_forked, wait_for)
from test_federated import all_lines, history
from test_serving_cli import OutputReader


FEDERATED_SETTINGS = "examples/federated/mysettings_federated_curve_fitting.py"
WORKING_FOLDER = "experiments/examples/federated_curve_fitting"
SLOW_CLIENT_1 = [  # client 1 starts each round's training 2 s late: a kill lands in the round
    "import time as _time",
    "def addon_callbacks(model, train_data, val_data):",
    "    class _SlowStart(tf.keras.callbacks.Callback):",
    "        def on_train_begin(self, logs=None):",
    "            if hparams['procID'] == 1:",
    "                _time.sleep(2)",
    "    return [_SlowStart()]",
]


def _processes():
    """pid -> (ppid, name) of every process, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        found[int(stat.parent.name)] = (int(rest[1]), name)
    return found


def descendants(pid, processes=None):
    processes = processes if processes is not None else _processes()
    children = {}
    for child, (parent, _) in processes.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def alive(pid):
    fields = process_stat(pid)
    return fields is not None and fields[0] != "Z"


def parent_of(pid):
    """The pid of process `pid`'s parent, from /proc."""
    return int(process_stat(pid)[1])


def loads_tensorflow(pid):
    """True when process `pid` has TensorFlow's native libraries mapped (it imported tensorflow)."""
    try:
        return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None


def worker_folder(supernode):
    """The worker folder `federated supernode` gave its SuperNode (and so its ClientApps), from /proc."""
    from experiments_manager.federated.worker_protocol import FOLDER_VARIABLE

    pairs = Path(f"/proc/{supernode.pid}/environ").read_bytes().decode(errors="replace").split("\0")
    environment = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    return Path(environment[FOLDER_VARIABLE])


def ready_status(folder, timeout=180):
    """The worker's status once it has imported TensorFlow."""
    from experiments_manager.federated.worker_protocol import read_status

    return wait_for(lambda: (status := read_status(folder)) and status.get("tensorflow_imported") and status,
                    timeout, f"the worker in {folder} ready")


def served(folder, run_id):
    from experiments_manager.federated.worker_protocol import read_status

    return [entry for entry in (read_status(folder) or {}).get("served", []) if str(entry["run_id"]) == str(run_id)]


class ClientAppWatch:
    """Samples the `flwr-clientapp` processes under the SuperNodes while a federation runs: whether each one had
    TensorFlow mapped, seen last before it exited."""

    def __init__(self, supernodes):
        self.roots = [process.pid for process in supernodes]
        self.seen = {}  # pid -> loads_tensorflow at the last sample
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()

    def _watch(self):
        while not self.stopped.wait(0.05):
            processes = _processes()
            for root in self.roots:
                for pid in descendants(root, processes):
                    if "clientapp" in processes[pid][1]:
                        mapped = loads_tensorflow(pid)
                        if mapped is not None:
                            self.seen[pid] = mapped


def federated_run(federation, settings, *hparams, rounds=2):
    """Runs `federated run` on the federation; returns (CompletedProcess, the server experiment folder)."""
    earlier = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json"))
    arguments = [f"--hparam={item}" for item in ("nbEpoch=1", *hparams)]
    result = run_command(["federated", "run", "-u", str(settings), "--superlink", federation.address,
                          "--rounds", str(rounds), "--round-timeout", "120", *arguments],
                         cwd=federation.workdir, env=cli_env(), capture_output=True, text=True, timeout=400)
    (server,) = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json")) - earlier
    return result, server.parent


def _address(hex_address):
    host, port = hex_address.split(":")
    if len(host) == 8:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16))), int(port, 16)
    words = b"".join(struct.pack("<I", int(host[i:i + 8], 16)) for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def listening_addresses(pid):
    """(host, port) of the TCP sockets listening in process `pid` and its descendants, from /proc."""
    inodes = set()
    for process in [pid, *descendants(pid)]:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{process}/fd").iterdir()]
        except OSError:
            continue
        inodes.update(link[len("socket:["):-1] for link in links if link.startswith("socket:["))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(_address(fields[1]))
    return found


def flower_argv(pid, program):
    """The arguments the Flower program running as `pid` got (the wrapper exec'ed it: same PID)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    names = [Path(argument).name for argument in argv]
    assert program in names, argv
    return argv[names.index(program) + 1:]


def environment(pid):
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


FLOWER_SWITCHES = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                   "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}


class ConfirmationHolder:
    """SuperNode 1's way to the SuperLink: a loopback HTTP proxy that passes every request on, except that once
    `armed` it holds the next ConfirmMessageReceived (a message's receipt) until `release` is set, then passes it on
    and keeps the SuperLink's answer (`answers`). A run stopped while the receipt is held makes the SuperLink answer
    it 403: Flower's window for a stopped run's message, which a loaded CI machine once hit by chance."""

    CONFIRM = "/v1/fleet/confirm-message-received"

    def __init__(self, superlink_port):
        import http.server

        self.armed, self.held, self.release = threading.Event(), threading.Event(), threading.Event()
        self.answers = []
        holder = self

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *arguments):
                pass

            def do_POST(self):
                holder._forward(self, superlink_port)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Forward)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _forward(self, request, superlink_port):
        import http.client

        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        held = request.path == self.CONFIRM and self.armed.is_set() and not self.held.is_set()
        if held:
            self.held.set()
            self.release.wait(600)
        connection = http.client.HTTPConnection("127.0.0.1", superlink_port, timeout=120)
        try:
            connection.request("POST", request.path, body=body, headers={
                key: value for key, value in request.headers.items() if key.lower() not in ("host", "connection")})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if held:
            self.answers.append(response.status)
        request.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """The federation every test of this file uses: a SuperLink (default host, `-- --database FILE`) and two
    SuperNodes (one on the default host, one with `--host 127.0.0.2`), started through the wrappers from an
    environment that turns Flower's telemetry and update check on, so that the wrappers must turn them off; their
    workers ready. Its processes are not forked (tests/warm_cli.py): each worker's parents are the real ones."""
    root = tmp_path_factory.mktemp("federation")
    shutil.copytree(REPO / "examples", root / "examples")
    federation = FlowerFederation(root, root / "flwr_home")
    federation.env.update(FLWR_TELEMETRY_ENABLED="1", FLWR_DISABLE_UPDATE_CHECK="0",
                          FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="0")
    federation.database = root / "superlink_state.db"
    federation.holder = ConfirmationHolder(federation.port)  # node 1 reaches the SuperLink through it
    try:
        federation.start(num_nodes=2, node_hosts=[None, "127.0.0.2"],  # node 0: the wrapper's default host
                         superlink_arguments=["--database", str(federation.database)],
                         node_superlinks=[None, federation.holder.address])
        federation.folders = [worker_folder(node) for node in federation.supernodes]
        for folder in federation.folders:
            ready_status(folder)
        yield federation
    finally:
        federation.stop()
        federation.holder.close()


def new_run(federation, earlier, timeout=480):
    """The server folder of the run started after `earlier` (the run.json files there before it), once it exists."""
    def created():
        runs = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json")) - earlier
        return runs and next(iter(runs)).parent

    return wait_for(created, timeout, "the run's folder")


def rounds_of(server):
    return read_run(server).get("rounds_completed", 0)


def start_run(federation, *arguments):
    """`federated run` of the federation's settings ARGUMENTS in its folder, in the background (forked:
    conftest.start_forked); returns (the ForkedRun, its OutputReader, the run.json files there before it)."""
    earlier = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json"))
    process = start_forked(["federated", "run", "-u", FEDERATED_SETTINGS, "--superlink", federation.address,
                            *arguments], cwd=federation.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    return process, OutputReader(process), earlier


@pytest.fixture
def stopped_at_the_end():
    """The `federated run` processes a test started, killed at its end if still running."""
    processes = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    'the wrappers bind 127.0.0.1 unless `--host`; telemetry, update check, `uv sync` off; arguments after `--` go '
    'to Flower')
def test_the_wrappers_bind_loopback_unless_told_turn_flower_switches_off_and_pass_arguments_after_dashes(
        federation):
    superlink, (node_0, node_1) = federation.superlink, federation.supernodes
    listening = {process: listening_addresses(process.pid) for process in (superlink, node_0, node_1)}
    print(listening)
    assert listening[superlink] == {("127.0.0.1", federation.port)}
    assert listening[node_0] == {("127.0.0.1", federation.node_ports[0])}
    assert listening[node_1] == {("127.0.0.2", federation.node_ports[1])}  # --host 127.0.0.2
    for process in (superlink, node_0, node_1):
        env = environment(process.pid)
        assert {key: env.get(key) for key in FLOWER_SWITCHES} == FLOWER_SWITCHES
    superlink_argv = flower_argv(superlink.pid, "flower-superlink")
    assert "--disable-runtime-dependency-installation" in superlink_argv  # no `uv sync` of the app's dependencies
    assert superlink_argv[-2:] == ["--database", str(federation.database)]  # after `--`, unchanged
    assert federation.database.is_file()  # ... and Flower used it
    node_argv = flower_argv(node_0.pid, "flower-supernode")
    assert node_argv[node_argv.index("--node-config") + 1] == "partition-id=0 num-partitions=2"
    assert "--allow-runtime-dependency-installation" not in node_argv


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim('... and for `minCl` clients to connect (the wait timing out)')
def test_too_few_supernodes_for_mincl_fail_round_1_after_the_round_timeout(federation):
    """Two SuperNodes connected, minCl=3, --round-timeout 2: the federation ends `failed` with one line saying
    which round and how many clients connected, in run.json and in the command's status line; no client trained."""
    earlier = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json"))
    started = time.monotonic()
    result = run_command(
        ["federated", "run", "-u", FEDERATED_SETTINGS, "--superlink", federation.address, "--rounds", "2",
         "--round-timeout", "2", "--hparam", "minCl=3", "--hparam", "nbEpoch=1"],
        cwd=federation.workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    print(f"federated run took {time.monotonic() - started:.1f} s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    server = new_run(federation, earlier)
    run = read_run(server)
    expected = "round 1: 2 of the minCl=3 clients connected after 2 s (federated_round_timeout_secs)"
    assert run["status"] == "failed" and run["error"] == expected, run
    assert run.get("rounds_completed", 0) == 0 and not run.get("exported_versions")
    status = [line for line in result.stdout.splitlines() if line.startswith("status:")]
    assert status == [f"status:            failed ({expected})"], result.stdout
    assert not (server / "clients").exists()  # no round started


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    "`federated supernode` starts a persistent worker: TensorFlow imported once per SuperNode, the run's client "
    'kept from round to round',
    note='(same worker pid across rounds)')
@pytest.mark.claim(
    "Flower's per-message ClientApp processes never load TensorFlow",
    note="(the worker's record of each ClientApp and /proc/<pid>/maps, sampled every 50 ms)")
@pytest.mark.claim(
    'clients evaluate only when the settings ask (`minEval`, or `fraction_evaluate > 0`); otherwise one message '
    'per client and round',
    note='(requests are `train` only)')
def test_rounds_run_in_one_persistent_worker_per_supernode_and_clientapps_never_load_tensorflow(federation):
    before = [ready_status(folder) for folder in federation.folders]
    with ClientAppWatch(federation.supernodes) as watch:
        result, server = federated_run(federation, FEDERATED_SETTINGS)  # neither minEval nor fraction_evaluate
    assert result.returncode == 0, result.stdout + result.stderr
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 2, run
    assert run["federated"]["client_evaluation"] is False
    print(f"round timings: {run['round_timings']}; clientapps seen: {watch.seen}")
    for index, (node, folder, status) in enumerate(zip(federation.supernodes, federation.folders, before)):
        worker = status["pid"]
        assert alive(worker) and loads_tensorflow(worker)  # the worker, and only it, holds TensorFlow
        assert parent_of(parent_of(worker)) == node.pid  # SuperNode -> keeper -> worker
        requests = served(folder, run["flower_run_id"])
        assert [(entry["kind"], entry["round"]) for entry in requests] == [("train", 1), ("train", 2)]
        assert all(entry["answered"] for entry in requests)
        clientapps = [entry["clientapp"] for entry in requests]
        assert not any(clientapp["tensorflow"] for clientapp in clientapps), clientapps
        assert len({clientapp["pid"] for clientapp in clientapps}) == 2  # Flower's new process per message ...
        assert ready_status(folder)["pid"] == worker  # ... all served by the worker that was ready before round 1
        # run.json's `started` is to the second: a run started within the second the worker finished importing
        # (the command itself now starts in a moment: tests/warm_cli.py) is still after it
        assert int(status["tensorflow_imported"]) <= run_started(run)
        client = read_run(server / "clients" / f"client_{index}")
        assert client["epochs_completed"] == 2 and client["last_round"]["round"] == 2
    assert watch.seen, "no flwr-clientapp process seen"
    assert not any(watch.seen.values()), watch.seen  # none had TensorFlow's libraries mapped


def run_started(run):
    from datetime import datetime

    assert "started" in run, run  # no start time: the comparison must fail, not pass against infinity
    return datetime.fromisoformat(run["started"]).timestamp()


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    "a worker that dies in a round fails that client's round (the federation goes on under `minFit`) and is "
    'started again for the next round')
def test_a_worker_killed_in_a_round_fails_only_that_round_and_is_started_again(federation):
    settings = settings_variant(federation.workdir, "slow_client_1.py", SLOW_CLIENT_1, base=FEDERATED_SETTINGS)
    folder = federation.folders[1]
    killed = {}

    def kill_in_round_1():
        from experiments_manager.federated.worker_protocol import read_status

        def busy_in_round_1():
            status = read_status(folder) or {}
            return (status.get("busy") or {}).get("round") == 1 and status

        status = wait_for(busy_in_round_1, 300, "client 1's worker busy in round 1")
        killed.update(pid=status["pid"], keeper=parent_of(status["pid"]))
        os.kill(status["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_in_round_1, daemon=True)
    killer.start()
    result, server = federated_run(federation, settings, "minFit=1")
    killer.join(timeout=5)
    assert result.returncode == 0, result.stdout + result.stderr
    assert killed, "the worker was never seen busy in round 1"
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 2, run
    survivor, victim = (read_run(server / "clients" / f"client_{index}") for index in (0, 1))
    assert survivor["epochs_completed"] == 2
    assert victim["epochs_completed"] == 1 and victim["last_round"]["round"] == 2  # round 2 only
    restarted = ready_status(folder)
    assert restarted["pid"] != killed["pid"] and not alive(killed["pid"])
    assert parent_of(restarted["pid"]) == killed["keeper"]  # the same keeper started it again
    requests = [(entry["round"], entry["answered"]) for entry in served(folder, run["flower_run_id"])]
    assert requests == [(2, True)], requests  # the new worker's requests: round 2 (round 1 died with the old one)
    log = (server / "flower_server.log").read_text()
    assert "closed the connection before answering" in log, log[-3000:]  # the ClientApp's error reached the server


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim("`federated run` stops its run on the SuperLink on SIGTERM: `interrupted`, exit 143",
                   note="(a real SuperLink and two SuperNodes)")
@pytest.mark.claim("`federated run --resume RUN` continues a deployed federation from its last recorded round as a "
                   "new Flower run; `--rounds R` sets the rounds in all",
                   note="(the SIGTERM-stopped federation, resumed on the same SuperLink for one more round)")
@pytest.mark.claim("a SuperNode drops a message whose run is stopped as it arrives, so the next run's reply is the one "
                   "it sends (Flower 1.41 sent the stopped run's in its place)",
                   note="(the run stopped while SuperNode 1's receipt of round 2 is held: the SuperLink answers it "
                        "403, and the resume's round is answered by both SuperNodes)")
@pytest.mark.timeout(1200)  # its waits allow a loaded machine more than the default 600 s
def test_a_stop_signal_stops_a_deployed_federation_on_its_superlink_and_it_resumes(federation, stopped_at_the_end):
    """Stopped while SuperNode 1 confirms its receipt of round 2's message (held by the proxy until `flwr stop`
    returned): the SuperLink answers that receipt 403, Flower's window that once failed the resume in CI."""
    holder = federation.holder
    runner, reader, earlier = start_run(federation, "--rounds", "50", "--hparam", "nbEpoch=1")
    stopped_at_the_end.append(runner)
    server = new_run(federation, earlier)
    wait_for(lambda: rounds_of(server) >= 1 or runner.poll() is not None, 480, "round 1 completed")
    holder.armed.set()
    try:
        wait_for(lambda: holder.held.is_set() or runner.poll() is not None, 300, "SuperNode 1's round-2 receipt")
        assert runner.poll() is None, all_lines(reader)
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=300)  # (seconds here; minutes on a loaded CI machine)
    finally:
        holder.release.set()
    wait_for(lambda: holder.answers, 120, "the held receipt answered")
    assert holder.answers == [403], holder.answers  # the run was stopped: Flower's RunNotRunningException
    output = all_lines(reader)
    assert runner.returncode == 143, output
    run = read_run(server)
    assert run["status"] == "interrupted" and run["exit_code"] == 143, run
    assert run["reason"].startswith("stopped by SIGTERM after "), run

    done = run["rounds_completed"]
    result = run_command(["federated", "run", "--resume", str(server), "--superlink", federation.address,
                          "--rounds", str(done + 1)], federation.workdir, capture_output=True, text=True,
                         timeout=600)
    assert result.returncode == 0, federation.explain(result.stdout[-3000:] + result.stderr[-3000:], lines=60)
    assert f"Resuming {server} after round {done} of {done + 1}" in result.stderr, result.stderr[-3000:]
    resumed = read_run(server)
    assert (resumed["status"], resumed["rounds_completed"]) == ("finished", done + 1), resumed
    assert len(resumed["attempts"]) == len(run["attempts"]) + 1, resumed["attempts"]
    assert resumed["flower_run_id"] != run["flower_run_id"], resumed  # a new Flower run
    assert [row["epoch"] for row in history(server)] == [str(number) for number in range(1, done + 2)]


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim('deployed: `federated superlink`, `supernode`, `run`')
@pytest.mark.claim(
    '`federated run` ships settings and model in `<experiment>/flower_app/`; no shared file system needed',
    note='(weak: the app folder exists; all nodes share one machine)')
@pytest.mark.claim(
    'a round waits at most `federated_round_timeout_secs` (`--round-timeout`) for replies',
    note='(`--round-timeout 60`, a killed client)')
@pytest.mark.claim('a client dying mid-round is left out when `minFit` allows')
@pytest.mark.claim(
    'stopping the SuperNode (Ctrl-C, SIGTERM) or its death stops the worker; its folder is private',
    note='(SIGKILL, then SIGTERM; SIGINT not tested separately)')
@pytest.mark.timeout(1200)  # three minutes here; its waits allow a loaded machine more than the default 600 s
def test_a_killed_supernode_is_left_out_after_the_round_timeout_and_its_worker_goes_with_it(
        federation, stopped_at_the_end):
    """The last test of this file: it ends the federation. SuperNode 1 is killed (SIGKILL, its pid only, not its
    process group) after round 1: round 2 completes with client 0 (minFit=1) once the round timeout gives up on
    client 1, the server keeps exporting, and SuperNode 1's keeper stops its worker and removes its private folder.
    Then SuperNode 0 is stopped with SIGTERM: its worker and keeper go too. The round timeout is 60 s: a round's
    first replies can come late on a loaded 2-core CI machine, where 20 s once failed the federation."""
    nodes, folders = federation.supernodes, federation.folders
    workers = [ready_status(folder)["pid"] for folder in folders]
    keepers = [parent_of(worker) for worker in workers]
    assert [parent_of(keeper) for keeper in keepers] == [node.pid for node in nodes]
    assert all(oct(folder.stat().st_mode & 0o777) == "0o700" for folder in folders)  # private
    runner, reader, earlier = start_run(
        federation, "--rounds", "2", "--round-timeout", "60", "--hparam", "nbEpoch=1", "--hparam", "minCl=1",
        "--hparam", "minFit=1", "--hparam", "minEval=1", "--hparam", "fraction_evaluate=0.0")
    stopped_at_the_end.append(runner)
    server = new_run(federation, earlier)
    wait_for(lambda: rounds_of(server) >= 1 or runner.poll() is not None, 480,
             "round 1 completed")  # (on a loaded CI machine: minutes)
    assert runner.poll() is None, federation.explain(all_lines(reader))
    nodes[1].send_signal(signal.SIGKILL)
    nodes[1].wait(timeout=30)
    wait_for(lambda: not alive(workers[1]) and not alive(keepers[1]), 30, "SuperNode 1's worker and keeper gone")
    wait_for(lambda: not folders[1].exists(), 10, "SuperNode 1's worker folder removed")
    runner.wait(timeout=480)
    output = all_lines(reader)
    assert runner.returncode == 0, federation.explain(output)
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 2, run
    assert run["flower_run_id"] and run["superlink"] == federation.address
    assert len(history(server)) == 2 and run["exported_versions"]
    survivor, killed = (read_run(server / "clients" / f"client_{index}") for index in (0, 1))
    assert survivor["epochs_completed"] == 2  # trained in every round
    assert killed["epochs_completed"] < 2     # missed the round after its death
    assert (server / "flower_server.log").stat().st_size > 0
    assert (server / "flower_app" / "experiment_settings.py").is_file()
    nodes[0].send_signal(signal.SIGTERM)
    nodes[0].wait(timeout=30)
    wait_for(lambda: not alive(workers[0]) and not alive(keepers[0]), 30, "SuperNode 0's worker and keeper gone")
    wait_for(lambda: not folders[0].exists(), 10, "SuperNode 0's worker folder removed")
