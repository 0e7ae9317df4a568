"""The HPC files: Apptainer definitions (install/*.def) and Slurm job templates (tools/slurm/*.sbatch).

Apptainer cannot be installed on our build machines, so the .def files are parsed and checked against
install/constraints.txt and the package, and their %test is run with a fake `experiments-manager`. The job
templates are submitted to a real Slurm in tests/test_slurm.py; here they are checked with `bash -n`, their
`#SBATCH` lines, and the exit-code paths a real run does not reach, under fake `apptainer`, `srun` and `scontrol`
commands. No TensorFlow here.
"""

import configparser
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "install"
SLURM = ROOT / "tools" / "slurm"
EM_DEF = INSTALL / "experiments_manager.def"
SERVER_DEF = INSTALL / "model_server.def"
CONSTRAINTS = INSTALL / "constraints.txt"
PROJECT_IN_IMAGE = "/opt/experiments_manager"
TRAINING_TEMPLATES = ("train", "sweep", "array", "multiworker", "sweep_array")
ALL_TEMPLATES = TRAINING_TEMPLATES + ("serve",)
REQUEUE_EXIT_CODES = (138, 75)  # 128+USR1 (before the time limit), EX_TEMPFAIL; not 128+TERM (scancel, preemption)
DEADLINE_S = 15


# ---------------------------------------------------------------- Apptainer definition files


def parse_definition(text):
    """Returns (header, sections): header keywords ('Bootstrap', 'From', ...) and section name -> body."""
    header, sections, current = {}, {}, None
    for line in text.splitlines():
        match = re.match(r"%(\w+)\b", line)
        if match:
            current = match.group(1)
            sections[current] = sections.get(current, "")  # a repeated section is appended, as Apptainer does
            continue
        if current is not None:
            sections[current] += line + "\n"
        elif line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"header line without 'Keyword:': {line!r}")
            header[key.strip()] = value.strip()
    return header, sections


def shell_commands(body):
    """The logical command lines of a shell section: continuations joined, comments and blanks dropped."""
    commands, pending = [], ""
    for line in body.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        commands.append(pending + stripped)
        pending = ""
    return commands


def read_constraints(path=CONSTRAINTS):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            pins[normalize(name)] = version.strip()
    return pins


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def files_pairs(body):
    """%files lines as (source, destination); a line with one path copies it to the same path."""
    pairs = []
    for command in shell_commands(body):
        parts = command.split()
        pairs.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return pairs


PIP_OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-e", "--editable", "-i", "--index-url",
                          "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root"}


def pip_install_problems(post_body, pins, constraints_in_image, project_in_image):
    """Every `pip install` in %post uses the constraints file; packages named on it are pinned there."""
    problems, installs = [], 0
    for command in shell_commands(post_body):
        tokens = shlex.split(command)
        starts = [i for i in range(len(tokens) - 1)
                  if re.fullmatch(r"(\S*/)?pip3?(\.\d+)?", tokens[i]) and tokens[i + 1] == "install"]
        for start in starts:
            installs += 1
            constraints, names, index = [], [], start + 2
            while index < len(tokens) and tokens[index] not in ("&&", "||", ";", "|"):
                token = tokens[index]
                option, _, inline = token.partition("=")
                if option in PIP_OPTIONS_WITH_VALUE:
                    value = inline if inline else tokens[index + 1] if index + 1 < len(tokens) else ""
                    index += 1 if inline else 2
                    if option in ("-c", "--constraint"):
                        constraints.append(value)
                    elif option in ("-r", "--requirement"):
                        problems.append(f"{command}: -r {value}: name packages on the line, pinned in constraints")
                    elif option in ("-e", "--editable"):
                        names.append(value)
                    continue
                index += 1
                if not token.startswith("-"):
                    names.append(token)
            if constraints_in_image not in constraints:
                problems.append(f"{command}: no --constraint {constraints_in_image}")
            for name in names:
                if name.startswith(("/", ".")):
                    if re.sub(r"\[.*\]$", "", name).rstrip("/") != project_in_image:
                        problems.append(f"{command}: {name}: not the project copied by %files ({project_in_image})")
                    continue
                match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^;\s]+)", name)
                if match is None:
                    problems.append(f"{command}: {name}: not pinned with ==")
                elif pins.get(normalize(match.group(1))) != match.group(3):
                    problems.append(f"{command}: {name}: constraints.txt pins "
                                    f"{pins.get(normalize(match.group(1)), 'nothing')}")
    if installs == 0:
        problems.append("no pip install in %post")
    return problems


