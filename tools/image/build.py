#!/usr/bin/env python3
"""Builds an Apptainer recipe with `Bootstrap: debootstrap` into a sandbox image (a root folder), as
`apptainer build --sandbox ROOT RECIPE` runs its sections, where Apptainer is not installed.

The steps, each timed on one line:
1. the recipe is read with spython (tools/image/recipe.py), build arguments substituted; every `%files` source is
   checked before anything is downloaded;
2. `debootstrap --variant=minbase --include=<Include:> <OSVersion:> <MirrorURL:>` (root needed, as for Apptainer
   without --fakeroot); with `--cache DIR` the bare system is kept there and copied by later builds;
3. `%files` copied from the current directory (relative sources are read from it, as Apptainer does);
4. `%post` run by `/bin/sh -e` inside the root as root, with a clean environment (%environment not sourced), the
   network shared, and this host's CA certificates bound read-only for its downloads (a proxy re-signing TLS
   needs them; they are not kept in the image);
5. `/.singularity.d/` written as Apptainer lays it out: `env/90-environment.sh` (%environment), `runscript`,
   `test`, `runscript.help`, `labels.json`, `Singularity` (the recipe), and the `/singularity` link;
6. `%test` run in the image (tools/image/apptainer.py test).
The root is built beside ROOT under a temporary name and renamed to ROOT only once every step passed, after a
sync: an interrupted or failed build never leaves a root that later runs would use, and the next build removes
its leftovers. Exit 2 for a bad recipe or command line (one line), 1 for a failed step.

Example:
    sudo .venv/bin/python tools/image/build.py install/experiments_manager_debian.def build/image \\
        --build-arg CUDA_WHEELS=no --cache build/image-cache --force
    tools/image/apptainer.py run build/image --help
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    from recipe import Recipe, RecipeError, read_recipe  # noqa: E402  (tools/image is not a package)
except ModuleNotFoundError as missing:  # spython: in the project's venv (the test extra); said after --help
    SPYTHON_MISSING: str | None = str(missing.name)

    class RecipeError(ValueError):  # type: ignore[no-redef]
        pass
else:
    SPYTHON_MISSING = None

HERE = Path(__file__).resolve().parent
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PASSED_TO_POST = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
PLACEHOLDERS = ("etc/hosts", "etc/resolv.conf")  # bind points Apptainer creates in every image


class BuildError(RuntimeError):
    """A step that failed: exit code 1 with the message."""


def _say(message: str) -> None:
    print(f"[build_image] {message}", flush=True)


def _timed(name: str, step: Callable[[], None]) -> None:
    start = time.monotonic()
    step()
    _say(f"{name}: {time.monotonic() - start:.1f} s")


def _run(command: list[str], what: str, **kwargs: object) -> None:
    result = subprocess.run(command, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = ""
        if getattr(result, "stdout", None):
            tail = "\n" + "\n".join(result.stdout.splitlines()[-20:])
        raise BuildError(f"{what} failed with exit code {result.returncode}{tail}")


def check_recipe(recipe: Recipe, context: Path) -> None:
    """What can be checked before downloading anything: the bootstrap agent and header, and the %files sources."""
    if recipe.bootstrap != "debootstrap":
        raise RecipeError(f"{recipe.path}: Bootstrap: {recipe.bootstrap}: this builder makes debootstrap roots only "
                          "(Docker Hub is not reachable from it); build install/experiments_manager_debian.def, "
                          "or this recipe with apptainer build")
    for key in ("OSVersion", "MirrorURL"):
        if not recipe.header.get(key):
            raise RecipeError(f"{recipe.path}: header {key}: missing (expected e.g. OSVersion: bookworm)")
    missing = [source for source, _ in recipe.files if not (context / source).exists()]
    if missing:
        raise RecipeError(f"{recipe.path}: %files: {', '.join(missing)}: not found in {context} "
                          "(sources are relative to the folder the build runs in)")


def _debootstrap_command(recipe: Recipe, target: Path) -> list[str]:
    include = ",".join(recipe.header.get("Include", "").split())
    return ["debootstrap", "--variant=minbase", *([f"--include={include}"] if include else []),
            recipe.header["OSVersion"], str(target), recipe.header["MirrorURL"]]


def bootstrap(recipe: Recipe, target: Path, cache: Path | None) -> None:
    """A minimal Debian in `target`, from `cache` when it holds one made with the same command."""
    if cache is None:
        _run(_debootstrap_command(recipe, target), "debootstrap", capture_output=True, text=True)
        return
    key = hashlib.sha256(" ".join(_debootstrap_command(recipe, Path("ROOT"))).encode()).hexdigest()[:16]
    cached = cache / f"debootstrap-{recipe.header['OSVersion']}-{key}"
    if not cached.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        remove_leftovers(cached)
        partial = cached.with_name(f".{cached.name}.building-{os.getpid()}")
        _run(_debootstrap_command(recipe, partial), "debootstrap", capture_output=True, text=True)
        os.sync()
        partial.rename(cached)
    _run(["cp", "-a", "--reflink=auto", f"{cached}/.", str(target)], "copying the cached debootstrap root")


def copy_files(recipe: Recipe, root: Path, context: Path) -> None:
    """%files: each source copied to its destination in the image (into it when that is a folder), links kept."""
    for source, destination in recipe.files:
        target = root / destination.lstrip("/")
        if target.is_dir():
            target = target / Path(source).name
        target.parent.mkdir(parents=True, exist_ok=True)
        _run(["cp", "-a", str(context / source), str(target)], f"%files: copying {source}")
    for placeholder in PLACEHOLDERS:
        path = root / placeholder
        if not path.exists() and not path.is_symlink():
            path.touch()


def run_post(recipe: Recipe, root: Path) -> None:
    """%post, as root in the image, with a clean environment and the host's network."""
    script = root / ".post.script"
    script.write_text("\n".join(recipe.post) + "\n")
    env = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", "APPTAINER_ROOTFS": "/"}
    env.update({name: os.environ[name] for name in PASSED_TO_POST if name in os.environ})
    binds = ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    if HOST_CA_BUNDLE.is_file():
        binds += ["--ro-bind", str(HOST_CA_BUNDLE), str(HOST_CA_BUNDLE)]
    try:
        _run(["bwrap", "--bind", str(root), "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *binds,
              "--die-with-parent", "--chdir", "/", "/bin/sh", "-e", "/.post.script"], "%post", env=env)
    finally:
        script.unlink()


