"""The Apptainer image, built for real: install/experiments_manager_debian.def made into a sandbox root by
tools/image/build.py (`make image`: debootstrap, %files, %post, %test as `apptainer build --sandbox` runs them) and
run by tools/image/apptainer.py (`apptainer run|exec|test` with bubblewrap). .ci/run builds it once (CPU variant)
and names it in EM_IMAGE_ROOT; tests/e2e/test_slurm.py runs its jobs in it.

What this proves: the recipe's %files are complete and %post installs the pinned set on a clean Debian, the
runscript, %environment and %test work, and a command in the image uses the image's own package. What only a real
`apptainer build` can prove (Docker Hub's base image, SIF files, --nv's GPU libraries) is in install/README.md.
"""

import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from conftest import REPO, require_real_part, settings_variant, wait_for, wait_for_image_build

APPTAINER = [sys.executable, str(REPO / "tools/image/apptainer.py")]
BUILD = [sys.executable, str(REPO / "tools/image/build.py")]
DEBIAN_DEF = REPO / "install/experiments_manager_debian.def"
SITE_PACKAGES = "/usr/local/lib/python3.11/dist-packages"


def default_image_cache():
    """Where `make image` keeps its cache (tools/image/build.py's `default_cache`), asked of the builder in a process
    of its own: loading it here would put tools/image's modules on every test worker's path."""
    result = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'tools/image'); import build; "
                             "print(build.default_cache())"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip()).resolve()