def package_version():
    return re.search(r'__version__ = "([^"]+)"', (ROOT / "experiments_manager" / "__init__.py").read_text()).group(1)


def labels(body):
    return dict((line.split(None, 1) + [""])[:2] for line in shell_commands(body))


@pytest.fixture(scope="module")
def em_definition():
    return parse_definition(EM_DEF.read_text())


@pytest.fixture(scope="module")
def server_definition():
    return parse_definition(SERVER_DEF.read_text())


def test_parse_definition_splits_header_and_sections():
    header, sections = parse_definition("Bootstrap: docker\n# note\nFrom: a/b:1\n\n%post\n    x \\\n  y\n%test\n t\n")
    assert header == {"Bootstrap": "docker", "From": "a/b:1"}
    assert shell_commands(sections["post"]) == ["x y"]
    assert shell_commands(sections["test"]) == ["t"]
    with pytest.raises(ValueError):
        parse_definition("Bootstrap docker\n")


@pytest.mark.parametrize("path, required", [
    (EM_DEF, ("files", "post", "environment", "runscript", "test", "labels", "help")),
    (SERVER_DEF, ("runscript", "test", "labels", "help")),
])
def test_definition_has_required_sections(path, required):
    header, sections = parse_definition(path.read_text())
    assert header.get("Bootstrap") == "docker"
    assert header.get("From")
    missing = [name for name in required if not sections.get(name, "").strip()]
    assert not missing, f"{path.name}: empty or missing sections {missing}"


@pytest.mark.parametrize("path, image", [(EM_DEF, "tensorflow/tensorflow"), (SERVER_DEF, "tensorflow/serving")])
def test_base_image_tensorflow_version_is_the_pinned_one(path, image):
    header, sections = parse_definition(path.read_text())
    pinned = read_constraints()["tensorflow"]
    assert header["From"] == f"{image}:{pinned}-gpu"
    assert labels(sections["labels"]).get("TensorFlow") == pinned


def test_files_section_copies_what_the_build_needs(em_definition):
    _, sections = em_definition
    pairs = files_pairs(sections["files"])
    missing_on_host = [source for source, _ in pairs if not (ROOT / source).exists()]
    assert not missing_on_host, f"%files sources not in the repository root: {missing_on_host}"
    destinations = {source: destination for source, destination in pairs}
    needed = ["setup.cfg", "pyproject.toml", "experiments_manager", "examples", "install/constraints.txt"]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    long_description = setup.get("metadata", "long_description", fallback="")
    if long_description.startswith("file:"):
        needed.append(long_description.split(":", 1)[1].strip())  # setup.cfg reads it at build time
    for source in needed:
        assert destinations.get(source) == f"{PROJECT_IN_IMAGE}/{source}", f"%files: {source}"


def test_pip_installs_use_the_constraints_and_only_pinned_names(em_definition):
    _, sections = em_definition
    constraints_in_image = dict(files_pairs(sections["files"]))["install/constraints.txt"]
    assert pip_install_problems(sections["post"], read_constraints(), constraints_in_image, PROJECT_IN_IMAGE) == []
    post = sections["post"]
    assert "--no-cache-dir" in post or "PIP_NO_CACHE_DIR=1" in post