def write_metadata(recipe: Recipe, root: Path) -> None:
    """/.singularity.d as Apptainer writes it for a sandbox."""
    meta = root / ".singularity.d"
    (meta / "env").mkdir(parents=True, exist_ok=True)
    scripts = {"env/90-environment.sh": recipe.environment, "runscript": recipe.runscript, "test": recipe.test}
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
    _run([sys.executable, str(HERE / "apptainer.py"), "test", str(root)], "%test")


def remove_leftovers(target: Path) -> None:
    """Partial roots of builds of `target` whose process is gone."""
    for partial in target.parent.glob(f".{target.name}.*-*"):
        pid = partial.name.rpartition("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _say(f"removing {partial} (left by an interrupted build)")
            shutil.rmtree(partial, ignore_errors=True)


def _size(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                total += os.lstat(path).st_size
    return total


def build(recipe: Recipe, target: Path, context: Path, cache: Path | None, force: bool) -> None:
    check_recipe(recipe, context)
    if target.exists() and not force:
        raise RecipeError(f"{target}: exists; --force replaces it")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    partial = target.with_name(f".{target.name}.building-{os.getpid()}")
    start = time.monotonic()
    try:
        _timed("debootstrap" + (" (cached)" if cache else ""), lambda: bootstrap(recipe, partial, cache))
        _timed("%files", lambda: copy_files(recipe, partial, context))
        _timed("%post", lambda: run_post(recipe, partial))
        write_metadata(recipe, partial)
        _timed("%test", lambda: run_test(partial))
        os.sync()
        if target.exists():
            old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
            target.rename(old)
            partial.rename(target)
            shutil.rmtree(old)
        else:
            partial.rename(target)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    _say(f"built {target} ({_size(target) / 1e9:.1f} GB) in {time.monotonic() - start:.0f} s; "
         f"run it with: {HERE / 'apptainer.py'} run {target} --help")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path, help="the .def file (Bootstrap: debootstrap)")
    parser.add_argument("root", type=Path, help="the sandbox folder to build")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for the recipe's %%arguments, as apptainer build --build-arg")
    parser.add_argument("--cache", type=Path, help="keep the bare debootstrap root here for later builds")
    parser.add_argument("--force", action="store_true", help="replace ROOT if it exists (once the build passed)")
    options = parser.parse_args(argv)
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
        build(recipe, options.root.absolute(), Path.cwd(), options.cache and options.cache.absolute(), options.force)
    except RecipeError as error:
        print(f"build_image: {error}", file=sys.stderr)
        return 2
    except BuildError as error:
        print(f"build_image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
