#!/usr/bin/env python3
"""`apptainer run|exec|test` for a sandbox image (a root folder), with bubblewrap, where Apptainer is not installed.

A sandbox is a real Apptainer image format (`apptainer build --sandbox ROOT recipe.def`; tools/image/build.py makes
one the same way). This runs a command in it as Apptainer's defaults do, so that what a job does inside the image
can be tested on machines without Apptainer (Debian has no package for it):

- the image is read-only; the host's /proc, /sys, a /dev, /tmp, /var/tmp, $HOME and the current directory (unless
  it is / or a system folder: CWD_NOT_BOUND) are bound, and /etc/resolv.conf, /etc/hosts, /etc/passwd,
  /etc/group where the image has them; network shared;
- `--bind SRC[:DEST[:ro]][,...]` binds more; a destination the image lacks is created (Apptainer's underlay);
- the host's environment is passed except PATH and LD_LIBRARY_PATH (`--cleanenv`: only HOME, USER, TERM, LANG),
  then the image's `/.singularity.d/env/*.sh` (its %environment) are sourced, then `APPTAINERENV_NAME=value` and
  `--env NAME=value` set NAME (they win over %environment, as in Apptainer >= 3.6);
- `run` executes `/.singularity.d/runscript ARGS`, `exec` executes ARGS, `test` executes `/.singularity.d/test`;
- TERM, INT, HUP, USR1 and USR2 sent to this process are forwarded to the command (bubblewrap forwards none;
  INT not when the terminal sent it to the whole foreground process group, the command included), and its exit
  status is this process's, also when bubblewrap itself was killed (a `scancel` signals every process of a job:
  the command goes on to its end, reparented to this process).

What only Apptainer itself does is left out: SIF files, overlays, `--nv`'s GPU libraries (the option is accepted
and says that no GPU is passed), `--fakeroot`, instances. Runs as root, or where unprivileged user namespaces are
allowed (bubblewrap's requirement).

Example:
    tools/image/apptainer.py run build/image --help
    tools/image/apptainer.py exec --bind /data:/data:ro build/image python3 -c "import experiments_manager"
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/passwd", "/etc/group")
NOT_FROM_IMAGE = {"proc", "sys", "dev", "tmp"}  # mounted from the host (or fresh) over the image's own
KEPT_BY_CLEANENV = ("HOME", "USER", "LOGNAME", "TERM", "LANG")
CWD_NOT_BOUND = ("/", "/etc", "/bin", "/mnt", "/usr", "/var", "/opt", "/sbin", "/lib", "/lib64")  # and under:
CWD_UNDER_NOT_BOUND = ("/sys", "/proc", "/dev")
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FORCED = "APPTAINER_FORCED_NAMES"  # the names set by APPTAINERENV_/--env, exported again after %environment
SOURCE_ENVIRONMENT = ('for f in /.singularity.d/env/*.sh; do [ -f "$f" ] && . "$f"; done; '
                      f'for n in ${FORCED}; do eval "export $n=\\"\\$APPTAINERENV_$n\\"; unset APPTAINERENV_$n"; done; '
                      f'unset {FORCED}; exec "$@"')


class UsageError(ValueError):
    """A command line this stand-in cannot run: exit code 2 with the message."""


@dataclass(frozen=True)
class Bind:
    """One `--bind` entry: host `source` at `destination` in the container."""

    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class Invocation:
    """A parsed `apptainer ACTION [OPTIONS] IMAGE [ARGS...]` command line."""

    action: str
    image: Path
    args: tuple[str, ...] = ()
    binds: tuple[Bind, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cleanenv: bool = False
    nv: bool = False
    pwd: str | None = None


def parse_binds(spec: str) -> list[Bind]:
    """`SRC[:DEST[:ro|rw]][,SRC...]` as Apptainer reads `--bind`.

    Raises:
        UsageError: an entry with a bad option or a relative destination.

    Example:
        parse_binds("/scratch,/data:/in:ro")   # [Bind('/scratch', '/scratch'), Bind('/data', '/in', True)]
    """
    binds = []
    for entry in filter(None, spec.split(",")):
        parts = entry.split(":")
        if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(f"--bind {entry!r}: expected SRC[:DEST[:ro|rw]]")
        source = parts[0]
        destination = parts[1] if len(parts) > 1 and parts[1] else source
        if not os.path.isabs(destination):
            raise UsageError(f"--bind {entry!r}: the destination must be an absolute path")
        binds.append(Bind(os.path.abspath(source), os.path.normpath(destination), len(parts) == 3 and parts[2] == "ro"))
    return binds


def parse_command_line(argv: list[str]) -> Invocation:
    """`ACTION [OPTIONS] IMAGE [ARGS...]` (argv without the program name) as one Invocation.

    Raises:
        UsageError: a bad --env, --bind, or exec without a command (argparse's own errors exit 2).

    Example:
        parse_command_line(["run", "--bind", "/scratch", "build/image", "train", "-u", "s.py"]).args
        # ('train', '-u', 's.py')
    """
    parser = argparse.ArgumentParser(prog="apptainer", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "exec", "test"))
    parser.add_argument("--bind", "-B", action="append", default=[], metavar="SRC[:DEST[:ro]]")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--cleanenv", "-e", action="store_true")
    parser.add_argument("--nv", action="store_true")
    parser.add_argument("--pwd", metavar="DIR")
    parser.add_argument("image", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    env = {}
    for item in options.env:
        name, sep, value = item.partition("=")
        if not sep or not NAME.fullmatch(name):
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    if options.action == "exec" and not options.args:
        raise UsageError("exec: no command after the image")
    binds = [bind for spec in options.bind for bind in parse_binds(spec)]
    return Invocation(options.action, options.image, tuple(options.args), tuple(binds), env, options.cleanenv,
                      options.nv, options.pwd)


def is_sandbox(path: Path) -> bool:
    """A root folder Apptainer runs as an image: it has /.singularity.d."""
    return (path / ".singularity.d").is_dir()


def _inside(path: str, root: Path) -> Path:
    return root / path.lstrip("/")


def _image_mounts(root: Path, made: set[str]) -> list[str]:
    """bwrap arguments showing the image read-only under a tmpfs `/`: each top-level entry bound on its own, so that
    bind points the image lacks can be created (in the tmpfs). A folder holding such a point (`made`) becomes a
    tmpfs of its own whose entries are bound one by one, down to the point."""
    arguments: list[str] = []

    def mount(relative: str) -> None:
        for entry in sorted(os.scandir(_inside(relative, root)), key=lambda e: e.name):
            path = f"{relative.rstrip('/')}/{entry.name}"
            if relative == "/" and entry.name in NOT_FROM_IMAGE:
                continue
            if entry.is_symlink():
                arguments.extend(["--symlink", os.readlink(entry.path), path])
            elif entry.is_dir() and path in made:
                arguments.extend(["--tmpfs", path])
                mount(path)
            else:
                arguments.extend(["--ro-bind", entry.path, path])

    mount("/")
    return arguments


def _folders_to_open(root: Path, destinations: list[str]) -> set[str]:
    """The image folders that must become writable tmpfs layers so that every destination can be created."""
    opened: set[str] = set()
    for destination in destinations:
        if _inside(destination, root).exists() or _inside(destination, root).is_symlink():
            continue
        parent = os.path.dirname(destination)
        while parent != "/" and not _inside(parent, root).is_dir():
            parent = os.path.dirname(parent)
        while parent != "/":
            opened.add(parent)
            parent = os.path.dirname(parent)
    return opened


def _environment(invocation: Invocation, host: dict[str, str]) -> dict[str, str]:
    """The command's environment before %environment is sourced; the forced values (APPTAINERENV_, --env) are also
    kept as APPTAINERENV_NAME, their names in APPTAINER_FORCED_NAMES, for SOURCE_ENVIRONMENT to set them again."""
    if invocation.cleanenv:
        env = {name: host[name] for name in KEPT_BY_CLEANENV if name in host}
    else:
        env = {name: value for name, value in host.items()
               if name not in ("PATH", "LD_LIBRARY_PATH") and not name.startswith(("APPTAINERENV_", "SINGULARITYENV_"))}
    forced: dict[str, str] = {}
    for prefix in ("SINGULARITYENV_", "APPTAINERENV_"):
        forced.update({name[len(prefix):]: value for name, value in host.items()
                       if name.startswith(prefix) and NAME.fullmatch(name[len(prefix):])})
    forced.update(invocation.env)
    env.update(forced)
    env.update({f"APPTAINERENV_{name}": value for name, value in forced.items()})
    image = invocation.image.resolve()
    env.update({FORCED: " ".join(sorted(forced)), "PATH": CONTAINER_PATH, "APPTAINER_CONTAINER": str(image),
                "APPTAINER_NAME": image.name})
    return env


def _binds_cwd(cwd: str) -> bool:
    """Apptainer binds the current directory unless it is / or a system folder."""
    return cwd not in CWD_NOT_BOUND and not any(cwd == top or cwd.startswith(top + "/") for top in CWD_UNDER_NOT_BOUND)


def bwrap_command(invocation: Invocation, host: dict[str, str], cwd: str) -> tuple[list[str], dict[str, str]]:
    """The bubblewrap command line and environment that run `invocation` (a sandbox image) as Apptainer would.

    Args:
        invocation: the parsed command line (its image a sandbox: is_sandbox).
        host: this process's environment (os.environ).
        cwd: the current directory, bound unless covered by another bind or a system folder.

    Raises:
        UsageError: a --bind source that does not exist, or no bwrap on host's PATH.

    Example:
        command, env = bwrap_command(parse_command_line(["run", "build/image", "--help"]), dict(os.environ), "/w")
        subprocess.run(command, env=env)
    """
    root = invocation.image.resolve()
    home = host.get("HOME", "/root")
    defaults = [Bind("/tmp", "/tmp"), Bind("/var/tmp", "/var/tmp"), Bind(home, home)]
    covered = [bind.destination for bind in defaults + list(invocation.binds)]
    if not any(cwd == path or cwd.startswith(path.rstrip("/") + "/") for path in covered) and _binds_cwd(cwd):
        defaults.append(Bind(cwd, cwd))
    binds = [bind for bind in defaults if os.path.isdir(bind.source)] + list(invocation.binds)
    for bind in invocation.binds:
        if not os.path.exists(bind.source):
            raise UsageError(f"--bind {bind.source}: no such file or folder on the host")
    made = _folders_to_open(root, [bind.destination for bind in binds])
    arguments = ["--tmpfs", "/", *_image_mounts(root, made), "--proc", "/proc", "--dev", "/dev",
                 "--ro-bind", "/sys", "/sys"]
    for path in HOST_FILES:
        if os.path.isfile(path) and _inside(path, root).is_file() and not _inside(path, root).is_symlink():
            arguments.extend(["--ro-bind", path, path])
    for bind in binds:
        arguments.extend(["--ro-bind" if bind.read_only else "--bind", bind.source, bind.destination])
    for opened in ["/", *sorted(made)]:  # the layers made to hold bind points: read-only, as the image is
        arguments.extend(["--remount-ro", opened])
    arguments.extend(["--chdir", invocation.pwd or cwd])
    command = {"run": ["/.singularity.d/runscript", *invocation.args],
               "exec": list(invocation.args),
               "test": ["/.singularity.d/test"]}[invocation.action]
    bwrap = shutil.which("bwrap", path=host.get("PATH"))
    if bwrap is None:
        raise UsageError("bwrap not found: apt-get install bubblewrap")
    return [bwrap, *arguments, "/bin/sh", "-c", SOURCE_ENVIRONMENT, "sh", *command], _environment(invocation, host)


def _become_subreaper() -> None:
    """Orphaned descendants (the command, once bubblewrap is gone) are reparented to this process, not to init."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _terminal_sent_it() -> bool:
    """Whether this process is in its terminal's foreground process group (the command is too: a terminal signal
    reached both)."""
    for stream in (sys.stdin, sys.stderr):
        try:
            if stream is not None and os.isatty(stream.fileno()):
                return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
        except (OSError, ValueError):
            continue
    return False


def _exit_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N when killed by signal N."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Runs bwrap `command`, forwarding signals to the process it starts; returns that process's exit status
    (128+N when it is killed by signal N, as a shell reports it).

    Under Slurm a `scancel` sends TERM to every process of the job, bubblewrap included, which dies of it (it
    handles no signal) while the command inside goes on to checkpoint. This process is therefore a child
    subreaper: the command is reparented to it, and its own exit status is the one returned."""
    child: list[int] = []
    pending: list[int] = []

    def forward(number: int, _frame: object) -> None:
        if number == signal.SIGINT and _terminal_sent_it():
            return  # Ctrl-C reached the command already: a second INT would cut its KeyboardInterrupt handling
        if child:
            try:
                os.kill(child[0], number)
            except ProcessLookupError:
                pass
        else:
            pending.append(number)

    for number in FORWARDED_SIGNALS:
        signal.signal(number, forward)
    _become_subreaper()
    read_end, write_end = os.pipe()
    bwrap = subprocess.Popen([command[0], "--info-fd", str(write_end), *command[1:]], env=env,
                             pass_fds=(write_end,)).pid
    os.close(write_end)
    with os.fdopen(read_end) as info:
        text = info.read()
    try:
        child.append(int(json.loads(text)["child-pid"]))
    except (ValueError, KeyError):
        pass  # bwrap failed before starting the command: its own message is on stderr
    for waiting in pending:
        forward(waiting, None)
    result = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == bwrap:
            result = _exit_status(status)
            if os.WIFEXITED(status) or not child:
                break  # bubblewrap reaped the command and passed its status on (or never started it)
        elif child and pid == child[0]:
            result = _exit_status(status)  # bubblewrap was killed: the command, reparented here, ended
            break
    return 1 if result is None else result


def main(argv: list[str] | None = None) -> int:
    try:
        invocation = parse_command_line(sys.argv[1:] if argv is None else argv)
        if not is_sandbox(invocation.image):
            raise UsageError(f"{invocation.image}: not a sandbox image (a root folder with /.singularity.d); "
                             "build one with tools/image/build.py")
        command, env = bwrap_command(invocation, dict(os.environ), os.getcwd())
    except UsageError as error:
        print(f"apptainer (sandbox stand-in): {error}", file=sys.stderr)
        return 2
    if invocation.nv:
        print("apptainer (sandbox stand-in): --nv: no GPU is passed into the sandbox; the command runs on the CPU",
              file=sys.stderr)
    return run_forwarding_signals(command, env)


if __name__ == "__main__":
    sys.exit(main())