def in_image(image, *arguments, env=None, cwd=None, timeout=120):
    return subprocess.run([*APPTAINER, *arguments[:-1], str(image), *arguments[-1]], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def pins():
    found = {}
    for line in (REPO / "install/constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


@pytest.mark.slow
@pytest.mark.claim('`apptainer test` runs `--help` and a 1-epoch training')
def test_apptainer_test_runs_the_images_own_test_section(image_root, tmp_path):
    """`apptainer test`: the recipe's %test (the runscript's --help, a 1-epoch training of the regression example)."""
    result = in_image(image_root, "test", [], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "status:            finished" in result.stdout, result.stdout


@pytest.mark.claim(
    '`install/experiments_manager_debian.def`: the same from a Debian mirror, with the CUDA wheels or '
    '`CUDA_WHEELS=no`; every section below the header equal to the Docker one',
    note='(built by `.ci/run`; the GPU variant built by hand, see install/README.md)')
@pytest.mark.claim(
    "the image sets `PYTHONNOUSERSITE`; host `PYTHONPATH` leaks in, `--cleanenv` keeps the image's package; "
    '`%environment` wins over host variables, `APPTAINERENV_`/`--env` win over it; binds (`:ro`), a read-only '
    'image (bind points included)')
def test_the_image_holds_the_pinned_packages_and_runs_its_own_copy_of_the_package(image_root, tmp_path):
    """Every package %post installed is the constraints' version; the host's PYTHONPATH (this checkout) leaks into
    the container as Apptainer passes the host environment, and --cleanenv, as install/README.md advises, keeps
    the image's own package."""
    listing = in_image(image_root, "exec", ["python3", "-m", "pip", "list", "--format=json", "--path", SITE_PACKAGES])
    assert listing.returncode == 0, listing.stderr
    installed = {re.sub(r"[-_.]+", "-", item["name"]).lower(): item["version"] for item in json.loads(listing.stdout)}
    expected = pins()
    wrong = {name: (version, expected.get(name)) for name, version in installed.items()
             if name != "experiments-manager" and expected.get(name) != version}
    assert not wrong, f"installed in the image, not at the constraints' version: {wrong}"
    assert installed["tensorflow"] == expected["tensorflow"] and "experiments-manager" in installed
    assert not any(name.startswith("nvidia-") for name in installed), "the CPU variant has no CUDA wheels"

    where = "import experiments_manager, sys; print(experiments_manager.__file__); print(sys.executable)"
    host = dict(os.environ, PYTHONPATH=str(REPO))
    # the checkout bound (as a home folder or the folder a job is submitted from would be), PYTHONPATH naming it
    leaked = in_image(image_root, "exec", "--bind", str(REPO), ["python3", "-c", where], env=host, cwd=tmp_path)
    clean = in_image(image_root, "exec", "--bind", str(REPO), "--cleanenv", ["python3", "-c", where], env=host,
                     cwd=tmp_path)
    assert leaked.stdout.splitlines()[0] == str(REPO / "experiments_manager/__init__.py"), leaked.stdout
    assert clean.stdout.splitlines() == [f"{SITE_PACKAGES}/experiments_manager/__init__.py", "/usr/bin/python3"]


@pytest.mark.claim(
    "the image sets `PYTHONNOUSERSITE`; host `PYTHONPATH` leaks in, `--cleanenv` keeps the image's package; "
    '`%environment` wins over host variables, `APPTAINERENV_`/`--env` win over it; binds (`:ro`), a read-only '
    'image (bind points included)')
def test_environment_binds_and_read_only_image_as_apptainer_gives_them(image_root, tmp_path):
    """The image's %environment wins over the host's variables, APPTAINERENV_ and --env win over %environment; the
    image, the folders made for bind points and :ro binds are read-only; the current directory is bound."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("42\n")
    script = ("echo PYTHONNOUSERSITE=$PYTHONNOUSERSITE PYTHONUNBUFFERED=$PYTHONUNBUFFERED LC_ALL=$LC_ALL "
              "TF_CPP_MIN_LOG_LEVEL=$TF_CPP_MIN_LOG_LEVEL FROM_HOST=$FROM_HOST CONTAINER=$APPTAINER_CONTAINER; "
              "cat /scratch/data/input.txt; pwd; echo made > here.txt; "
              "touch /scratch/data/no 2>/dev/null || echo data read-only; touch /usr/no 2>/dev/null || echo image "
              "read-only; touch /no 2>/dev/null || echo root read-only; touch /scratch/no 2>/dev/null || echo "
              "bind point read-only")
    env = dict(os.environ, APPTAINERENV_FROM_HOST="yes", TF_CPP_MIN_LOG_LEVEL="3", PYTHONNOUSERSITE="",
               APPTAINERENV_PYTHONUNBUFFERED="0")
    result = in_image(image_root, "exec", "--bind", f"{data}:/scratch/data:ro", "--env", "LC_ALL=C",
                      ["sh", "-c", script], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"PYTHONNOUSERSITE=1 PYTHONUNBUFFERED=0 LC_ALL=C TF_CPP_MIN_LOG_LEVEL=3 FROM_HOST=yes CONTAINER={image_root}",
        "42", str(tmp_path), "data read-only", "image read-only", "root read-only", "bind point read-only"]
    assert (tmp_path / "here.txt").read_text() == "made\n"  # the current directory is bound, writable


@pytest.mark.slow
@pytest.mark.claim(
    'a signal to `apptainer run` reaches the run inside (checkpoint, exit 138); a job-wide `scancel` still returns '
    "the command's status")
@pytest.mark.claim("run.json's `attempts[].container` names the image a run ran in")
def test_a_signal_to_apptainer_reaches_the_training_which_checkpoints_and_exits_138(image_root, workdir):
    """As a Slurm job's shell forwards USR1 to `apptainer run`: the training inside must get it (bubblewrap itself
    forwards no signal), checkpoint, and its exit code come back."""
    settings = settings_variant(workdir, "no_early_stop.py", ["early_stopping_patience = 1000"])
    process = subprocess.Popen([*APPTAINER, "run", str(image_root), "train", "-u", str(settings),
                                "--hparam", "nbEpoch=500"],
                               cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        folder = workdir / "experiments/examples/curve_fitting"
        wait_for(lambda: list(folder.glob("*/checkpoints/ckpt-*/state.json")), 120, "the first checkpoint")
        process.send_signal(signal.SIGUSR1)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 138, output
    run = json.loads(next(folder.glob("*/run.json")).read_text())
    assert run["status"] == "interrupted" and "SIGUSR1" in run["reason"], run
    assert run["attempts"][0]["container"] == str(image_root)


@pytest.mark.claim('Ctrl-C on `apptainer run` in a terminal reaches the command once')
def test_ctrl_c_in_a_terminal_reaches_the_command_once(image_root, tmp_path):
    """Ctrl-C signals the terminal's whole foreground process group, the command in the image included: the
    stand-in must not forward a second INT (which would cut the training's KeyboardInterrupt handling short)."""
    script = ("import signal, time\ncount = []\nsignal.signal(signal.SIGINT, lambda *_: count.append(1))\n"
              "print('ready', flush=True)\nwhile not count:\n    time.sleep(0.05)\ntime.sleep(1)\n"
              "print('interrupts', len(count), flush=True)\n")
    main, terminal = os.openpty()

    def in_a_terminal():  # a session of its own whose controlling terminal is `terminal`, as a login shell's job
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen([*APPTAINER, "exec", str(image_root), "python3", "-c", script], cwd=tmp_path,
                               stdin=terminal, stdout=terminal, stderr=terminal, preexec_fn=in_a_terminal)
    os.close(terminal)
    seen = []

    def printed(text):
        while select.select([main], [], [], 0.2)[0]:
            try:
                seen.append(os.read(main, 4096).decode(errors="replace"))
            except OSError:  # the terminal closed: every process holding it ended
                break
        return text in "".join(seen)

    try:
        wait_for(lambda: printed("ready"), 60, "the command in the image")
        os.write(main, b"\x03")
        wait_for(lambda: printed("interrupts"), 30, "the command's count of interrupts")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        os.close(main)
    assert "interrupts 1" in "".join(seen), "".join(seen)


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(number) for number in path.read_text().split()] if path.exists() else []


@pytest.mark.claim(
    'a signal to `apptainer run` reaches the run inside (checkpoint, exit 138); a job-wide `scancel` still returns '
    "the command's status")
def test_a_scancel_signalling_every_process_still_lets_the_command_finish_and_returns_its_status(image_root, tmp_path):
    """`scancel` sends TERM to every process of the job: the stand-in, bubblewrap (which dies of it) and the
    command. The command must still run its handler to the end (a checkpoint), and its exit code come back."""
    script = ("import signal, sys, time\n"
              "def stop(*_):\n    time.sleep(1); print('checkpointed', flush=True); sys.exit(7)\n"
              "signal.signal(signal.SIGTERM, stop)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    process = subprocess.Popen([*APPTAINER, "exec", str(image_root), "python3", "-c", script], cwd=tmp_path,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        bwrap = wait_for(lambda: children(process.pid), 10, "bubblewrap")[0]
        command = wait_for(lambda: children(bwrap), 10, "the command in the sandbox")[0]
        for pid in (process.pid, bwrap, command):
            os.kill(pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert (output, process.returncode) == ("checkpointed\n", 7)


# ---------------------------------------------------------------- the builder's failures


def require_builder():
    missing = [tool for tool in ("debootstrap", "bwrap") if shutil.which(tool) is None]
    require_real_part(f"{', '.join(missing)} not installed: apt-get install debootstrap bubblewrap" if missing
                      else "the image builder needs root" if os.geteuid() != 0 else None)


@pytest.fixture(scope="module")
def image_cache():
    """The bare debootstrap root `make image` keeps (tools/image/build.py's default cache: EM_IMAGE_CACHE, else
    ~/.cache/experiments_manager/image): the builder's failure tests start from it instead of downloading Debian
    again."""
    require_builder()
    wait_for_image_build()  # .ci/run's, beside the tests, fills the cache
    cache = default_image_cache()
    require_real_part(None if any(cache.glob("debootstrap-*")) else f"no debootstrap cache in {cache}: `make image`")
    return cache


def recipe_variant(tmp_path, replacements):
    text = DEBIAN_DEF.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "variant.def"
    path.write_text(text)
    return path


def build(recipe, root, cache, *extra):
    return subprocess.run([*BUILD, str(recipe), str(root), "--cache", str(cache), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


PIP_LINE = re.compile(r"    if \[ \"\{\{ CUDA_WHEELS \}\}\" = yes \]; then\n.*?\n    fi\n", re.S)
FAKE_CLI = ("    printf '#!/bin/sh\\necho \"fake experiments-manager $*\"\\n' > /usr/local/bin/experiments-manager\n"
            "    chmod 755 /usr/local/bin/experiments-manager\n")


RESEARCH_CHECK = '    python3 -c "import pandas, scipy, sklearn, cv2, tqdm"\n'


def fake_install(tmp_path, **more):
    """The real recipe with its pip install replaced by a fake `experiments-manager` (seconds instead of a minute)."""
    text = PIP_LINE.sub(FAKE_CLI.replace("\\", "\\\\"), DEBIAN_DEF.read_text())
    assert "fake experiments-manager" in text
    # Nor is the [research] extra installed: its import check in %test goes with the pip install.
    assert RESEARCH_CHECK in text
    text = text.replace(RESEARCH_CHECK, "")
    for old, new in more.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"variant{len(list(tmp_path.glob('variant*')))}.def"
    path.write_text(text)
    return path


@pytest.mark.claim(
    '`make image` builds the Debian recipe into a sandbox as `apptainer build --sandbox` runs it; a broken '
    '`%files`, a failing `%post` or `%test` (a runscript typo) fails it, one line, nothing left')
@pytest.mark.claim('the image\'s runscript is `experiments-manager "$@"`', note='(`apptainer run` of a built image)')
def test_a_runscript_typo_fails_the_build_through_percent_test_and_nothing_is_left(image_cache, tmp_path):
    control = build(fake_install(tmp_path), tmp_path / "good", image_cache)
    assert control.returncode == 0, control.stdout + control.stderr
    assert "fake experiments-manager train -u examples/regression/mysettings_curve_fitting.py" in control.stdout
    run = in_image(tmp_path / "good", "run", ["list", "x"])
    assert run.stdout == "fake experiments-manager list x\n", run

    typo = fake_install(tmp_path, **{'exec experiments-manager "$@"': 'exec experiment-manager "$@"'})
    leftover = tmp_path / ".bad.building-999999999"  # a killed build's partial root: removed by the next build
    leftover.mkdir()
    result = build(typo, tmp_path / "bad", image_cache)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "experiment-manager: not found" in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1] == "build_image: %test failed with exit code 127"
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["good"], "a failed build left a root"


@pytest.mark.claim(
    '`%files` as Apptainer copies them (globs, links followed, destinations resolved inside the image); `%post` '
    'sees /sys, /etc/hosts and `$APPTAINER_ENVIRONMENT`')
def test_files_and_post_as_apptainer_runs_them(image_cache, tmp_path):
    """%files: glob patterns expanded, links followed (cp -fLr), a destination under a link of the image (its
    /var/run -> /run) written inside the image, never through the link to this host; %post sees /sys and
    /etc/hosts, and what it appends to $APPTAINER_ENVIRONMENT is in the image's environment."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "a.txt").write_text("a\n")
    (extra / "b.txt").write_text("b\n")
    (tmp_path / "link").symlink_to(extra / "a.txt")
    name = f"em_linked_{os.getpid()}"
    files = f"    {extra}/*.txt /opt/\n    {tmp_path}/link /var/run/{name}\n"
    post = '    test -d /sys/kernel && test -f /etc/hosts\n    echo "export FROM_POST=yes" >> "$APPTAINER_ENVIRONMENT"\n'
    recipe = fake_install(tmp_path, **{"%files\n": "%files\n" + files, "%post\n": "%post\n" + post})
    result = build(recipe, tmp_path / "image", image_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not Path(f"/run/{name}").exists(), "a %files destination was written on the host through /var/run"
    script = f"cat /opt/a.txt /opt/b.txt /run/{name}; test -L /run/{name} || echo a file; echo $FROM_POST"
    run = in_image(tmp_path / "image", "exec", ["sh", "-c", script], cwd=tmp_path)
    assert run.stdout == "a\nb\na\na file\nyes\n", run


@pytest.mark.claim(
    "`make image` keeps its cache outside the checkout: a build with the same recipe and pins starts from the root "
    "%post left, with this checkout's files and %post run again; a changed recipe or pin builds from Debian")
def test_a_build_with_the_same_key_starts_from_the_kept_root_and_a_changed_key_builds_afresh(image_cache, tmp_path):
    """Four builds with one cache of their own (the debootstrap root linked from the shared one): the first keeps
    its root without what %files copied; the second, same recipe and key file, starts from that root (no
    debootstrap), gets the payload as it is now (a file removed since is gone) and runs %post over it again, as
    `apptainer build --update`, its append to a file of the kept root (shared by hard links with it and with the
    first image) written through an overlay, not into them; the third, the key file changed, starts from Debian
    again; so does the fourth, its recipe's %post changed, and the oldest of the three kept roots goes (two are
    kept)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for bare in image_cache.glob("debootstrap-*"):
        (cache / bare.name).symlink_to(bare)
    pins, payload = tmp_path / "pins.txt", tmp_path / "payload"
    pins.write_text("tensorflow==1\n")
    payload.mkdir()
    (payload / "old.txt").write_text("old\n")
    recipe = fake_install(tmp_path, **{"%files\n": f"%files\n    {payload} /opt/payload\n",
                                       "%post\n": "%post\n    echo ran >> /var/post-runs\n"})

    def build_with_key(name):
        result = build(recipe, tmp_path / name, cache, "--cache-key", str(pins))
        assert result.returncode == 0, result.stdout + result.stderr
        image = tmp_path / name
        return result.stdout, sorted(path.name for path in (image / "opt/payload").iterdir()), \
            (image / "var/post-runs").read_text().count("ran")

    output, files, post_runs = build_with_key("first")
    assert "debootstrap (copied from the cache)" in output and "kept in the cache" in output, output
    assert (files, post_runs) == (["old.txt"], 1)
    kept = [path for path in cache.glob("root-*")]
    assert len(kept) == 1 and not (kept[0] / "opt/payload").exists(), "the kept root holds what %files copied"

    (payload / "old.txt").unlink()
    (payload / "new.txt").write_text("new\n")
    output, files, post_runs = build_with_key("second")
    assert "cached root (linked from the cache, key" in output and "[build_image] debootstrap" not in output, output
    assert (files, post_runs) == (["new.txt"], 2), "not this checkout's files, or %post not run over the kept root"
    for shared in (kept[0], tmp_path / "first"):  # %post's `>>` went to the overlay, not through the links
        assert (shared / "var/post-runs").read_text() == "ran\n", shared
    assert os.path.samefile(tmp_path / "second/usr/bin/env", kept[0] / "usr/bin/env"), "the second copied the root"

    pins.write_text("tensorflow==2\n")
    output, files, post_runs = build_with_key("third")
    assert "debootstrap (copied from the cache)" in output and (files, post_runs) == (["new.txt"], 1), output
    assert len(list(cache.glob("root-*"))) == 2

    recipe.write_text(recipe.read_text().replace("echo ran >> /var/post-runs\n",
                                                 "echo ran >> /var/post-runs\n    touch /var/changed\n"))
    output, files, post_runs = build_with_key("fourth")
    assert "debootstrap (copied from the cache)" in output and (files, post_runs) == (["new.txt"], 1), output
    assert (tmp_path / "fourth/var/changed").exists()
    assert f"removing the cached root {kept[0]}" in output, output
    assert sorted(cache.glob("root-*")) != sorted(kept) and len(list(cache.glob("root-*"))) == 2
    assert not list(cache.glob(".root-*.removing-*")), "a removed root left behind"


@pytest.mark.claim(
    '`make image` builds the Debian recipe into a sandbox as `apptainer build --sandbox` runs it; a broken '
    '`%files`, a failing `%post` or `%test` (a runscript typo) fails it, one line, nothing left')
def test_a_failing_post_stops_the_build_and_leaves_no_root(image_cache, tmp_path):
    recipe = fake_install(tmp_path, **{"    set -eu\n    # setup.cfg": "    set -eu\n    false\n    # setup.cfg"})
    result = build(recipe, tmp_path / "image", image_cache)
    assert result.returncode == 1 and result.stderr.strip() == "build_image: %post failed with exit code 1", result
    assert "%test" not in result.stdout and [path for path in tmp_path.iterdir() if path.suffix != ".lock"] == [recipe]


@pytest.mark.parametrize("replacements, build_args, expected", [
    ({"    install/README.md /opt": "    install/READM.md /opt"}, [],
     "%files: install/READM.md: not found in {repo} (sources are relative to the folder the build runs in)"),
    ({"Bootstrap: debootstrap": "Bootstrap: docker\nFrom: debian:bookworm"}, [],
     "Bootstrap: docker: this builder makes debootstrap roots only"),
    ({}, ["--build-arg", "CUDA=no"], "--build-arg CUDA: not in %arguments (expected one of: CUDA_WHEELS)"),
])
@pytest.mark.claim(
    '`make image` builds the Debian recipe into a sandbox as `apptainer build --sandbox` runs it; a broken '
    '`%files`, a failing `%post` or `%test` (a runscript typo) fails it, one line, nothing left')
def test_bad_recipes_are_one_line_exit_2_before_anything_is_downloaded(tmp_path, replacements, build_args, expected):
    require_builder()
    recipe = recipe_variant(tmp_path, replacements)
    result = subprocess.run([*BUILD, str(recipe), str(tmp_path / "image"), *build_args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result
    assert expected.format(repo=REPO) in result.stderr and result.stdout == ""
    assert not (tmp_path / "image").exists()


@pytest.mark.claim(
    '`make image` builds the Debian recipe into a sandbox as `apptainer build --sandbox` runs it; a broken '
    '`%files`, a failing `%post` or `%test` (a runscript typo) fails it, one line, nothing left',
    note='(`.ci/run` runs `make image` before the tests)')
def test_a_bad_cuda_wheels_value_fails_percent_post_with_its_name(image_cache, tmp_path):
    result = build(fake_install(tmp_path), tmp_path / "image", image_cache, "--build-arg", "CUDA_WHEELS=maybe")
    assert result.returncode == 1, result
    assert "build argument CUDA_WHEELS: expected yes or no, got 'maybe'" in result.stderr
