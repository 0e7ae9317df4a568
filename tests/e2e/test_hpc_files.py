"""The HPC files: Apptainer definitions (install/*.def) and Slurm job templates (tools/slurm/*.sbatch).

The .def files are read with spython (tools/image/recipe.py) and checked against install/constraints.txt and the
package; their %test is run with a fake `experiments-manager`. The Debian recipe is also built for real by
tools/image/build.py and run in tests/e2e/test_image.py; the Docker-based ones cannot be built here (no Docker Hub).
The job templates are submitted to a real Slurm in tests/e2e/test_slurm.py; here they are checked with `bash -n`,
their `#SBATCH` lines, and the exit-code paths a real run does not reach, under fake `apptainer`, `srun` and
`scontrol` commands. No TensorFlow here.
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

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install"
SLURM = ROOT / "tools" / "slurm"
EM_DEF = INSTALL / "experiments_manager.def"
EM_DEBIAN_DEF = INSTALL / "experiments_manager_debian.def"
EM_DEFS = (EM_DEF, EM_DEBIAN_DEF)
SERVER_DEF = INSTALL / "model_server.def"
CONSTRAINTS = INSTALL / "constraints.txt"
PROJECT_IN_IMAGE = "/opt/experiments_manager"
TRAINING_TEMPLATES = ("train", "sweep", "array", "multiworker", "sweep_array")
ALL_TEMPLATES = TRAINING_TEMPLATES + ("serve",)
REQUEUE_EXIT_CODES = (138, 75)  # 128+USR1 (before the time limit), EX_TEMPFAIL; not 128+TERM (scancel, preemption)
DEADLINE_S = 15

sys.path.insert(0, str(ROOT / "tools" / "image"))
from recipe import RecipeError, read_recipe  # noqa: E402  (tools/image is not a package)


# ---------------------------------------------------------------- Apptainer definition files


def shell_commands(lines):
    """The logical command lines of a shell section: continuations joined, comments and blanks dropped."""
    commands, pending = [], ""
    for line in (lines.splitlines() if isinstance(lines, str) else lines):
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


PIP_OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-e", "--editable", "-i", "--index-url",
                          "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root"}


def pip_install_problems(post, pins, constraints_in_image, project_in_image):
    """Every `pip install` in %post (text or lines) uses the constraints file; packages named on it are pinned."""
    problems, installs = [], 0
    for command in shell_commands(post):
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


def python_requires():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return tuple(int(part) for part in re.search(r">=\s*([\d.]+)", setup.get("options", "python_requires"))
                 .group(1).split("."))


@pytest.mark.claim(
    "a .def is read by Apptainer's rules: every line kept (spython drops some), unknown sections, section "
    'arguments, a second `Bootstrap:` and bad `%files` lines are one error line naming the file and line')
def test_read_recipe_errors_are_one_line_naming_the_file(tmp_path):
    def error(text, build_args=None):
        path = tmp_path / "x.def"
        path.write_text(text)
        with pytest.raises(RecipeError) as raised:
            read_recipe(path, build_args)
        message = str(raised.value)
        assert message.startswith(f"{path}") and "\n" not in message, message
        return message

    base = "Bootstrap: debootstrap\nOSVersion: bookworm\n%arguments\n    A=1\n%post\n    echo {{ A }}\n"
    (tmp_path / "ok.def").write_text(base)
    recipe = read_recipe(tmp_path / "ok.def", {"A": "2"})
    assert recipe.bootstrap == "debootstrap" and recipe.header == {"OSVersion": "bookworm"}
    assert recipe.arguments == {"A": "2"} and recipe.post == ("echo 2",)
    assert "--build-arg B: not in %arguments (expected one of: A)" in error(base, {"B": "x"})
    assert "{{ C }} has no value" in error(base + "    echo {{ C }}\n")
    assert "no 'Bootstrap:' header line" in error("From: debian\n%post\n    true\n")
    assert "header line 'From debian': expected 'Keyword: value'" in error("Bootstrap: docker\nFrom debian\n")
    assert "%arguments line 'A 1': expected NAME=default" in error("Bootstrap: docker\n%arguments\n    A 1\n")
    assert ":5: unknown section %poost (expected one of: %arguments" in error(base.replace("%post", "%poost"))
    assert ":5: %post -c /bin/bash: section arguments are not supported" in error(
        base.replace("%post", "%post -c /bin/bash"))
    assert ":2: a second 'Bootstrap:'" in error("Bootstrap: docker\nBootstrap: docker\n%post\n    true\n")
    assert ":3: %post appears twice" in error("Bootstrap: docker\n%post\n%post\n")
    assert "%files line 'a b c': expected 'SOURCE [DESTINATION]', got 3 words" in error(
        "Bootstrap: docker\n%files\n    a b c\n")


@pytest.mark.claim(
    "a .def is read by Apptainer's rules: every line kept (spython drops some), unknown sections, section "
    'arguments, a second `Bootstrap:` and bad `%files` lines are one error line naming the file and line')
def test_read_recipe_keeps_every_line_spython_loses_and_the_script_as_written(tmp_path):
    """spython drops a line that contains "bootstrap" or "from:", and repeated comments; a %files comment is not a
    source; here-documents keep their indentation relative to the section."""
    path = tmp_path / "x.def"
    path.write_text("Bootstrap: debootstrap\nOSVersion: bookworm\n%files\n    # a comment\n    'my file' '/opt/my file'\n"
                    "%post\n    apt-get install -y debootstrap\n    # twice\n    # twice\n    echo from: there\n"
                    "    cat > /x <<END\n      indented\n    END\n\n%test\n    true\n")
    recipe = read_recipe(path)
    assert recipe.files == (("my file", "/opt/my file"),)
    assert recipe.post == ("apt-get install -y debootstrap", "# twice", "# twice", "echo from: there",
                           "cat > /x <<END", "  indented", "END")
    assert recipe.test == ("true",) and recipe.runscript == () and recipe.header == {"OSVersion": "bookworm"}


@pytest.mark.parametrize("path, required", [
    (EM_DEF, ("files", "post", "environment", "runscript", "test", "labels", "help")),
    (EM_DEBIAN_DEF, ("files", "post", "environment", "runscript", "test", "labels", "help")),
    (SERVER_DEF, ("runscript", "test", "labels", "help")),
])
@pytest.mark.claim(
    '`install/experiments_manager.def`: TF 2.21 GPU base + this package, pinned',
    note='(weak: read with spython, never built: no Docker Hub here)')
@pytest.mark.claim('`install/model_server.def`: the real tensorflow_model_server')
def test_definition_has_required_sections(path, required):
    recipe = read_recipe(path)
    if recipe.bootstrap == "docker":
        assert recipe.header.get("From")
    else:
        assert recipe.bootstrap == "debootstrap" and recipe.header.get("MirrorURL", "").startswith("http")
    missing = [name for name in required if not getattr(recipe, name)]
    assert not missing, f"{path.name}: empty or missing sections {missing}"


@pytest.mark.parametrize("path, image", [(EM_DEF, "tensorflow/tensorflow"), (SERVER_DEF, "tensorflow/serving")])
@pytest.mark.claim('`install/experiments_manager.def`: TF 2.21 GPU base + this package, pinned')
def test_base_image_tensorflow_version_is_the_pinned_one(path, image):
    recipe = read_recipe(path)
    pinned = read_constraints()["tensorflow"]
    assert recipe.header["From"] == f"{image}:{pinned}-gpu"
    assert recipe.labels.get("TensorFlow") == pinned


def test_debian_recipe_brings_a_python_the_package_accepts_and_what_pip_needs():
    recipe = read_recipe(EM_DEBIAN_DEF)
    pythons = {"bookworm": (3, 11), "trixie": (3, 13)}  # Debian's python3
    assert pythons[recipe.header["OSVersion"]] >= python_requires()
    assert {"python3", "python3-pip", "ca-certificates"} <= set(recipe.header["Include"].split())


@pytest.mark.claim(
    '`install/experiments_manager_debian.def`: the same from a Debian mirror, with the CUDA wheels or '
    '`CUDA_WHEELS=no`; every section below the header equal to the Docker one')
def test_both_experiments_manager_recipes_agree_below_their_headers():
    """Apptainer has no include: the Docker-based and the Debian recipe repeat the same sections (edit both)."""
    same = {"CUDA_WHEELS": "yes"}  # substituted alike: only the defaults differ
    docker, debian = read_recipe(EM_DEF, same).body(), read_recipe(EM_DEBIAN_DEF, same).body()
    differing = [name for name in docker if docker[name] != debian[name]]
    assert not differing, f"sections that differ between {EM_DEF.name} and {EM_DEBIAN_DEF.name}: {differing}"
    assert read_recipe(EM_DEF).arguments == {"CUDA_WHEELS": "no"}  # the GPU base image has CUDA already
    assert read_recipe(EM_DEBIAN_DEF).arguments == {"CUDA_WHEELS": "yes"}


@pytest.mark.parametrize("path", EM_DEFS)
@pytest.mark.claim('`install/experiments_manager.def`: TF 2.21 GPU base + this package, pinned')
def test_files_section_copies_what_the_build_needs(path):
    pairs = read_recipe(path).files
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


@pytest.mark.parametrize("cuda_wheels", ["yes", "no"])
@pytest.mark.parametrize("path", EM_DEFS)
@pytest.mark.claim('`install/experiments_manager.def`: TF 2.21 GPU base + this package, pinned')
@pytest.mark.claim('pinned versions in `install/constraints.txt`; every import is a declared dependency')
def test_pip_installs_use_the_constraints_and_only_pinned_names(path, cuda_wheels):
    recipe = read_recipe(path, {"CUDA_WHEELS": cuda_wheels})
    constraints_in_image = dict(recipe.files)["install/constraints.txt"]
    assert pip_install_problems(recipe.post, read_constraints(), constraints_in_image, PROJECT_IN_IMAGE) == []
    assert any("--no-cache-dir" in line or "PIP_NO_CACHE_DIR=1" in line for line in recipe.post)


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
    assert pip_install_problems(["pip install -c /c.txt /opt/p 'tensorflow[and-cuda]==2.21.0'"], *args) == []


@pytest.mark.claim(
    '`install/experiments_manager_debian.def`: the same from a Debian mirror, with the CUDA wheels or '
    '`CUDA_WHEELS=no`; every section below the header equal to the Docker one')
def test_the_cuda_wheels_tensorflow_needs_are_pinned():
    """`tensorflow[and-cuda]` (CUDA_WHEELS=yes) installs what the installed TensorFlow's metadata lists for that
    extra; each must be pinned (unpinned, a rebuild would take newer ones) within the range TensorFlow asks for."""
    from importlib.metadata import requires
    from packaging.requirements import Requirement

    pins = read_constraints()
    cuda = [Requirement(text) for text in requires("tensorflow") or []]
    cuda = [req for req in cuda if req.marker is not None and req.marker.evaluate({"extra": "and-cuda"})
            and not req.marker.evaluate({"extra": ""})]
    assert len(cuda) >= 10, cuda  # cublas, cudnn, nccl, ...: the metadata was read
    unpinned = [str(req) for req in cuda
                if normalize(req.name) not in pins or pins[normalize(req.name)] not in req.specifier]
    assert not unpinned, f"tensorflow[and-cuda] wheels not pinned in the constraints within TensorFlow's range: {unpinned}"


FAKE_PIP = """#!/bin/sh
echo "$0 $*" >> "$FAKE_LOG"
"""


@pytest.mark.parametrize("value", ["yes", "no", "maybe"])
@pytest.mark.claim(
    '`install/experiments_manager_debian.def`: the same from a Debian mirror, with the CUDA wheels or '
    '`CUDA_WHEELS=no`; every section below the header equal to the Docker one')
def test_cuda_wheels_chooses_the_install_and_a_bad_value_fails_post(value, tmp_path):
    """%post with `python3` faked (it logs its arguments): yes adds tensorflow[and-cuda], no does not, another value
    stops %post before any install with a line naming the build argument."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PIP)
    (bin_dir / "python3").chmod(0o755)
    log = tmp_path / "calls"
    script = "\n".join(read_recipe(EM_DEBIAN_DEF, {"CUDA_WHEELS": value}).post).replace(PROJECT_IN_IMAGE,
                                                                                          str(tmp_path / "p"))
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "FAKE_LOG": str(log)}
    result = subprocess.run(["sh", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    installs = [line for line in (log.read_text().splitlines() if log.exists() else []) if " -m pip install " in line]
    if value == "maybe":
        assert result.returncode != 0 and installs == []
        assert "build argument CUDA_WHEELS: expected yes or no, got 'maybe'" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert len(installs) == 1 and installs[0].endswith("tensorflow[and-cuda]==2.21.0") == (value == "yes"), installs


@pytest.mark.claim('`install/model_server.def`: the real tensorflow_model_server')
@pytest.mark.claim('the image\'s runscript is `experiments-manager "$@"`')
def test_runscripts_exec_the_command_with_all_arguments():
    binary = re.search(r'BINARY = "([^"]+)"', (ROOT / "experiments_manager/serving/tfserving.py").read_text())
    for path in EM_DEFS:
        assert shell_commands(read_recipe(path).runscript) == ['exec experiments-manager "$@"']
    server = read_recipe(SERVER_DEF)
    assert shell_commands(server.runscript) == [f'exec {binary.group(1)} "$@"']
    assert [shlex.split(c) for c in shell_commands(server.test)] == [[binary.group(1), "--version"]]


@pytest.mark.parametrize("path", EM_DEFS)
def test_labels_and_environment(path):
    recipe = read_recipe(path)
    assert recipe.labels.get("Name") == "experiments_manager"
    assert recipe.labels.get("Version") == package_version()
    assert recipe.labels.get("Source")
    assert "export PYTHONUNBUFFERED=1" in recipe.environment
    assert "export PYTHONNOUSERSITE=1" in recipe.environment  # $HOME is bound in the container
    help_text = "\n".join(recipe.help)
    for word in ("apptainer build", "--nv", "--bind", "install/README.md"):
        assert word in help_text, word


@pytest.mark.parametrize("path", [EM_DEF, EM_DEBIAN_DEF, SERVER_DEF])
@pytest.mark.claim("the definitions' shell sections are valid `sh`")
def test_shell_sections_are_valid_sh(path):
    """Apptainer runs %post, %environment, %runscript and %test with /bin/sh, not bash."""
    recipe = read_recipe(path)
    for name in ("post", "environment", "runscript", "test"):
        lines = getattr(recipe, name)
        if lines:
            result = subprocess.run(["sh", "-n"], input="\n".join(lines) + "\n", capture_output=True, text=True)
            assert result.returncode == 0, f"%{name}: {result.stderr}"


FAKE_CLI = """#!{python}
import ast, json, os, sys
from pathlib import Path
from experiments_manager.settings.model_file import resolve_model_file
record = {{"cwd": os.getcwd(), "argv": sys.argv[1:]}}
if sys.argv[1:2] == ["train"]:
    settings = Path(sys.argv[sys.argv.index("-u") + 1])
    record["settings_found"] = settings.is_file()
    tree = ast.parse(settings.read_text()) if settings.is_file() else ast.Module(body=[])
    model_files = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                   and any(getattr(target, "id", None) == "model_file" for target in node.targets)]
    record["model_file_resolved"] = bool(model_files) and resolve_model_file(model_files[0], settings, []) is not None
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
"""


@pytest.mark.claim('`apptainer test` runs `--help` and a 1-epoch training')
def test_image_test_section_trains_the_example_outside_the_repository(tmp_path):
    """%test through the recipe's runscript, with /opt/experiments_manager read as this checkout and a fake CLI that
    checks what train would load (tests/e2e/test_image.py runs it in the built image)."""
    recipe = read_recipe(EM_DEF)
    commands = [shlex.split(command) for command in shell_commands(recipe.test)]
    assert any(tokens[:2] == ["/.singularity.d/runscript", "--help"] for tokens in commands)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "experiments-manager"
    fake.write_text(FAKE_CLI.format(python=sys.executable))
    fake.chmod(0o755)
    python = bin_dir / "python3"  # the image's python3 is the one holding the package and its extras
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    runscript = tmp_path / "runscript"
    runscript.write_text("#!/bin/sh\n" + "\n".join(recipe.runscript) + "\n")
    runscript.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    script = "\n".join(recipe.test).replace(PROJECT_IN_IMAGE, str(ROOT)).replace("/.singularity.d/runscript",
                                                                                 str(runscript))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)}
    result = subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0]["argv"] == ["--help"], calls
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
@pytest.mark.claim('`tools/slurm/` has train, sweep, array, multiworker, serve templates (valid bash, `apptainer run`)')
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
@pytest.mark.claim('each asks for `--signal=B:USR1@120` and can be requeued')
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