def test_pip_install_checker_catches_violations():
    pins = {"numpy": "2.4.6", "tensorflow": "2.21.0"}
    args = (pins, "/c.txt", "/opt/p")
    assert pip_install_problems("pip install -c /c.txt /opt/p '/opt/p[spark]'\n", *args) == []
    assert pip_install_problems("python3 -m pip install --constraint=/c.txt numpy==2.4.6\n", *args) == []
    assert "no --constraint" in pip_install_problems("pip install /opt/p\n", *args)[0]
    assert "not pinned" in pip_install_problems("pip install -c /c.txt numpy\n", *args)[0]
    assert "pins 2.4.6" in pip_install_problems("pip install -c /c.txt numpy==1.0\n", *args)[0]
    assert "pins nothing" in pip_install_problems("pip install -c /c.txt flask==3.1.3\n", *args)[0]
    assert "not the project" in pip_install_problems("pip3 install -c /c.txt /tmp/other\n", *args)[0]
    assert "no pip install" in pip_install_problems("echo hi\n", *args)[0]
    continued = "pip install -c /c.txt \\\n    /opt/p && pip install \\\n  numpy\n"
    assert len(pip_install_problems(continued, *args)) == 2  # the second install: no constraints, no pin


def test_runscripts_exec_the_command_with_all_arguments(em_definition, server_definition):
    binary = re.search(r'BINARY = "([^"]+)"', (ROOT / "experiments_manager/serving/tfserving.py").read_text())
    assert shell_commands(em_definition[1]["runscript"]) == ['exec experiments-manager "$@"']
    assert shell_commands(server_definition[1]["runscript"]) == [f'exec {binary.group(1)} "$@"']
    assert [shlex.split(c) for c in shell_commands(server_definition[1]["test"])] == [[binary.group(1), "--version"]]


def test_labels_and_environment(em_definition):
    _, sections = em_definition
    found = labels(sections["labels"])
    assert found.get("Name") == "experiments_manager"
    assert found.get("Version") == package_version()
    assert found.get("Source")
    environment = sections["environment"]
    assert re.search(r"^\s*export PYTHONUNBUFFERED=1\s*$", environment, re.M)
    assert re.search(r"^\s*export PYTHONNOUSERSITE=1\s*$", environment, re.M)  # $HOME is bound in the container
    for word in ("apptainer build", "--nv", "--bind", "install/README.md"):
        assert word in sections["help"], word


@pytest.mark.parametrize("path", [EM_DEF, SERVER_DEF])
def test_shell_sections_are_valid_sh(path):
    """Apptainer runs %post, %environment, %runscript and %test with /bin/sh, not bash."""
    _, sections = parse_definition(path.read_text())
    for name in ("post", "environment", "runscript", "test"):
        if name in sections:
            result = subprocess.run(["sh", "-n"], input=sections[name], capture_output=True, text=True)
            assert result.returncode == 0, f"%{name}: {result.stderr}"


FAKE_CLI = """#!{python}
import ast, json, os, sys
from pathlib import Path
from experiments_manager.settings.loader import _resolve_model_file
record = {{"cwd": os.getcwd(), "argv": sys.argv[1:]}}
if sys.argv[1:2] == ["train"]:
    settings = Path(sys.argv[sys.argv.index("-u") + 1])
    record["settings_found"] = settings.is_file()
    tree = ast.parse(settings.read_text()) if settings.is_file() else ast.Module(body=[])
    model_files = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                   and any(getattr(target, "id", None) == "model_file" for target in node.targets)]
    record["model_file_resolved"] = bool(model_files) and _resolve_model_file(model_files[0], settings, []) is not None
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
"""


def test_image_test_section_trains_the_example_outside_the_repository(em_definition, tmp_path):
    """%test, with /opt/experiments_manager read as this checkout and a fake CLI that checks what train would load."""
    _, sections = em_definition
    commands = [shlex.split(command) for command in shell_commands(sections["test"])]
    assert any(tokens[:2] == ["experiments-manager", "--help"] for tokens in commands)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "experiments-manager"
    fake.write_text(FAKE_CLI.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    script = sections["test"].replace(PROJECT_IN_IMAGE, str(ROOT))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)}
    result = subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    trains = [call for call in calls if call["argv"][:1] == ["train"]]
    assert len(trains) == 1, calls
    train = trains[0]
    assert train["argv"][1] == "-u" and train["argv"][2].endswith("regression/mysettings_curve_fitting.py")
    assert train["argv"][train["argv"].index("--hparam") + 1] == "nbEpoch=1"
    assert not Path(train["cwd"]).resolve().is_relative_to(ROOT), "the image's test must not depend on the checkout"
    assert train["settings_found"] and train["model_file_resolved"], train


