"""Snapshots on real files and processes: sharing, exact restores, crashes, live writers,
pruning."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_innovator.ledger import EvalLedger
from pytest_innovator.protected import sha256_of
from pytest_innovator.snapshots import store as snapshots
from pytest_innovator.snapshots.store import SnapshotStore, take_on_demand
from pytest_innovator.trajectory import TrajectoryWriter
from tests.test_provision import snapshot as tree_state


def object_files(store: SnapshotStore) -> dict[str, os.stat_result]:
    """Every object in the store by hash, with its lstat."""
    found = {}
    for fan_out in store.objects_dir.iterdir():
        for item in fan_out.iterdir():
            found[fan_out.name + item.name] = os.lstat(item)
    return found


def referenced_objects(store: SnapshotStore) -> set[str]:
    return {entry["object"] for info in store.list() for entry in store.manifest(info.name) if entry.get("object")}


def write_files(root: Path, count: int, size: int) -> list[str]:
    names = []
    for index in range(count):
        relative = f"d{index % 4}/f{index:03d}.bin"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(os.urandom(size))
        names.append(relative)
    return names


def restored(store: SnapshotStore, name: str, scratch: Path) -> Path:
    dest = scratch / f"restored-{name}-{random.randrange(1 << 30)}"
    store.restore(name, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# Incremental sharing


def test_a_second_snapshot_stores_only_the_changed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "workspace"
    names = write_files(workspace, 40, 64 << 10)
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    first = store.take(workspace, {"step": 1}, step=1)
    assert (first.files, first.bytes_total) == (40, 40 * (64 << 10))
    objects_before = object_files(store)

    changed = names[7]
    (workspace / changed).write_bytes(os.urandom(64 << 10))
    copied: set[str] = set()
    real_copy_into = snapshots._copy_into

    def recording_copy_into(source_fd: int, incoming: str, clone: bool) -> tuple[bool, str]:
        copied.add(os.readlink(f"/proc/self/fd/{source_fd}"))
        return real_copy_into(source_fd, incoming, clone)

    monkeypatch.setattr(snapshots, "_copy_into", recording_copy_into)
    second = store.take(workspace, {"step": 2}, step=2)

    # Only the changed file was read (twice, maybe: it was written within the racy window).
    assert copied == {str(workspace / changed)}
    objects_after = object_files(store)
    assert len(objects_after) == 41
    # One file's bytes, plus the snapshot's own manifest and state (about 200 bytes a path).
    assert 64 << 10 <= second.bytes_added < (64 << 10) + 40 * 300
    for digest, info in objects_before.items():  # written once, never rewritten
        assert (objects_after[digest].st_ino, objects_after[digest].st_mtime_ns) == (
            info.st_ino,
            info.st_mtime_ns,
        )
    assert all(stat.S_IMODE(info.st_mode) == 0o444 for info in objects_after.values())
    first_entries = {e["path"]: e for e in store.manifest(first.name)}
    second_entries = {e["path"]: e for e in store.manifest(second.name)}
    for relative in names:
        same = first_entries[relative]["object"] == second_entries[relative]["object"]
        assert same == (relative != changed)
    assert second_entries[changed]["object"] == sha256_of(workspace / changed)


def test_identical_contents_are_stored_once(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for index in range(5):
        (workspace / f"copy{index}.txt").write_bytes(b"same bytes\n" * 1000)
    (workspace / "empty1").touch()
    (workspace / "empty2").touch()
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    info = store.take(workspace, {}, step=0)
    assert len(object_files(store)) == 2
    assert info.files == 7 and info.bytes_total == 5 * 11_000


# ---------------------------------------------------------------------------------------------
# Restores are exact (random trees and change sequences)

FILES = ["a", "b.py", "d1/c", "d1/d2/e.bin", "d3/f"]
DIRS = ["d1", "d1/d2", "d3"]
LINKS = ["s1", "d1/s2"]
CONTENTS = st.binary(max_size=3000) | st.sampled_from([b"", b"shared\n" * 50])
OPERATIONS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(FILES), CONTENTS),
    st.tuples(st.just("append"), st.sampled_from(FILES), st.binary(min_size=1, max_size=100)),
    st.tuples(st.just("chmod"), st.sampled_from(FILES), st.sampled_from([0o644, 0o600, 0o755, 0o444])),
    st.tuples(st.just("chmod_dir"), st.sampled_from(DIRS), st.sampled_from([0o755, 0o700, 0o750])),
    st.tuples(st.just("delete"), st.sampled_from(FILES + DIRS + LINKS), st.none()),
    st.tuples(
        st.just("symlink"),
        st.sampled_from(LINKS),
        st.sampled_from(["a", "../d3/f", "/etc/x", "nowhere"]),
    ),
    st.tuples(st.just("utime"), st.sampled_from(FILES + DIRS), st.integers(0, 2_000_000_000_000_000_000)),
    st.tuples(st.just("take"), st.none(), st.none()),
)


def apply_operation(workspace: Path, operation: tuple[str, Any, Any]) -> None:
    kind, relative, value = operation
    path = workspace / relative if relative else workspace
    if kind in ("write", "append"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            return
        with open(path, "wb" if kind == "write" else "ab") as stream:
            stream.write(value)
    elif kind in ("chmod", "chmod_dir", "utime") and path.exists() and not path.is_symlink():
        if kind == "utime":
            os.utime(path, ns=(value, value))
        elif (kind == "chmod") == path.is_file():
            os.chmod(path, value)
    elif kind == "delete" and (path.exists() or path.is_symlink()):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    elif kind == "symlink" and not path.exists() and not path.is_symlink():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(value, path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operations=st.lists(OPERATIONS, max_size=25),
    keep_last=st.integers(1, 4),
    keep_every=st.none() | st.integers(1, 3),
)
def test_every_snapshot_restores_exactly_what_it_saw(
    operations: list[tuple[str, Any, Any]], keep_last: int, keep_every: int | None
) -> None:
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        workspace = scratch / "workspace"
        workspace.mkdir()
        store = SnapshotStore(scratch / "snapshots", durable=False)
        seen: dict[str, dict[str, tuple[Any, ...]]] = {}
        for operation in [*operations, ("take", None, None)]:
            if operation[0] == "take":
                info = store.take(workspace, {"operations": len(seen)}, step=len(seen))
                assert info.changing == ()
                seen[info.name] = tree_state(workspace)
            else:
                apply_operation(workspace, operation)

        for name, expected in seen.items():
            assert tree_state(restored(store, name, scratch)) == expected

        removed = store.prune(keep_last=keep_last, keep_every=keep_every)
        remaining = [info.name for info in store.list()]
        assert remaining[-1] == list(seen)[-1]
        assert sorted(removed + remaining) == sorted(seen)
        assert set(object_files(store)) == referenced_objects(store)
        for name in remaining:
            assert tree_state(restored(store, name, scratch)) == seen[name]


def test_unusual_names_and_kinds_survive_a_restore(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "line\nbreak.txt").write_bytes(b"1")
    (workspace / 'ü ñ, "quoted".txt').write_bytes(b"2")
    raw_directory = os.fsencode(workspace) + b"/not-utf8-\xff"
    os.mkdir(raw_directory)
    Path(os.fsdecode(raw_directory + b"/inside")).write_bytes(b"3")
    os.symlink("/nowhere/at/all", workspace / "dangling")
    os.mkfifo(workspace / "pipe")
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    info = store.take(workspace, {}, step=0)

    assert {"path": "pipe", "kind": "other"}.items() <= next(
        entry for entry in store.manifest(info.name) if entry["path"] == "pipe"
    ).items()
    # The expected tree: the workspace without the fifo (not recreated), its directory time kept.
    root_mtime_ns = os.lstat(workspace).st_mtime_ns
    os.unlink(workspace / "pipe")
    os.utime(workspace, ns=(root_mtime_ns, root_mtime_ns))
    assert tree_state(restored(store, info.name, tmp_path)) == tree_state(workspace)


def test_a_restored_workspace_can_be_written_without_touching_the_store(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    names = write_files(workspace, 6, 10_000)
    os.chmod(workspace / names[0], 0o444)
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    info = store.take(workspace, {}, step=0)
    before = {digest: sha256_of(store.object_path(digest)) for digest in object_files(store)}

    dest = tmp_path / "restored"
    store.restore(info.name, dest)
    for relative in names:
        os.chmod(dest / relative, 0o644)
        with open(dest / relative, "r+b") as stream:
            stream.write(b"overwritten by the resumed run")
        assert os.lstat(dest / relative).st_nlink == 1

    assert {digest: sha256_of(store.object_path(digest)) for digest in object_files(store)} == before
    assert before == {digest: digest for digest in before}
    assert all(stat.S_IMODE(i.st_mode) == 0o444 for i in object_files(store).values())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system inside the workspace needs root")
def test_a_file_system_mounted_inside_the_workspace_is_left_out(tmp_path: Path) -> None:
    """A dataset's environment is an overlay mounted inside the workspace (datasets.py): it is the
    cache's, tens of GB in a real dataset, and a resume mounts it again."""
    workspace = tmp_path / "workspace"
    write_files(workspace, 2, 100)
    mounted = workspace / "conda"
    mounted.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mounted)], check=True)
    try:
        (mounted / "big").write_bytes(b"x" * 10_000)
        info = SnapshotStore(tmp_path / "snapshots", durable=False).take(workspace, {}, step=0)
        paths = {entry["path"] for entry in SnapshotStore(tmp_path / "snapshots").manifest(info.name)}
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert paths == {".", "d0", "d0/f000.bin", "d1", "d1/f001.bin"}  # no conda/, nor conda/big