@pytest.mark.claim('array jobs: each task its own config and requeue file')
def test_array_and_multiworker_headers():
    for name in ("array", "sweep_array"):
        array, _ = sbatch_options(template(name).read_text())
        assert array_ids(array["--array"])
        assert "%a" in array["--output"] and "%A" in array["--output"]  # one log per array task
    multi, _ = sbatch_options(template("multiworker").read_text())
    assert int(multi["--nodes"].split("-")[0]) >= 2
    assert multi.get("--ntasks-per-node") == "1"
    assert any(line.lstrip().startswith("srun apptainer run") for line in code_lines(template("multiworker").read_text()))


# -- the paths a real Slurm run does not reach (tests/e2e/test_slurm.py submits the templates to a real Slurm): exit
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
    # gives up after 20 s: a failing test leaves nothing behind. A brace expansion, not $(seq): a trap that runs
    # while bash parses a command substitution fails with "unexpected EOF while looking for matching ')'".
    for _ in {1..200}; do sleep 0.1; done
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
@pytest.mark.claim('the signal is forwarded to the run, then `scontrol requeue`', note='(exit 75)')
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
@pytest.mark.claim('a finished or failed run is not requeued')
@pytest.mark.claim(
    'SIGTERM (scancel, a preemption) checkpoints (exit 143) and the job does not requeue itself',
    note='(143)')