# ---------------------------------------------------------------- Slurm job templates


def template(name):
    return SLURM / f"{name}.sbatch"


def sbatch_options(text):
    """The #SBATCH options sbatch reads: those before the first command. Returns (options, ignored lines)."""
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    options, ignored, in_header = {}, [], True
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            in_header = False
        if not stripped.startswith("#SBATCH"):
            continue
        if not in_header or not line.startswith("#SBATCH"):
            ignored.append(number)
            continue
        for token in shlex.split(stripped[len("#SBATCH"):], comments=True):
            name, _, value = token.partition("=")
            assert name.startswith("--"), f"line {number}: write --option=value, got {token!r}"
            options[name] = value
    return options, ignored


def slurm_seconds(text):
    """Slurm's --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    days, _, clock = text.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:
        hours, (minutes, seconds) = 0, (parts + [0])[:2]
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def array_ids(spec):
    ids = []
    for part in spec.split("%")[0].split(","):
        low, _, high = part.partition("-")
        ids += range(int(low), int(high or low) + 1)
    return ids


def code_lines(text):
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_sbatch_header_parser():
    options, ignored = sbatch_options("#!/bin/bash\n#SBATCH --time=1:00 --requeue\n\necho hi\n#SBATCH --array=0-1\n")
    assert options == {"--time": "1:00", "--requeue": ""}
    assert ignored == [5]
    assert slurm_seconds("2") == 120 and slurm_seconds("1:30") == 90 and slurm_seconds("24:00:00") == 86400
    assert slurm_seconds("1-12") == 129600 and slurm_seconds("1-0:0:10") == 86410
    assert array_ids("0-3") == [0, 1, 2, 3] and array_ids("0,5-6%2") == [0, 5, 6]


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_template_is_valid_bash_using_apptainer(name):
    text = template(name).read_text()
    result = subprocess.run(["bash", "-n", str(template(name))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert any("apptainer run" in line for line in code_lines(text))
    options, ignored = sbatch_options(text)
    assert not ignored, f"#SBATCH lines after the first command are ignored by sbatch: lines {ignored}"
    for required in ("--job-name", "--time", "--output"):
        assert options.get(required), required


@pytest.mark.parametrize("name", TRAINING_TEMPLATES)
def test_training_template_asks_for_a_signal_before_the_limit_and_can_be_requeued(name):
    text = template(name).read_text()
    options, _ = sbatch_options(text)
    match = re.fullmatch(r"B:USR1@(\d+)", options.get("--signal", ""))
    assert match, f"--signal={options.get('--signal')}: the batch shell (B:) must get USR1"
    assert 60 <= int(match.group(1)) < slurm_seconds(options["--time"])
    assert "--requeue" in options
    assert options.get("--open-mode") == "append"
    assert any("scontrol requeue" in line for line in code_lines(text))
    assert any(re.search(r"\btrap\b.*\bUSR1\b", line) for line in code_lines(text))


def test_array_and_multiworker_headers():
    for name in ("array", "sweep_array"):
        array, _ = sbatch_options(template(name).read_text())
        assert array_ids(array["--array"])
        assert "%a" in array["--output"] and "%A" in array["--output"]  # one log per array task
    multi, _ = sbatch_options(template("multiworker").read_text())
    assert int(multi["--nodes"].split("-")[0]) >= 2
    assert multi.get("--ntasks-per-node") == "1"
    assert any(line.lstrip().startswith("srun apptainer run") for line in code_lines(template("multiworker").read_text()))


# -- the paths a real Slurm run does not reach (tests/test_slurm.py submits the templates to a real Slurm): exit
# codes 75, past MAX_RESTARTS, a failing scontrol, a run ending on its own after a signal; with fake apptainer /
# srun / scontrol

FAKE_APPTAINER = r"""#!/bin/bash
# Records its arguments; exits with $FAKE_EXIT, or with FAKE_EXIT=wait runs until USR1/TERM (recorded), then
# takes a moment (a checkpoint) and exits with 128 + signal, or $FAKE_EXIT_ON_SIGNAL.
printf '%s\0' "$@" > "$FAKE_LOG_DIR/apptainer.args"
stop() {
    echo "$1" >> "$FAKE_LOG_DIR/apptainer.signals"
    sleep 0.3
    touch "$FAKE_LOG_DIR/apptainer.exited"
    exit "${FAKE_EXIT_ON_SIGNAL:-$2}"
}
if [ "$FAKE_EXIT" = wait ]; then
    trap 'stop USR1 138' USR1
    trap 'stop TERM 143' TERM
    touch "$FAKE_LOG_DIR/apptainer.started"
    for _ in $(seq 200); do sleep 0.1; done  # gives up after 20 s: a failing test leaves nothing behind
    exit 99