# ---------------------------------------------------------------------------------------------
# Atomicity


def test_a_failure_before_the_commit_leaves_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 10, 5000)
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    first = store.take(workspace, {"n": 1}, step=1)
    first_state = tree_state(workspace)
    write_files(workspace, 12, 7000)

    def failing_replace(source: Any, dest: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        store.take(workspace, {"n": 2}, step=2)
    monkeypatch.undo()

    assert any(child.name.startswith(".tmp-") for child in store.root.iterdir())
    assert [info.name for info in store.list()] == [first.name]
    assert not any(child.name.startswith(".tmp-") for child in store.root.iterdir())
    assert tree_state(restored(store, first.name, tmp_path)) == first_state
    assert store.load_state(first.name) == {"n": 1}
    second = store.take(workspace, {"n": 2}, step=2)
    assert tree_state(restored(store, second.name, tmp_path)) == tree_state(workspace)


CHILD_TAKES_A_SNAPSHOT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from pytest_innovator.snapshots import store as snapshots

    store_dir, workspace, pause_at = sys.argv[1], sys.argv[2], sys.argv[3]

    def pause():
        print("paused", flush=True)
        time.sleep(120)

    if pause_at == "commit":
        os.replace = lambda *args, **kwargs: pause()
    elif pause_at == "objects":
        real_store_object = snapshots._Capture._store_object
        stored = []

        def store_some_then_pause(self, *args):
            real_store_object(self, *args)
            stored.append(1)
            if len(stored) == 5:
                pause()

        snapshots._Capture._store_object = store_some_then_pause
    print("taking", flush=True)
    snapshots.SnapshotStore(Path(store_dir)).take(Path(workspace), {"child": True}, step=2)
    print("done", flush=True)
    """
)


def start_child_snapshot(store_dir: Path, workspace: Path, pause_at: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_TAKES_A_SNAPSHOT, str(store_dir), str(workspace), pause_at],
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen[str], wanted: str) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == wanted:
            return
    raise AssertionError(f"the child ended (code {child.wait()}) before printing {wanted!r}")


def check_store_after_crash(store: SnapshotStore, expected: dict[str, Any], scratch: Path) -> None:
    """Every listed snapshot restores to what it saw; nothing half-built is left."""
    listed = [info.name for info in store.list()]
    assert listed and set(listed) <= set(expected)
    assert not any(child.name.startswith(".") and child.is_dir() for child in store.root.iterdir())
    for name in listed:
        assert tree_state(restored(store, name, scratch)) == expected[name]


def check_next_snapshot_and_prune(store: SnapshotStore, workspace: Path, scratch: Path) -> None:
    """A new snapshot works, and the prune that removes the older ones also deletes the objects
    the killed snapshots left behind."""
    latest = store.take(workspace, {"after": "crash"}, step=99)
    assert tree_state(restored(store, latest.name, scratch)) == tree_state(workspace)
    assert store.prune(keep_last=1)
    assert set(object_files(store)) == referenced_objects(store)


@pytest.mark.parametrize("pause_at", ["objects", "commit"])
def test_a_snapshot_killed_halfway_leaves_the_previous_one_usable(tmp_path: Path, pause_at: str) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 30, 20_000)
    store = SnapshotStore(tmp_path / "snapshots")
    first = store.take(workspace, {"n": 1}, step=1)
    expected = {first.name: tree_state(workspace)}
    write_files(workspace, 30, 20_000)  # every file changes: the next snapshot has work to do

    child = start_child_snapshot(store.root, workspace, pause_at)
    wait_for_line(child, "paused")
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert child.stdout is not None
    child.stdout.close()

    assert any(child.name.startswith(".tmp-") for child in store.root.iterdir()) == (pause_at == "commit")
    assert [info.name for info in store.list()] == [first.name]
    check_store_after_crash(store, expected, tmp_path)
    check_next_snapshot_and_prune(store, workspace, tmp_path)


@pytest.mark.slow
def test_snapshots_killed_at_random_moments_never_leave_a_broken_one(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 150, 30_000)
    store = SnapshotStore(tmp_path / "snapshots")
    expected = {store.take(workspace, {}, step=0).name: tree_state(workspace)}
    started = time.perf_counter()
    timing = SnapshotStore(tmp_path / "timing").take(workspace, {}, step=0)
    full_take_s = max(time.perf_counter() - started, timing.seconds)
    shutil.rmtree(tmp_path / "timing")
    chance = random.Random(os.getpid())
    for _ in range(3):
        write_files(workspace, 150, 30_000)
        state = tree_state(workspace)
        child = start_child_snapshot(store.root, workspace, "nowhere")
        wait_for_line(child, "taking")
        time.sleep(chance.uniform(0, full_take_s * 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
        listed = [info.name for info in store.list()]
        if listed[-1] not in expected:  # the child finished before the kill
            expected[listed[-1]] = state
        check_store_after_crash(store, expected, tmp_path)
    check_next_snapshot_and_prune(store, workspace, tmp_path)


def test_two_processes_snapshotting_at_once_both_succeed(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 50, 10_000)
    store_dir = tmp_path / "snapshots"
    children = [start_child_snapshot(store_dir, workspace, "nowhere") for _ in range(2)]
    for child in children:
        wait_for_line(child, "done")
        assert child.wait() == 0
        assert child.stdout is not None
        child.stdout.close()
    store = SnapshotStore(store_dir)
    infos = store.list()
    assert [info.name for info in infos] == ["0001-step2", "0002-step2"]
    for info in infos:
        assert tree_state(restored(store, info.name, tmp_path)) == tree_state(workspace)


# ---------------------------------------------------------------------------------------------
# Files written while the snapshot runs

VERSION_BYTES = 2 << 20

WRITER = textwrap.dedent(
    """
    import os, random, sys, time
    path, how, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    chance = random.Random(1)
    version = 1
    fd = os.open(path, os.O_WRONLY)
    while True:
        header = b"%08d" % version
        contents = header * (size // len(header))
        if how == "in-place":
            os.pwrite(fd, contents, 0)  # same length: only the bytes and the times change
        else:
            with open(path + ".partial", "wb") as stream:
                stream.write(contents)
            os.replace(path + ".partial", path)
        if version == 1:
            print("writing", flush=True)
        version += 1
        # Mostly back to back (a copy made without the checks was torn in about a third of the
        # snapshots here), with pauses in which a careful snapshot can take the new version.
        time.sleep(chance.choice([0] * 19 + [0.001]))
    """
)


def version_contents(version: int) -> bytes:
    header = b"%08d" % version
    return header * (VERSION_BYTES // len(header))


def whole_version(contents: bytes) -> int | None:
    """The version these bytes are, or None if they mix versions (a torn copy)."""
    try:
        version = int(contents[:8])
    except ValueError:
        return None
    return version if contents == version_contents(version) else None


@pytest.mark.parametrize("how", ["in-place", "rename"])
def test_a_file_rewritten_during_snapshots_is_restored_as_one_whole_version(tmp_path: Path, how: str) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 4, 50_000)
    target = workspace / "metrics.bin"
    target.write_bytes(version_contents(0))
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    infos = [store.take(workspace, {}, step=0)]

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), how, str(VERSION_BYTES)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(writer, "writing")
        for step in range(1, 41):
            infos.append(store.take(workspace, {}, step=step))
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
    # Whether a version is taken in the writer's pauses depends on the machine's load; once the
    # writer stops, the next snapshot must take its last version.
    infos.append(store.take(workspace, {}, step=41))

    versions = []
    for previous, info in itertools.pairwise(infos):
        contents = (restored(store, info.name, tmp_path) / "metrics.bin").read_bytes()
        version = whole_version(contents)
        assert version is not None, f"{info.name} holds a torn copy of metrics.bin"
        if "metrics.bin" in info.changing:  # kept from the snapshot before
            previous_contents = restored(store, previous.name, tmp_path) / "metrics.bin"
            assert contents == previous_contents.read_bytes()
        versions.append(version)
    assert versions == sorted(versions)
    assert versions[-1] > 0


def test_a_file_that_never_stops_changing_keeps_its_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every copy of log.txt is overlapped by a real append to it: the check must see it each
    time, and the snapshot keeps the version of the snapshot before (none for the first)."""
    workspace = tmp_path / "workspace"
    write_files(workspace, 5, 1000)
    log = workspace / "log.txt"
    log.write_text("line 1\n")
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    real_copy_into = snapshots._copy_into

    def copy_while_appending(source_fd: int, incoming: str, clone: bool) -> tuple[bool, str]:
        result = real_copy_into(source_fd, incoming, clone)
        if os.readlink(f"/proc/self/fd/{source_fd}") == str(log):
            with open(log, "a") as stream:
                stream.write("one more line\n")
        return result

    monkeypatch.setattr(snapshots, "_copy_into", copy_while_appending)
    first = store.take(workspace, {}, step=1)
    assert first.changing == ("log.txt",)
    assert not (restored(store, first.name, tmp_path) / "log.txt").exists()
    monkeypatch.undo()

    second = store.take(workspace, {}, step=2)
    assert second.changing == ()
    second_log = log.read_text()
    monkeypatch.setattr(snapshots, "_copy_into", copy_while_appending)
    log.write_text(second_log + "after the second snapshot\n")
    third = store.take(workspace, {}, step=3)
    assert third.changing == ("log.txt",)
    assert (restored(store, third.name, tmp_path) / "log.txt").read_text() == second_log
    entry = next(e for e in store.manifest(third.name) if e["path"] == "log.txt")
    assert entry["changing"] is True
    assert all(
        (restored(store, third.name, tmp_path) / relative).read_bytes() == (workspace / relative).read_bytes()
        for relative in (e["path"] for e in store.manifest(third.name))
        if relative.endswith(".bin")
    )


CHILD_SNAPSHOTS_AND_PRINTS_INFO = textwrap.dedent(
    """
    import dataclasses, json, sys
    from pathlib import Path
    from pytest_innovator.snapshots.store import SnapshotStore
    info = SnapshotStore(Path(sys.argv[1]), durable=False).take(Path(sys.argv[2]), {}, step=1)
    print(json.dumps(dataclasses.asdict(info)))
    """
)


def without_root_file_access() -> list[str]:
    """A command prefix under which file modes apply: root without its override capabilities."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: modes cannot bind")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def test_what_the_snapshot_may_not_read_is_reported_not_fatal(tmp_path: Path) -> None:
    """A run can chmod 000 its own files; the snapshot then keeps what it had, and says so."""
    workspace, store_dir = tmp_path / "workspace", tmp_path / "snapshots"
    write_files(workspace, 3, 100)
    (workspace / "secret.txt").write_text("version 1")
    (workspace / "locked").mkdir()
    (workspace / "locked" / "inside.txt").write_text("x")

    def take_without_file_access() -> dict[str, Any]:
        child = subprocess.run(
            [
                *without_root_file_access(),
                sys.executable,
                "-c",
                CHILD_SNAPSHOTS_AND_PRINTS_INFO,
                str(store_dir),
                str(workspace),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        info: dict[str, Any] = json.loads(child.stdout)
        return info

    assert take_without_file_access()["changing"] == []
    (workspace / "secret.txt").write_text("version 2")
    os.chmod(workspace / "secret.txt", 0)
    os.chmod(workspace / "locked", 0)
    try:
        second = take_without_file_access()
    finally:
        os.chmod(workspace / "locked", 0o755)

    assert sorted(second["changing"]) == ["locked", "secret.txt"]
    dest = restored(SnapshotStore(store_dir), second["name"], tmp_path)
    assert (dest / "secret.txt").read_text() == "version 1"
    assert (dest / "locked").is_dir() and not any((dest / "locked").iterdir())


# ---------------------------------------------------------------------------------------------
# Pruning


def test_prune_keeps_the_latest_and_frees_unreferenced_objects(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 5, 4000)
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    states = {}
    for step in range(1, 8):
        (workspace / "changes.bin").write_bytes(os.urandom(10_000))
        info = store.take(workspace, {"step": step}, step=step * 10)
        states[info.name] = tree_state(workspace)
    names = list(states)
    assert len(object_files(store)) == 5 + 7

    removed = store.prune(keep_last=2, keep_every=3)

    assert removed == [names[0], names[1], names[3], names[4]]
    assert [info.name for info in store.list()] == [names[2], names[5], names[6]]
    assert len(object_files(store)) == 5 + 3
    assert set(object_files(store)) == referenced_objects(store)
    for name in (names[2], names[5], names[6]):
        assert tree_state(restored(store, name, tmp_path)) == states[name]
        assert store.load_state(name) == {"step": (names.index(name) + 1)}
    assert store.prune(keep_last=1) == [names[2], names[5]]
    latest = store.latest()
    assert latest is not None and latest.name == names[6]
    with pytest.raises(ValueError, match="keep_last=0"):
        store.prune(keep_last=0)


# ---------------------------------------------------------------------------------------------
# On demand, state, and mistakes


def test_take_on_demand_snapshots_a_run_directory_with_its_state(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "run-1" / "mini-number"
    write_files(run_dir / "workspace", 3, 100)
    ledger = EvalLedger(task_id="mini-number", budget=3, hint_penalty=0.1, steps=4)
    ledger.save(run_dir / "ledger.json")
    trajectory = TrajectoryWriter(run_dir / "trajectory.jsonl", {"task": "mini-number"})
    for step in (1, 2, 3):
        trajectory.step(
            step=step,
            working_time_s=step,
            tool="think",
            arguments={},
            ok=True,
            observation="ok",
            duration_s=0.01,
        )
    trajectory.close()
    with open(run_dir / "trajectory.jsonl", "a") as stream:
        stream.write('{"type": "step", "step": 4, "t"')  # being written right now
    (run_dir / "sessions").mkdir()
    (run_dir / "sessions" / "main.log").write_text("$ python train.py\n")

    info = take_on_demand(run_dir)

    store = SnapshotStore(run_dir / "snapshots")
    assert [i.name for i in store.list()] == [info.name] and info.step == 3
    state = store.load_state(info.name)
    assert state["ledger"] == json.loads((run_dir / "ledger.json").read_text())
    assert state["trajectory"]["lines"] == 4 and state["trajectory"]["last_step"] == 3
    assert state["session_logs"] == ["main.log"]
    assert tree_state(restored(store, info.name, tmp_path)) == tree_state(run_dir / "workspace")
    with pytest.raises(ValueError, match="no workspace/ directory"):
        take_on_demand(tmp_path / "runs" / "run-1")


def test_a_run_resumes_from_an_on_demand_snapshot_with_its_guidance_delivered_once(tmp_path: Path) -> None:
    from pytest_innovator.snapshots.resume import ResumeTarget, prepare_run_dir, resume_point

    run_dir = tmp_path / "runs" / "run-1" / "mini-number"
    write_files(run_dir / "workspace", 2, 100)
    EvalLedger(task_id="mini-number", budget=3, hint_penalty=0.0, steps=2).save(run_dir / "ledger.json")
    trajectory = TrajectoryWriter(run_dir / "trajectory.jsonl", {"task": "mini-number"})
    trajectory.step(step=1, working_time_s=1, tool="think", arguments={}, ok=True, observation="ok", duration_s=0.01)
    trajectory.event("guidance", step=1, working_time_s=1, id="g-1", text="try a smaller learning rate", author="ana")
    trajectory.step(step=2, working_time_s=2, tool="think", arguments={}, ok=True, observation="ok", duration_s=0.01)
    trajectory.close()
    complete = (run_dir / "trajectory.jsonl").read_bytes()
    with open(run_dir / "trajectory.jsonl", "a") as stream:
        stream.write('{"type": "step", "step": 3, "t"')  # being written right now

    take_on_demand(run_dir)
    point = resume_point(ResumeTarget(tmp_path / "runs" / "run-1", None, None), "mini-number")
    assert point is not None
    resumed = prepare_run_dir(point, tmp_path / "runs" / "run-2" / "mini-number")

    assert resumed["guidance_delivered"] == ["g-1"] and resumed["step"] == 2
    assert (tmp_path / "runs" / "run-2" / "mini-number" / "trajectory.jsonl").read_bytes() == complete


def test_mistakes_get_messages_that_say_what_to_change(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    write_files(workspace, 2, 100)
    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    with pytest.raises(ValueError, match="only JSON types"):
        store.take(workspace, {"when": object()}, step=0)
    with pytest.raises(ValueError, match="only JSON types"):
        store.take(workspace, {"loss": float("nan")}, step=0)
    with pytest.raises(ValueError, match="is not allowed"):
        store.take(workspace, {}, step=0, name="../escape")
    info = store.take(workspace, {}, step=0, name="before-refactor")
    with pytest.raises(ValueError, match="already exists"):
        store.take(workspace, {}, step=0, name="before-refactor")
    with pytest.raises(ValueError, match="inside the workspace"):
        SnapshotStore(workspace / "snapshots").take(workspace, {}, step=0)
    with pytest.raises(ValueError, match="not a directory"):
        store.take(tmp_path / "missing", {}, step=0)
    with pytest.raises(ValueError, match="no snapshot named 'nope'.*before-refactor"):
        store.restore("nope", tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        store.restore(info.name, tmp_path / "busy")
    assert [i.name for i in store.list()] == ["before-refactor"]
