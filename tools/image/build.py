#!/usr/bin/env python3
"""Builds an Apptainer recipe with `Bootstrap: debootstrap` into a sandbox image (a root folder), as
`apptainer build --sandbox ROOT RECIPE` runs its sections, where Apptainer is not installed.

The steps, each timed on one line:
1. the recipe is read with spython (tools/image/recipe.py), build arguments substituted; every `%files` source is
   checked before anything is downloaded;
2. `debootstrap --variant=minbase --include=<Include:> <OSVersion:> <MirrorURL:>` (root needed, as for Apptainer
   without --fakeroot); the bare system is kept in the cache (below) and copied by later builds;
3. `%files` copied from the current directory as Apptainer copies them (`cp -fLr`: relative sources read from
   it, glob patterns expanded, symbolic links followed; the destination's links resolved inside the image);
4. `%post` run by `/bin/sh -e` inside the root as root, with a clean environment (%environment not sourced, and
   `$APPTAINER_ENVIRONMENT` a file it may append exports to), the network, /sys, /etc/hosts and /etc/resolv.conf
   shared, and this host's CA certificates bound read-only for its downloads (a proxy re-signing TLS needs them;
   they are not kept in the image);
5. `/.singularity.d/` written as Apptainer lays it out: `env/90-environment.sh` (%environment), `runscript`,
   `startscript`, `test`, `runscript.help`, `labels.json`, `Singularity` (the recipe), and the `/singularity` link;
6. `%test` run in the image (tools/image/apptainer.py test --cleanenv).
The root is built beside ROOT under a temporary name and renamed to ROOT only once every step passed, after a
sync: an interrupted or failed build never leaves a root that later runs would use. One build of ROOT at a time
(a lock file beside it; a second one exits 2 at once), which removes what interrupted builds left. `%setup` (a
script run on the build host) is refused. Exit 2 for a bad recipe or command line (one line), 1 for a failed step
(with the tail of its output).

The cache (`--cache DIR`; default `$EM_IMAGE_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/experiments_manager/image`,
outside any checkout so that a fresh clone on the same machine finds it; `--no-cache`: none) keeps:
- the bare debootstrap roots, keyed by the debootstrap command;
- with `--cache-key FILE` (repeatable: the files %post's result depends on besides the recipe, e.g. the pinned
  constraints), the root as %post left it, less what %files copied, keyed by the recipe (build arguments
  substituted) and those files' bytes. A later build with the same key starts from it instead of debootstrap,
  copies %files, runs %post again and %test, as `apptainer build --update` runs a recipe over an existing sandbox:
  %post must be safe to run twice (the project's is: pip reinstalls the package from its folder and finds every
  pinned dependency installed). It starts from hard links to the kept root's files, with every later step writing
  through an overlay (overlay.py: seconds, and only the space of what %post changes; the kept root is never
  written), or from a copy of it where the cache is on another file system or no overlay can be mounted. A changed
  recipe or key file is a new key, a full build. The newest `KEPT_ROOTS` such roots are kept.

Example:
    sudo .venv/bin/python tools/image/build.py install/experiments_manager_debian.def build/image \\
        --build-arg CUDA_WHEELS=no --cache-key install/constraints.txt --force
    tools/image/apptainer.py run build/image --help
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apptainer import CONTAINER_PATH  # noqa: E402  (tools/image is not a package)
from overlay import (OverlayError, copy_on_write, mounts_under, remove_entry, unavailable,  # noqa: E402
                     unmount)

try:
    from recipe import Recipe, RecipeError, read_recipe  # noqa: E402  (tools/image is not a package)
except ModuleNotFoundError as missing:  # spython: in the project's venv (the test extra); said after --help
    SPYTHON_MISSING: str | None = str(missing.name)

    class RecipeError(ValueError):  # type: ignore[no-redef]
        pass
else:
    SPYTHON_MISSING = None

HERE = Path(__file__).resolve().parent
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PASSED_TO_POST = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
PLACEHOLDERS = ("etc/hosts", "etc/resolv.conf")  # bind points Apptainer creates in every image
POST_ENVIRONMENT = "/.singularity.d/env/91-environment.sh"  # $APPTAINER_ENVIRONMENT during %post
MAX_LINKS = 40  # symbolic links followed when resolving a path inside the image
TAIL_LINES = 20
KEPT_ROOTS = 2  # built roots kept in the cache (each a few GB), the most recently used first
CACHE_VARIABLE = "EM_IMAGE_CACHE"


def default_cache() -> Path:
    """Where builds keep their cache unless told otherwise: `$EM_IMAGE_CACHE`, else
    `${XDG_CACHE_HOME:-~/.cache}/experiments_manager/image` (outside the checkout: a fresh clone reuses it).

    Example:
        default_cache()   # /root/.cache/experiments_manager/image, as root without EM_IMAGE_CACHE
    """
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "experiments_manager", "image").absolute()


class BuildError(RuntimeError):
    """A step that failed: exit code 1 with the message."""


def _say(message: str) -> None:
    print(f"[build_image] {message}", flush=True)


def _timed(name: str, step: Callable[[], str | None]) -> None:
    start = time.monotonic()
    how = step()
    _say(f"{name}{f' ({how})' if how else ''}: {time.monotonic() - start:.1f} s")


def _tail(text: str | None) -> list[str]:
    return (text or "").splitlines()[-TAIL_LINES:]


def _run(command: list[str], what: str, log: Path | None = None, **kwargs: object) -> None:
    """Runs `command`; a failure raises BuildError with the tail of what it printed (when captured) and of `log`."""
    result = subprocess.run(command, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = _tail(getattr(result, "stdout", None)) + _tail(getattr(result, "stderr", None))
        if log is not None and log.is_file():
            tail += [f"--- the end of {log}:", *_tail(log.read_text(errors="replace"))]
        raise BuildError("\n".join([*tail, f"{what} failed with exit code {result.returncode}"]))


@contextlib.contextmanager
def _locked(lock: Path, wait: bool) -> Iterator[None]:
    """Holds an exclusive lock on `lock` (created); without `wait`, another holder is a RecipeError (exit 2)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            raise RecipeError(f"{lock}: another build holds it (pid {handle.read().strip() or '?'}): wait for it to "
                              "end") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def _sources(pattern: str, context: Path) -> list[str]:
    """A %files source as Apptainer expands it: a glob pattern, relative to `context`."""
    return sorted(glob.glob(pattern if os.path.isabs(pattern) else str(context / pattern)))


