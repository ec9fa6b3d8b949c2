"""Provisioning on real files: fidelity, isolation from the task's files, links, reflinks, refusals.

Reflink success needs a filesystem that can clone (btrfs, XFS with reflink=1). Set
INNOVATOR_REFLINK_DIR to a writable directory on one to run those tests; they are skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_innovator.protected import check_protected, checksum_protected
from pytest_innovator.provision import REFLINK_MIN_BYTES, provision, reflink_supported

Snapshot = dict[str, tuple[Any, ...]]


def snapshot(root: Path) -> Snapshot:
    """Everything provisioning promises to keep: kinds, contents, symlink targets, modes, mtimes."""
    info = os.lstat(root)
    entries: Snapshot = {".": ("dir", stat.S_IMODE(info.st_mode), info.st_mtime_ns)}
    for directory, dir_names, file_names in os.walk(root):
        for name in dir_names + file_names:
            path = Path(directory, name)
            info = os.lstat(path)
            relative = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                entries[relative] = ("symlink", os.readlink(path), info.st_mtime_ns)
            elif stat.S_ISDIR(info.st_mode):
                entries[relative] = ("dir", stat.S_IMODE(info.st_mode), info.st_mtime_ns)
            else:
                contents = path.read_bytes()
                entries[relative] = ("file", contents, stat.S_IMODE(info.st_mode), info.st_mtime_ns)
    return entries


def regular_files(root: Path) -> Iterator[str]:
    for directory, _, file_names in os.walk(root):
        for name in file_names:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(root).as_posix()


def same_inode(a: Path, b: Path) -> bool:
    first, second = os.lstat(a), os.lstat(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def scribble_over(dest: Path, relative_paths: list[str]) -> None:
    """Everything a run might do to its files: chmod, overwrite in place, append, truncate."""
    for relative in relative_paths:
        path = dest / relative
        os.chmod(path, 0o600)
        with open(path, "r+b") as stream:
            stream.write(b"agent was here")
            stream.seek(0, os.SEEK_END)
            stream.write(b"\nmore")
        os.truncate(path, 3)


def make_task_workspace(root: Path) -> Path:
    """A realistic starter workspace: code, configs, a dataset dir, checkpoints, inside symlinks."""
    files = {
        "train.py": b"print('train')\n",
        "configs/base.yaml": b"lr: 0.001\n",
        "data/train.jsonl": b'{"x": 1}\n' * 500,
        "data/eval/held.jsonl": b'{"x": 2}\n' * 50,
        "checkpoints/model.pt": os.urandom(300_000),
        "checkpoints/notes.txt": b"trained for 3 epochs\n",
        "scripts/run.sh": b"#!/bin/sh\npython train.py\n",
    }
    for relative, contents in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents)
    os.chmod(root / "scripts/run.sh", 0o755)
    os.chmod(root / "checkpoints/model.pt", 0o444)
    os.symlink("../configs/base.yaml", root / "scripts/config.yaml")
    os.symlink("data", root / "dataset")
    os.utime(root / "train.py", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    return root


@pytest.fixture
def task_workspace(tmp_path: Path) -> Path:
    return make_task_workspace(tmp_path / "task" / "workspace")


def reflink_dir() -> Path | None:
    """A directory on a filesystem that can clone files, from INNOVATOR_REFLINK_DIR."""
    configured = os.environ.get("INNOVATOR_REFLINK_DIR")
    if configured:
        directory = Path(configured)
        return directory if reflink_supported(directory, directory) else None
    probe_dir = Path(tempfile.gettempdir())
    return probe_dir if reflink_supported(probe_dir, probe_dir) else None


needs_reflink = pytest.mark.skipif(
    reflink_dir() is None,
    reason="no filesystem with reflink here; set INNOVATOR_REFLINK_DIR to a directory on btrfs or XFS (reflink=1)",
)


# ---------------------------------------------------------------------------------------------
# Random small trees


NAMES = st.sampled_from(["a", "b", "c.py", "d.bin", ".hidden", "with space", "ü"])
MTIMES_NS = st.integers(min_value=10**18, max_value=1_800_000_000 * 10**9)
FILES = st.tuples(
    st.just("file"),
    st.sampled_from([0o644, 0o755, 0o600, 0o444]),
    st.binary(max_size=4000),
    MTIMES_NS,
)
TREES = st.recursive(
    FILES,
    lambda children: st.tuples(
        st.just("dir"),
        st.sampled_from([0o755, 0o700, 0o555]),
        st.dictionaries(NAMES, children, max_size=4),
    ),
    max_leaves=12,
)
ROOTS = st.dictionaries(NAMES, TREES, min_size=1, max_size=5)


def build_tree(root: Path, spec: dict[str, Any], directory_modes: list[tuple[Path, int]]) -> None:
    for name, node in spec.items():
        path = root / name
        if node[0] == "file":
            _, mode, contents, mtime_ns = node
            path.write_bytes(contents)
            os.chmod(path, mode)
            os.utime(path, ns=(mtime_ns, mtime_ns))
        else:
            _, mode, children = node
            path.mkdir()
            build_tree(path, children, directory_modes)
            directory_modes.append((path, mode))


def build_random_workspace(root: Path, spec: dict[str, Any], data: st.DataObject) -> None:
    """The tree of ``spec`` plus a few symlinks to entries inside it (some dangling)."""
    directory_modes: list[tuple[Path, int]] = []
    root.mkdir(parents=True)
    build_tree(root, spec, directory_modes)
    entries = sorted(p for p in root.rglob("*"))
    directories = [root] + [p for p in entries if p.is_dir()]
    for index in range(data.draw(st.integers(0, 3), label="symlinks")):
        link_dir = data.draw(st.sampled_from(directories), label="link directory")
        target = data.draw(st.sampled_from([*entries, root / "not-there-yet"]), label="link target")
        os.symlink(os.path.relpath(target, link_dir), link_dir / f"link{index}")
    for path, mode in directory_modes:  # deepest first, as build_tree appended them
        os.chmod(path, mode)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=ROOTS, allow_links=st.booleans(), data=st.data())
def test_provisioned_random_tree_equals_source_and_stays_separate(
    spec: dict[str, Any], allow_links: bool, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        source, dest = Path(scratch, "workspace"), Path(scratch, "run", "workspace")
        build_random_workspace(source, spec, data)
        files = sorted(regular_files(source))
        read_only = data.draw(st.lists(st.sampled_from(files), unique=True) if files else st.just([]))
        before = snapshot(source)

        report = provision(source, dest, read_only=read_only, allow_links=allow_links)

        assert snapshot(dest) == before
        assert report.files == len(files) == report.reflinked + report.linked + report.copied
        assert report.bytes == sum((source / f).stat().st_size for f in files)
        expected_links = sorted(read_only) if allow_links else []
        assert list(report.linked_paths) == expected_links
        for relative in files:
            assert same_inode(source / relative, dest / relative) == (relative in expected_links)

        scribble_over(dest, [f for f in files if f not in expected_links])
        assert snapshot(source) == before


# ---------------------------------------------------------------------------------------------
# Real workspaces


def test_provisioned_workspace_keeps_contents_modes_mtimes_and_symlinks(task_workspace: Path, tmp_path: Path) -> None:
    before = snapshot(task_workspace)
    report = provision(task_workspace, tmp_path / "run" / "workspace")
    assert snapshot(tmp_path / "run" / "workspace") == before
    assert report.files == 7 and report.linked == 0
    assert os.readlink(tmp_path / "run/workspace/dataset") == "data"
    assert (tmp_path / "run/workspace/train.py").stat().st_mtime_ns == 1_600_000_000_123_456_789


def test_whatever_the_run_does_the_task_files_do_not_change(task_workspace: Path, tmp_path: Path) -> None:
    patterns = ["**"]
    task_state = checksum_protected(task_workspace, patterns)
    dest = tmp_path / "run"
    provision(task_workspace, dest, read_only=["checkpoints/"], allow_links=False)

    scribble_over(dest, list(regular_files(dest)))
    (dest / "data/train.jsonl").unlink()
    (dest / "scripts/config.yaml").unlink()
    os.symlink("/etc/passwd", dest / "scripts/config.yaml")
    (dest / "new.txt").write_text("new")
    os.chmod(dest / "data", 0o700)

    assert check_protected(task_workspace, task_state, patterns) == []


def test_without_allow_links_no_file_is_shared_with_the_task(task_workspace: Path, tmp_path: Path) -> None:
    dest = tmp_path / "run"
    report = provision(task_workspace, dest, read_only=["checkpoints/", "data/**"], allow_links=False)
    assert report.linked == 0 and report.linked_paths == ()
    for relative in regular_files(task_workspace):
        assert not same_inode(task_workspace / relative, dest / relative), relative
        assert os.lstat(task_workspace / relative).st_nlink == 1, relative


def test_with_allow_links_exactly_the_read_only_files_are_shared(task_workspace: Path, tmp_path: Path) -> None:
    dest = tmp_path / "run"
    report = provision(task_workspace, dest, read_only=["checkpoints/*.pt", "data/"], allow_links=True)
    shared = ["checkpoints/model.pt", "data/eval/held.jsonl", "data/train.jsonl"]
    assert report.linked_paths == tuple(shared)
    assert report.linked == 3 and report.files == 7
    for relative in regular_files(task_workspace):
        assert same_inode(task_workspace / relative, dest / relative) == (relative in shared)


def test_forced_link_strategy_copies_the_files_that_are_not_read_only(task_workspace: Path, tmp_path: Path) -> None:
    report = provision(
        task_workspace,
        tmp_path / "run",
        read_only=["checkpoints/"],
        allow_links=True,
        strategy="link",
    )
    assert report.linked_paths == ("checkpoints/model.pt", "checkpoints/notes.txt")
    assert report.copied == 5 and report.reflinked == 0


def test_forced_copy_strategy_copies_even_read_only_files(task_workspace: Path, tmp_path: Path) -> None:
    report = provision(
        task_workspace,
        tmp_path / "run",
        read_only=["checkpoints/"],
        allow_links=True,
        strategy="copy",
    )
    assert (report.copied, report.linked, report.reflinked) == (7, 0, 0)


def test_link_strategy_without_allow_links_is_refused(task_workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allow_links=True only when the backend mounts"):
        provision(task_workspace, tmp_path / "run", read_only=["checkpoints/"], strategy="link")
    assert not (tmp_path / "run").exists()


def test_forced_reflink_without_filesystem_support_says_what_to_use(task_workspace: Path, tmp_path: Path) -> None:
    if reflink_supported(task_workspace, tmp_path):
        pytest.skip(f"{tmp_path} can clone files; this test needs a filesystem that cannot")
    with pytest.raises(ValueError, match=r"strategy 'reflink' needs a filesystem .*strategy='auto'"):
        provision(task_workspace, tmp_path / "run", strategy="reflink")
    assert not (tmp_path / "run").exists()
    assert provision(task_workspace, tmp_path / "run").copied == 7


def other_filesystem_dir(than: Path) -> Path | None:
    for candidate in (os.environ.get("INNOVATOR_REFLINK_DIR"), "/dev/shm"):
        if not (candidate and Path(candidate).is_dir() and os.access(candidate, os.W_OK)):
            continue
        if os.stat(candidate).st_dev != os.stat(than).st_dev:
            return Path(candidate)
    return None


def test_links_across_filesystems_fall_back_or_fail_cleanly(task_workspace: Path, tmp_path: Path) -> None:
    other = other_filesystem_dir(tmp_path)
    if other is None:
        pytest.skip("needs a writable directory on another filesystem (/dev/shm or INNOVATOR_REFLINK_DIR)")
    with tempfile.TemporaryDirectory(dir=other) as scratch:
        dest = Path(scratch, "existing-empty-run-dir")
        dest.mkdir()
        with pytest.raises(ValueError, match="hard links need both on one filesystem"):
            provision(task_workspace, dest, read_only=["checkpoints/"], allow_links=True, strategy="link")
        assert list(dest.iterdir()) == [], "a failed provisioning must leave the directory empty"

        report = provision(task_workspace, dest, read_only=["checkpoints/"], allow_links=True)
        assert report.linked == 0 and report.files == 7
        assert snapshot(dest) == snapshot(task_workspace)


@pytest.mark.slow
def test_file_larger_than_one_sendfile_call_is_copied_whole(tmp_path: Path) -> None:
    source = tmp_path / "task"
    source.mkdir()
    size = (1 << 31) + 12345  # one sendfile call moves at most 2 GiB - 4 KiB
    with open(source / "checkpoint.pt", "wb") as stream:  # sparse: only the tail is on disk
        stream.truncate(size - 16)
        stream.seek(size - 16)
        stream.write(b"end of the model")
    dest = tmp_path / "run"
    try:
        report = provision(source, dest, strategy="copy")
        assert report.bytes == size
        assert (dest / "checkpoint.pt").stat().st_size == size
        with open(dest / "checkpoint.pt", "rb") as stream:
            stream.seek(size - 16)
            assert stream.read() == b"end of the model"
    finally:
        shutil.rmtree(dest, ignore_errors=True)  # 2 GB: do not leave it to the tmp_path retention


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("escape", "../../outside.txt"),
        ("absolute", "/etc/passwd"),
        ("configs/sideways", "../../workspace/train.py"),  # out of the tree and back in by name
        ("configs/through", "../dataset/../../outside.txt"),  # leaves through an inside symlink
        ("loop", "loop"),
    ],
)
def test_symlink_that_leaves_the_tree_is_refused_by_name(
    task_workspace: Path, tmp_path: Path, link: str, target: str
) -> None:
    (tmp_path / "task" / "outside.txt").write_text("not part of the workspace")
    os.symlink(target, task_workspace / link)
    with pytest.raises(ValueError, match=f"symlink {link} -> {target} .* points outside the workspace"):
        provision(task_workspace, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_symlinks_resolving_inside_the_tree_are_kept(task_workspace: Path, tmp_path: Path) -> None:
    os.symlink("../dataset/eval/held.jsonl", task_workspace / "configs" / "held")  # via a symlink
    os.symlink("later/output.txt", task_workspace / "dangling-inside")
    provision(task_workspace, tmp_path / "run")
    assert (tmp_path / "run/configs/held").read_bytes() == (task_workspace / "data/eval/held.jsonl").read_bytes()
    assert os.readlink(tmp_path / "run/dangling-inside") == "later/output.txt"


def test_destination_must_be_absent_or_empty(task_workspace: Path, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "leftover.txt").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory; remove it or choose a new run"):
        provision(task_workspace, occupied)
    assert [p.name for p in occupied.iterdir()] == ["leftover.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert provision(task_workspace, empty).files == 7


def test_bad_arguments_say_what_to_change(task_workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inside the task workspace"):
        provision(task_workspace, task_workspace / "run")
    with pytest.raises(ValueError, match="unknown provisioning strategy 'fast'"):
        provision(task_workspace, tmp_path / "run", strategy="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a directory"):
        provision(tmp_path / "no-such-task", tmp_path / "run")
    with pytest.raises(ValueError, match="relative to the workspace"):
        provision(task_workspace, tmp_path / "run", read_only=["/data"])
    os.mkfifo(task_workspace / "data" / "pipe")
    with pytest.raises(ValueError, match="data/pipe is neither a file"):
        provision(task_workspace, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Reflink (runs only on a filesystem that can clone)


@needs_reflink
def test_reflinked_copies_are_separate_files(tmp_path: Path) -> None:
    base = reflink_dir()
    assert base is not None
    with tempfile.TemporaryDirectory(dir=base) as scratch:
        source = make_task_workspace(Path(scratch, "task", "workspace"))
        dest = Path(scratch, "run")
        before = snapshot(source)
        report = provision(source, dest, read_only=["checkpoints/"], strategy="reflink", allow_links=True)
        assert (report.reflinked, report.linked, report.copied) == (7, 0, 0)
        assert snapshot(dest) == before
        files = list(regular_files(source))
        assert not any(same_inode(source / f, dest / f) for f in files)
        scribble_over(dest, files)
        assert snapshot(source) == before


@needs_reflink
def test_auto_links_read_only_files_reflinks_large_ones_and_copies_small_ones(
    tmp_path: Path,
) -> None:
    base = reflink_dir()
    assert base is not None
    with tempfile.TemporaryDirectory(dir=base) as scratch:
        source = make_task_workspace(Path(scratch, "task", "workspace"))
        (source / "data/big.jsonl").write_bytes(b"x" * REFLINK_MIN_BYTES)
        before = snapshot(source)
        linking = provision(source, Path(scratch, "run"), read_only=["checkpoints/*.pt"], allow_links=True)
        assert (linking.linked, linking.reflinked, linking.copied) == (1, 1, 6)
        assert linking.linked_paths == ("checkpoints/model.pt",)
        cloning = provision(source, Path(scratch, "run2"), read_only=["checkpoints/*.pt"])
        assert (cloning.linked, cloning.reflinked, cloning.copied) == (0, 2, 6)
        assert snapshot(Path(scratch, "run2")) == before
        scribble_over(Path(scratch, "run2"), list(regular_files(source)))
        assert snapshot(source) == before
