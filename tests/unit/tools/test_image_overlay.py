"""tools/image/overlay.py: a build over a kept root writes through an overlay, so the kept root's files (shared by
hard links) are never written, and the writes are folded back into a plain folder. Needs root and the kernel's
overlay file system (as `make image` does)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO, require_real_part

sys.path.insert(0, str(REPO / "tools" / "image"))
import overlay  # noqa: E402  (tools/image is not a package)


@pytest.fixture
def linked(tmp_path):
    """A 'kept' root and a tree of hard links to it, as a build from the cache starts."""
    require_real_part(overlay.unavailable(tmp_path / "probe"))
    kept = tmp_path / "kept"
    for folder in ("var/log", "usr/lib/pkg", "usr/share/doc", "etc/gone", "etc/remade", "srv/was_folder"):
        (kept / folder).mkdir(parents=True)
    (kept / "var/log/dpkg.log").write_text("installed a\n")
    (kept / "usr/lib/pkg/module.py").write_text("old\n")
    (kept / "usr/lib/pkg/tool").write_text("#!/bin/sh\n")
    (kept / "usr/lib/pkg/untouched.py").write_text("same\n")
    (kept / "srv/was_file").write_text("f\n")
    (kept / "srv/was_folder/inside").write_text("i\n")
    (kept / "etc/gone/file").write_text("x\n")
    (kept / "etc/remade/stale").write_text("x\n")
    (kept / "etc/link").symlink_to("gone/file")
    root = tmp_path / "root"
    subprocess.run(["cp", "-al", f"{kept}/.", str(root)], check=True)
    return kept, root


@pytest.mark.claim("`make image` from a kept root links its files and writes through an overlay: the kept root and "
                   "the images sharing its files are never written, whatever %post does")
def test_writes_through_the_overlay_are_folded_into_the_root_and_the_kept_files_are_not_written(linked, tmp_path):
    kept, root = linked
    said = []
    with overlay.copy_on_write(root, tmp_path / "layers", say=said.append) as merged:
        with open(merged / "var/log/dpkg.log", "a") as log:  # an append in place, as apt's logs are written
            log.write("installed b\n")
        os.unlink(merged / "usr/lib/pkg/module.py")  # pip: unlink, then write
        (merged / "usr/lib/pkg/module.py").write_text("new\n")
        os.chmod(merged / "usr/lib/pkg/tool", 0o755)  # a mode changed in place
        subprocess.run(["rm", "-r", str(merged / "etc/gone"), str(merged / "etc/link")], check=True)
        subprocess.run(["rm", "-r", str(merged / "etc/remade")], check=True)
        (merged / "etc/remade").mkdir()  # a folder removed and made again: opaque
        (merged / "etc/remade/fresh").write_text("y\n")
        (merged / "opt/new").mkdir(parents=True)
        (merged / "opt/new/file").write_text("z\n")
        (merged / "etc/link").symlink_to("remade/fresh")
        os.chmod(merged / "usr/share/doc", 0o700)  # a folder's mode changed: copied up, folded as metadata
        os.unlink(merged / "srv/was_file")
        (merged / "srv/was_file").mkdir()  # a file replaced by a folder, and the other way round
        subprocess.run(["rm", "-r", str(merged / "srv/was_folder")], check=True)
        (merged / "srv/was_folder").write_text("now a file\n")
        os.link(merged / "opt/new/file", merged / "opt/new/second_name")  # a hard link made inside the image

    assert (root / "var/log/dpkg.log").read_text() == "installed a\ninstalled b\n"
    assert (root / "usr/lib/pkg/module.py").read_text() == "new\n"
    assert os.stat(root / "usr/lib/pkg/tool").st_mode & 0o777 == 0o755
    assert not (root / "etc/gone").exists()
    assert sorted(path.name for path in (root / "etc/remade").iterdir()) == ["fresh"]
    assert (root / "opt/new/file").read_text() == "z\n"
    assert os.readlink(root / "etc/link") == "remade/fresh" and (root / "etc/link").read_text() == "y\n"
    assert os.stat(root / "usr/share/doc").st_mode & 0o777 == 0o700
    assert (root / "srv/was_file").is_dir() and (root / "srv/was_folder").read_text() == "now a file\n"
    assert os.path.samefile(root / "opt/new/file", root / "opt/new/second_name")
    # the kept root is as it was: every write went to the overlay, not through the shared links
    assert (kept / "var/log/dpkg.log").read_text() == "installed a\n"
    assert (kept / "usr/lib/pkg/module.py").read_text() == "old\n"
    assert os.stat(kept / "usr/lib/pkg/tool").st_mode & 0o777 == 0o644
    assert (kept / "etc/gone/file").exists() and (kept / "etc/remade/stale").exists()
    assert os.stat(kept / "usr/share/doc").st_mode & 0o777 == 0o755
    assert (kept / "srv/was_file").is_file() and (kept / "srv/was_folder/inside").is_file()
    # what was not written is still shared (not copied); no overlay mark, mount or layer is left
    assert os.path.samefile(root / "usr/lib/pkg/untouched.py", kept / "usr/lib/pkg/untouched.py")
    assert os.stat(root / "usr/lib/pkg/module.py").st_nlink == 1
    assert os.stat(kept / "etc/gone/file").st_nlink == 1  # its link in root was removed, the file kept
    marks = [path for path in root.rglob("*") if not path.is_symlink() and overlay._overlay_marks(path)]
    assert marks == [] and overlay.mounts_under(tmp_path) == [] and not (tmp_path / "layers").exists()
    assert len(said) == 1 and said[0].startswith("the overlay's ") and "changed entries folded into root" in said[0]


def test_a_failed_build_step_leaves_the_root_and_the_kept_files_as_they_were(linked, tmp_path):
    kept, root = linked
    held = []
    with pytest.raises(RuntimeError, match="step failed"):  # the step's error, not the busy overlay's
        with overlay.copy_on_write(root, tmp_path / "layers") as merged:
            held.append(open(merged / "var/log/dpkg.log", "a"))  # a process of the step still holds a file
            held[0].write("installed b\n")
            raise RuntimeError("step failed")
    held[0].close()
    assert (root / "var/log/dpkg.log").read_text() == "installed a\n"
    assert os.path.samefile(root / "var/log/dpkg.log", kept / "var/log/dpkg.log")
    assert overlay.mounts_under(tmp_path) == [] and not (tmp_path / "layers").exists()


def test_a_killed_builds_overlay_is_found_under_its_folder(linked, tmp_path):
    _, root = linked
    merged = overlay._mount(root, tmp_path / "killed build" / "layers")  # a path with a space: \040 in the table
    try:
        assert overlay.mounts_under(tmp_path / "killed build") == [merged]
    finally:
        overlay.unmount(merged)
    assert overlay.mounts_under(tmp_path) == []


def test_a_build_removes_its_own_leftovers_and_not_another_targets_build(linked, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("image_build", REPO / "tools" / "image" / "build.py")
    builder = importlib.util.module_from_spec(spec)  # not `import build`: PyPI's `build` may be installed
    monkeypatch.setitem(sys.modules, "image_build", builder)
    spec.loader.exec_module(builder)
    _, root = linked
    killed = overlay._mount(root, tmp_path / ".image.layers-999999999")  # a killed build's overlay, still mounted
    for name in (".image.building-999999999", ".image.building-999999999.probe", ".image.gpu.building-1",
                 ".image.replaced-7", ".images.building-3"):
        (tmp_path / name).mkdir()
    builder.remove_leftovers(tmp_path / "image")
    assert overlay.mounts_under(tmp_path) == [] and not killed.exists()
    assert sorted(path.name for path in tmp_path.glob(".*")) == [".image.gpu.building-1", ".images.building-3"]