def check_recipe(recipe: Recipe, context: Path) -> None:
    """What can be checked before downloading anything: the bootstrap agent, the header and the %files sources.

    Args:
        recipe: the recipe read by read_recipe.
        context: the folder relative %files sources are read from (the current directory of the build).

    Raises:
        RecipeError: one line naming the recipe.

    Example:
        check_recipe(read_recipe("install/experiments_manager_debian.def"), Path.cwd())
    """
    if recipe.bootstrap != "debootstrap":
        raise RecipeError(f"{recipe.path}: Bootstrap: {recipe.bootstrap}: this builder makes debootstrap roots only "
                          "(Docker Hub is not reachable from it); build install/experiments_manager_debian.def, "
                          "or this recipe with apptainer build")
    if recipe.setup:
        raise RecipeError(f"{recipe.path}: %setup: not supported by this builder (it would run on this host as "
                          "root); use %files or %post")
    for key in ("OSVersion", "MirrorURL"):
        if not recipe.header.get(key):
            raise RecipeError(f"{recipe.path}: header {key}: missing (expected e.g. OSVersion: bookworm)")
    missing = [source for source, _ in recipe.files if not _sources(source, context)]
    if missing:
        raise RecipeError(f"{recipe.path}: %files: {', '.join(missing)}: not found in {context} "
                          "(sources are relative to the folder the build runs in)")