fi
exit "${FAKE_EXIT:-0}"
"""
FAKE_SRUN = """#!/bin/bash
printf '%s\\0' "$@" > "$FAKE_LOG_DIR/srun.args"
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "$*" >> "$FAKE_LOG_DIR/scontrol.log"
exit "${FAKE_SCONTROL_EXIT:-0}"
"""
OUR_VARIABLES = ("IMAGE", "SETTINGS", "BINDS", "REQUEUE_FILE", "MAX_RESTARTS", "MAX_EVALS", "EXPERIMENT",
                 "GRPC_PORT", "REST_PORT", "TF_SERVING_IMAGE")


class FakeCluster:
    def __init__(self, root):
        self.bin = root / "bin"
        self.logs = root / "logs"
        self.submit = root / "submit"
        for folder in (self.bin, self.logs, self.submit):
            folder.mkdir()
        for name, text in (("apptainer", FAKE_APPTAINER), ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)

    def env(self, **extra):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("SLURM_", "FAKE_")) and key not in OUR_VARIABLES}
        env.update(PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}", FAKE_LOG_DIR=str(self.logs),
                   SLURM_JOB_ID="4242", SLURM_SUBMIT_DIR=str(self.submit), SLURM_SUBMIT_HOST="login1",
                   IMAGE="/images/em.sif", SETTINGS="settings/my_settings.py")
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def run(self, name, **extra):
        return subprocess.run(["bash", str(template(name))], cwd=self.submit, env=self.env(**extra),
                              capture_output=True, text=True, timeout=DEADLINE_S)

    def start(self, name, **extra):
        return subprocess.Popen(["bash", str(template(name))], cwd=self.submit, env=self.env(**extra),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def args(self, program="apptainer"):
        path = self.logs / f"{program}.args"
        return path.read_text().split("\0")[:-1] if path.exists() else None

    def requeues(self):
        path = self.logs / "scontrol.log"
        return path.read_text().splitlines() if path.exists() else []

    def signals(self):
        path = self.logs / "apptainer.signals"
        return path.read_text().split() if path.exists() else []

    def wait_for(self, name):
        deadline = time.monotonic() + DEADLINE_S
        while not (self.logs / name).exists():
            assert time.monotonic() < deadline, f"{name} did not appear within {DEADLINE_S} s"
            time.sleep(0.02)


@pytest.fixture
def cluster(tmp_path):
    return FakeCluster(tmp_path)


# template -> (sub-command, Slurm environment, the id `scontrol requeue` must get)
JOBS = {
    "train": ("train", {}, "4242"),
    "sweep": ("sweep", {}, "4242"),
    "array": ("train", {"SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2"}, "4240_2"),
    "multiworker": ("train", {}, "4242"),
    "sweep_array": ("sweep", {"SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2"}, "4240_2"),
}


@pytest.mark.parametrize("name", TRAINING_TEMPLATES)
@pytest.mark.parametrize("code", REQUEUE_EXIT_CODES)
def test_stopped_or_stalled_run_is_requeued(cluster, name, code):
    command, slurm, job = JOBS[name]
    result = cluster.run(name, FAKE_EXIT=code, **slurm)
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.requeues() == [f"requeue {job}"]
    args = cluster.args()
    if name == "sweep_array":  # every task joins the sweep named after the array: no requeue file needed
        assert command in args and args[-2:] == ["--join", "4240"]
    else:
        assert command in args and args[-2] == "--requeue-file" and job in Path(args[-1]).name


@pytest.mark.parametrize("name", TRAINING_TEMPLATES)
@pytest.mark.parametrize("code", (0, 1, 2, 143))
def test_finished_or_failed_run_is_not_requeued(cluster, name, code):
    _, slurm, _ = JOBS[name]
    result = cluster.run(name, FAKE_EXIT=code, **slurm)
    assert result.returncode == code, result.stdout + result.stderr
    assert cluster.requeues() == []


@pytest.mark.parametrize("name", TRAINING_TEMPLATES)
def test_after_a_signal_the_job_waits_for_the_real_exit_code(cluster, name):
    """`wait` returns 128+USR1 as soon as the trapped signal arrives; the child's own code must decide."""
    _, slurm, _ = JOBS[name]
    process = cluster.start(name, FAKE_EXIT="wait", FAKE_EXIT_ON_SIGNAL=1, **slurm)
    try:
        cluster.wait_for("apptainer.started")
        process.send_signal(signal.SIGUSR1)
        output, _ = process.communicate(timeout=DEADLINE_S)
    finally:
        process.kill()
    assert (cluster.logs / "apptainer.exited").exists(), "the job ended before the command did"
    assert process.returncode == 1, output
    assert cluster.requeues() == []