def test_finished_or_failed_run_is_not_requeued(cluster, name, code):
    _, slurm, _ = JOBS[name]
    result = cluster.run(name, FAKE_EXIT=code, **slurm)
    assert result.returncode == code, result.stdout + result.stderr
    assert cluster.requeues() == []


@pytest.mark.parametrize("name", TRAINING_TEMPLATES)
@pytest.mark.claim('the signal is forwarded to the run, then `scontrol requeue`')
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


@pytest.mark.claim('array jobs: each task its own config and requeue file')
def test_an_array_task_without_a_config_stops_before_running_anything(cluster):
    """(Each task training its own config, requeued alone: tests/e2e/test_slurm.py, with a real Slurm.)"""
    options, _ = sbatch_options(template("array").read_text())
    ids = array_ids(options["--array"])
    result = cluster.run("array", FAKE_EXIT=0, SLURM_ARRAY_JOB_ID=4240, SLURM_ARRAY_TASK_ID=max(ids) + 1)
    assert result.returncode == 2 and cluster.args() is None
    assert f"array task {max(ids) + 1} has no entry in CONFIGS" in result.stderr


@pytest.mark.claim('serve template: serves a running experiment, says how to reach it')
def test_serve_needs_an_experiment_and_can_run_the_real_tensorflow_model_server(cluster):
    """(Serving at the printed address, stopped by scancel: tests/e2e/test_slurm.py, with a real Slurm.)"""
    assert cluster.run("serve").returncode == 2 and cluster.args() is None  # no EXPERIMENT
    experiment = cluster.submit / "experiments" / "run1"
    experiment.mkdir(parents=True)
    (experiment / "models.config").write_text('model_config_list {\n  config {\n    name: "model_curve_fitting"\n')
    result = cluster.run("serve", EXPERIMENT=experiment, TF_SERVING_IMAGE="/images/tf_server.sif", FAKE_EXIT=0)
    assert result.returncode == 0, result.stderr
    args = cluster.args()
    grpc, rest = str(10000 + 4242 % 5000 * 2), str(10000 + 4242 % 5000 * 2 + 1)  # 18484, 18485
    assert args[args.index("/images/tf_server.sif") + 1:] == [
        f"--port={grpc}", f"--rest_api_port={rest}", f"--model_config_file={experiment}/models.config",
        "--file_system_poll_wait_seconds=1"]