def _debootstrap_command(recipe: Recipe, target: Path) -> list[str]:
    include = ",".join(recipe.header.get("Include", "").split())
    return ["debootstrap", "--variant=minbase", *([f"--include={include}"] if include else []),
            recipe.header["OSVersion"], str(target), recipe.header["MirrorURL"]]


def _debootstrap(recipe: Recipe, target: Path) -> None:
    _run(_debootstrap_command(recipe, target), "debootstrap", log=target / "debootstrap" / "debootstrap.log",
         capture_output=True, text=True)


def bootstrap(recipe: Recipe, target: Path, cache: Path | None) -> str:
    """A minimal Debian in `target` (debootstrap), copied from `cache` when it holds one made with the same command.

    Args:
        recipe: its header gives OSVersion, MirrorURL and Include.
        target: the root folder to fill (it need not exist).
        cache: a folder keeping bare roots between builds, or None (`--no-cache`). Builds sharing it wait for each
            other while one fills it.

    Returns:
        how: 'downloaded', 'downloaded into the cache' or 'copied from the cache'.

    Raises:
        BuildError: debootstrap failed; the message ends with its output's and its log's last lines.

    Example:
        bootstrap(read_recipe("install/experiments_manager_debian.def"), Path("/tmp/root"), default_cache())
    """
    if cache is None:
        _debootstrap(recipe, target)
        return "downloaded"
    key = hashlib.sha256(" ".join(_debootstrap_command(recipe, Path("ROOT"))).encode()).hexdigest()[:16]
    cached = cache / f"debootstrap-{recipe.header['OSVersion']}-{key}"
    with _locked(cache / f".{cached.name}.lock", wait=True):
        how = "copied from the cache"
        if not cached.is_dir():
            remove_leftovers(cached)
            partial = cached.with_name(f".{cached.name}.building-{os.getpid()}")
            _debootstrap(recipe, partial)
            os.sync()
            partial.rename(cached)
            how = "downloaded into the cache"
    _run(["cp", "-a", "--reflink=auto", f"{cached}/.", str(target)], "copying the cached debootstrap root")
    return how


def root_cache_key(recipe: Recipe, key_files: list[Path]) -> str:
    """The key of the root %post leaves: the recipe as read (build arguments substituted) and the key files' bytes.

    Example:
        root_cache_key(read_recipe("install/experiments_manager_debian.def"), [Path("install/constraints.txt")])
    """
    digest = hashlib.sha256()
    recipe_fields = {"bootstrap": recipe.bootstrap, "header": recipe.header, "arguments": recipe.arguments,
                     **recipe.body()}
    digest.update(json.dumps(recipe_fields, sort_keys=True).encode())
    for path in key_files:
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _cached_root(cache: Path, key: str) -> Path:
    return cache / f"root-{key}"


@dataclasses.dataclass(frozen=True)
class CachedStart:
    """How a build started from a kept root.

    Args:
        key: the kept root's key.
        linked: True: the partial root holds hard links to the kept root's files, and every later step must write
            through copy_on_write; False: it holds a copy.
        why_copied: why it could not be linked (another file system, no overlay), for the log; default "".
    """

    key: str
    linked: bool
    why_copied: str = ""

    def __str__(self) -> str:
        if self.linked:
            return f"linked from the cache, key {self.key}, the build writing through an overlay: debootstrap skipped"
        why = f" ({self.why_copied})" if self.why_copied else ""
        return f"copied from the cache, key {self.key}{why}: debootstrap skipped"


def _why_not_linked(cached: Path, target: Path) -> str | None:
    if os.stat(cached).st_dev != os.stat(target.parent).st_dev:
        return "the cache is on another file system than the image"
    why = unavailable(target.with_name(f"{target.name}.probe"))  # target: .ROOT.building-PID, a leftover's name
    return f"no overlay: {why}" if why else None