def test_no_requeue_past_max_restarts_or_when_scontrol_fails(cluster):
    result = cluster.run("train", FAKE_EXIT=138, SLURM_RESTART_COUNT=3, MAX_RESTARTS=3)
    assert result.returncode == 138 and cluster.requeues() == []
    result = cluster.run("train", FAKE_EXIT=75, FAKE_SCONTROL_EXIT=1)
    assert result.returncode == 75


def test_an_array_task_without_a_config_stops_before_running_anything(cluster):
    """(Each task training its own config, requeued alone: tests/test_slurm.py, with a real Slurm.)"""
    options, _ = sbatch_options(template("array").read_text())
    ids = array_ids(options["--array"])
    result = cluster.run("array", FAKE_EXIT=0, SLURM_ARRAY_JOB_ID=4240, SLURM_ARRAY_TASK_ID=max(ids) + 1)
    assert result.returncode == 2 and cluster.args() is None
    assert f"array task {max(ids) + 1} has no entry in CONFIGS" in result.stderr


def test_serve_needs_an_experiment_and_can_run_the_real_tensorflow_model_server(cluster):
    """(Serving at the printed address, stopped by scancel: tests/test_slurm.py, with a real Slurm.)"""
    assert cluster.run("serve").returncode == 2 and cluster.args() is None  # no EXPERIMENT
    experiment = cluster.submit / "experiments" / "run1"
    experiment.mkdir(parents=True)
    (experiment / "models.config").write_text('model_config_list {\n  config {\n    name: "model_curve_fitting"\n')
    result = cluster.run("serve", EXPERIMENT=experiment, TF_SERVING_IMAGE="/images/tf_server.sif", FAKE_EXIT=0)
    assert result.returncode == 0, result.stderr
    args = cluster.args()
    grpc, rest = (str(40000 + 4242 % 10000 * 2), str(40000 + 4242 % 10000 * 2 + 1))
    assert args[args.index("/images/tf_server.sif") + 1:] == [
        f"--port={grpc}", f"--rest_api_port={rest}", f"--model_config_file={experiment}/models.config",
        "--file_system_poll_wait_seconds=1"]