def start_from_cached_root(cached: Path, target: Path) -> CachedStart | None:
    """Fills `target` from a cached root (what %post left, less %files' copies), holding the entry's lock: hard links
    to its files where an overlay can take the build's writes (copy_on_write), else a copy.

    Args:
        cached: the cache's entry (`root-<key>`).
        target: the partial root to fill (made here).

    Returns:
        how it started, for the build's steps and its log; None when the entry is gone (another build removed it as
        the oldest), nothing made: the build starts from debootstrap.

    Example:
        start_from_cached_root(default_cache() / "root-75f85824de895030", Path("build/.image.building-1"))
    """
    key = cached.name.removeprefix("root-")
    with _locked(cached.with_name(f".{cached.name}.lock"), wait=True):
        if not cached.is_dir():
            return None
        os.utime(cached)  # the most recently used: kept longest
        why_copied = _why_not_linked(cached, target)
        if why_copied is None:
            try:
                _run(["cp", "-al", f"{cached}/.", str(target)], "linking", capture_output=True, text=True)
                return CachedStart(key, linked=True)
            except BuildError as error:  # e.g. two mounts of one file system: EXDEV
                why_copied = f"hard links refused: {str(error).splitlines()[0].rsplit(': ', 1)[-1]}"  # cp's reason
                shutil.rmtree(target, ignore_errors=True)
        try:
            _run(["cp", "-a", "--reflink=auto", f"{cached}/.", str(target)], "copying the cached root",
                 capture_output=True, text=True)
        except BuildError as error:
            if "No space left on device" not in str(error):
                raise
            raise BuildError(f"copying the cached root {cached} ({why_copied}): no space left in {target.parent} "
                             f"(the root holds {_size(cached) / 1e9:.1f} GB)") from None
    return CachedStart(key, linked=False, why_copied=why_copied)


def keep_root(root: Path, copied: list[Path], cached: Path) -> None:
    """Keeps `root` (built, %test passed) as `cached`, without what %files `copied`.

    The kept root is a tree of hard links to `root`'s files (seconds, no space; a copy where the cache is on another
    file system): nothing rewrites an image's files in place (apptainer.py shows it read-only; a build replacing it
    unlinks them), and a build starting from the kept root writes through an overlay over its links, or copies it
    (start_from_cached_root), so the cache is only ever read.

    Args:
        root: the built root.
        copied: the paths %files copied into it (relative to it): left out, a later build copies its own.
        cached: the cache's entry to make (`root-<key>`); an existing one is kept as it is.

    Example:
        keep_root(Path("build/.image.building-1"), [Path("opt/experiments_manager")],
                  default_cache() / f"root-{root_cache_key(recipe, key_files)}")
    """
    with _locked(cached.with_name(f".{cached.name}.lock"), wait=True):
        if not cached.is_dir():
            remove_leftovers(cached)
            partial = cached.with_name(f".{cached.name}.building-{os.getpid()}")
            linked = os.stat(root).st_dev == os.stat(cached.parent).st_dev  # else another file system: a copy
            _run(["cp", "-al" if linked else "-a", str(root), str(partial)], "keeping the built root in the cache")
            for path in copied:
                remove_entry(partial / path)
            os.sync()
            partial.rename(cached)
        os.utime(cached)  # the most recently used, whatever time the copy kept: kept longest


def forget_old_roots(cache: Path) -> None:
    """Removes the cached roots beyond the KEPT_ROOTS most recently used, not one another build is copying; each is
    renamed aside first, so a removal cut short leaves no half root under a key (remove_leftovers clears it later)."""
    roots = sorted((path for path in cache.glob("root-*") if path.is_dir()),
                   key=lambda path: path.stat().st_mtime, reverse=True)
    for old in roots[KEPT_ROOTS:]:
        try:
            with _locked(old.with_name(f".{old.name}.lock"), wait=False):
                _say(f"removing the cached root {old} (only the newest {KEPT_ROOTS} are kept)")
                aside = old.with_name(f".{old.name}.removing-{os.getpid()}")
                old.rename(aside)
                shutil.rmtree(aside)
        except RecipeError:  # another build copies it now: left for a later build
            pass


def _keep_if_possible(root: Path, copied: list[Path], cached: Path) -> str | None:
    """keep_root, then forget_old_roots; a cache that cannot take it (a full disk) is said, and the build goes on."""
    def brief(error: Exception) -> str:
        return " ".join(str(error).split())[-200:]

    try:
        keep_root(root, copied, cached)
    except (BuildError, OSError) as error:
        shutil.rmtree(cached.with_name(f".{cached.name}.building-{os.getpid()}"), ignore_errors=True)
        return f"not kept: {brief(error)}"
    try:
        forget_old_roots(cached.parent)
    except OSError as error:
        return f"kept; older roots not removed: {brief(error)}"
    return None


def resolve_in_root(root: Path, path: str) -> Path:
    """`path` as the image sees it: its symbolic links followed inside `root`, never out to this host.

    Example:
        resolve_in_root(Path("build/image"), "/var/run/x")   # build/image/run/x (the image's var/run -> /run)
    """
    resolved: list[str] = []
    pending = [part for part in path.split("/") if part not in ("", ".")]
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise BuildError(f"{path}: more than {MAX_LINKS} symbolic links in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [piece for piece in target.split("/") if piece not in ("", ".")] + pending
        else:
            resolved.append(part)
    return root.joinpath(*resolved)


def copy_files(recipe: Recipe, root: Path, context: Path) -> list[Path]:
    """%files as Apptainer copies them: `cp -fLr SOURCE DESTINATION` for each match of each source pattern.

    Args:
        recipe: gives the (source, destination) pairs.
        root: the image's root folder; destinations are resolved inside it (resolve_in_root), parents created.
        context: the folder relative sources are read from.

    Returns:
        what the copies made, relative to `root`: the destination, or the match's name inside it where the
        destination was a folder already.

    Example:
        copy_files(read_recipe("install/experiments_manager_debian.def"), Path("/tmp/root"), Path.cwd())
    """
    made = []
    for source, destination in recipe.files:
        target = resolve_in_root(root, destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        for match in _sources(source, context):
            made.append((target / os.path.basename(match) if target.is_dir() else target).relative_to(root))
            _run(["cp", "-fLr", match, str(target)], f"%files: copying {source}", capture_output=True, text=True)
    for placeholder in PLACEHOLDERS:
        path = root / placeholder
        if not path.exists() and not path.is_symlink():
            path.touch()
    return made


def run_post(recipe: Recipe, root: Path) -> None:
    """%post as Apptainer runs it: `/bin/sh -e` as root inside the image, clean environment, the host's network.

    Args:
        recipe: gives the script.
        root: the image's root folder (written to).

    Raises:
        BuildError: the script failed (its output went to this process's stdout and stderr as it ran).

    Example:
        run_post(read_recipe("install/experiments_manager_debian.def"), Path("/tmp/root"))
    """
    script = root / ".post.script"
    script.write_text("\n".join(recipe.post) + "\n")
    (root / POST_ENVIRONMENT.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", "APPTAINER_ROOTFS": "/",
           "APPTAINER_ENVIRONMENT": POST_ENVIRONMENT}
    env.update({name: os.environ[name] for name in PASSED_TO_POST if name in os.environ})
    binds = ["--ro-bind", "/sys", "/sys"]
    for path in ("/etc/resolv.conf", "/etc/hosts", str(HOST_CA_BUNDLE)):
        if os.path.isfile(path):
            binds += ["--ro-bind", path, path]
    try:
        _run(["bwrap", "--bind", str(root), "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *binds,
              "--die-with-parent", "--chdir", "/", "/bin/sh", "-e", "/.post.script"], "%post", env=env)
    finally:
        script.unlink()


def write_metadata(recipe: Recipe, root: Path) -> None:
    """/.singularity.d as Apptainer writes it for a sandbox."""
    meta = root / ".singularity.d"
    (meta / "env").mkdir(parents=True, exist_ok=True)
    scripts = {"env/90-environment.sh": recipe.environment, "runscript": recipe.runscript, "test": recipe.test,
               "startscript": recipe.startscript}
    for name, lines in scripts.items():
        path = meta / name
        path.write_text("#!/bin/sh\n" + "".join(f"{line}\n" for line in lines))
        path.chmod(0o755)
    (meta / "runscript.help").write_text("".join(f"{line}\n" for line in recipe.help))
    labels = {**recipe.labels, "org.label-schema.usage.apptainer.deffile.bootstrap": recipe.bootstrap,
              "org.label-schema.build-arguments": " ".join(f"{k}={v}" for k, v in sorted(recipe.arguments.items()))}
    (meta / "labels.json").write_text(json.dumps(labels, indent=4) + "\n")
    shutil.copyfile(recipe.path, meta / "Singularity")
    link = root / "singularity"
    if not link.is_symlink():
        link.symlink_to(".singularity.d/runscript")


def run_test(root: Path) -> None:
    """%test in the finished image, as `apptainer test` runs it."""
    if (root / ".singularity.d" / "test").read_text().strip() == "#!/bin/sh":
        return
    _run([sys.executable, str(HERE / "apptainer.py"), "test", "--cleanenv", str(root)], "%test")


def remove_leftovers(target: Path) -> None:
    """The partial roots earlier builds of `target` left (called with the build's lock held: none is running):
    `.ROOT.KIND-PID` (a partial root, its overlay's layers, a replaced or removed root) and an overlay probe's
    `.ROOT.building-PID.probe`; another target's (`.image.gpu.building-1` beside `image`) is not one."""
    leftover = re.compile(rf"\.{re.escape(target.name)}\.(building|layers|replaced|removing)-\d+(\.probe)?")
    for partial in target.parent.glob(f".{target.name}.*-*"):
        if not leftover.fullmatch(partial.name):
            continue
        if partial.is_dir() and not partial.is_symlink():
            _say(f"removing {partial} (left by an interrupted build)")
            for point in mounts_under(partial):  # a killed build's overlay
                with contextlib.suppress(OverlayError):
                    unmount(point)
            shutil.rmtree(partial, ignore_errors=True)


def _size(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                total += os.lstat(path).st_size
    return total


def build(recipe: Recipe, target: Path, context: Path, cache: Path | None, force: bool,
          key_files: list[Path] | None = None) -> None:
    """Every step of the module's docstring, `target` replaced only once all passed.

    Args:
        recipe: a debootstrap recipe (check_recipe).
        target: the sandbox root folder to make.
        context: the folder relative %files sources are read from.
        cache: see bootstrap; None for a fresh debootstrap.
        force: replace `target` if it exists.
        key_files: with a cache, the files that key the root %post leaves (root_cache_key); default None: that
            root is neither reused nor kept.

    Raises:
        RecipeError: a recipe this builder cannot build, `target` exists without `force`, another build of it runs.
        BuildError: a step failed.

    Example:
        build(read_recipe("install/experiments_manager_debian.def", {"CUDA_WHEELS": "no"}), Path("build/image"),
              Path.cwd(), default_cache(), force=True, key_files=[Path("install/constraints.txt")])
    """
    check_recipe(recipe, context)
    with _locked(target.with_name(f".{target.name}.lock"), wait=False):
        _build(recipe, target, context, cache, force, key_files or [])


def _build(recipe: Recipe, target: Path, context: Path, cache: Path | None, force: bool,
           key_files: list[Path]) -> None:
    if target.exists() and not force:
        raise RecipeError(f"{target}: exists; --force replaces it")
    remove_leftovers(target)
    partial = target.with_name(f".{target.name}.building-{os.getpid()}")
    layers = target.with_name(f".{target.name}.layers-{os.getpid()}")
    cached = _cached_root(cache, root_cache_key(recipe, key_files)) if cache is not None and key_files else None
    copied: list[Path] = []
    start = time.monotonic()
    try:
        started = start_from_cached_root(cached, partial) if cached is not None else None  # None: no such root
        if started is not None:
            _say(f"cached root ({started}): {time.monotonic() - start:.1f} s")
        else:
            _timed("debootstrap", lambda: bootstrap(recipe, partial, cache))
        linked = started is not None and started.linked
        writing = copy_on_write(partial, layers, say=_say) if linked else contextlib.nullcontext(partial)
        try:
            with writing as root:
                _timed("%files", lambda: copied.extend(copy_files(recipe, root, context)))
                _timed("%post", lambda: run_post(recipe, root))
                write_metadata(recipe, root)
                _timed("%test", lambda: run_test(root))
        except OverlayError as error:
            raise BuildError(str(error)) from None
        if cached is not None and started is None:
            _timed("kept in the cache", lambda: _keep_if_possible(partial, copied, cached))
        os.sync()
        if target.exists():
            old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
            target.rename(old)
            partial.rename(target)
            shutil.rmtree(old)
        else:
            partial.rename(target)
    finally:
        for leftover in (layers, partial):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    _say(f"built {target} ({_size(target) / 1e9:.1f} GB) in {time.monotonic() - start:.0f} s; "
         f"run it with: {HERE / 'apptainer.py'} run {target} --help")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path, help="the .def file (Bootstrap: debootstrap)")
    parser.add_argument("root", type=Path, help="the sandbox folder to build")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for the recipe's %%arguments, as apptainer build --build-arg")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the bare debootstrap roots (and, with --cache-key, built roots) here for later "
                             f"builds (default: ${CACHE_VARIABLE}, else ${{XDG_CACHE_HOME:-~/.cache}}/"
                             "experiments_manager/image)")
    parser.add_argument("--no-cache", action="store_true",
                        help="no cache: debootstrap downloads, nothing is kept (with --cache: an error)")
    parser.add_argument("--cache-key", type=Path, action="append", default=[], metavar="FILE",
                        help="a file the root %%post leaves depends on (e.g. the pinned constraints): with the "
                             "recipe, it keys that root in the cache, which a later build with the same key "
                             "starts from instead of debootstrap (repeatable)")
    parser.add_argument("--force", action="store_true", help="replace ROOT if it exists (once the build passed)")
    options = parser.parse_args(argv)
    if options.no_cache and options.cache is not None:
        parser.error("--no-cache and --cache: choose one")
    if SPYTHON_MISSING:
        print(f"build_image: {SPYTHON_MISSING} not installed: run `make image` (the project's venv has it) or "
              "pip install spython", file=sys.stderr)
        return 2
    try:
        values = {}
        for item in options.build_arg:
            name, sep, value = item.partition("=")
            if not sep:
                raise RecipeError(f"--build-arg {item!r}: expected NAME=VALUE")
            values[name] = value
        recipe = read_recipe(options.recipe, values)
        missing = [tool for tool in ("debootstrap", "bwrap") if shutil.which(tool) is None]
        if missing:
            raise RecipeError(f"{', '.join(missing)} not found: apt-get install debootstrap bubblewrap")
        if os.geteuid() != 0:
            raise RecipeError("needs root (debootstrap and %post run as root, as apptainer build without --fakeroot)")
        unreadable = [str(path) for path in options.cache_key if not path.is_file()]
        if unreadable:
            raise RecipeError(f"--cache-key {', '.join(unreadable)}: no such file")
        cache = None if options.no_cache else (options.cache or default_cache()).absolute()
        build(recipe, options.root.absolute(), Path.cwd(), cache, options.force, options.cache_key)
    except RecipeError as error:
        print(f"build_image: {error}", file=sys.stderr)
        return 2
    except BuildError as error:
        print(f"build_image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
