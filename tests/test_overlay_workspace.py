"""Overlay workspaces: the task's starter files as a shared lower layer, snapshots of the item's
upper layer only, and restores in which a deleted file stays deleted and later changes are undone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_innovator.mounts import Overlay, apply_upper_layer, mount_overlay, overlay_unavailable
from pytest_innovator.provision import provision
from pytest_innovator.snapshots.store import SnapshotStore

from .test_plugin import add_task, upper_layer
from .test_resume import the_run

pytestmark = pytest.mark.skipif(overlay_unavailable() is not None, reason=f"no overlay mounts: {overlay_unavailable()}")


def view(root: Path) -> dict[str, bytes | str]:
    """What a reader of the tree sees: every path, with a file's contents."""
    seen: dict[str, bytes | str] = {}
    for directory, dir_names, file_names in os.walk(root):
        for name in dir_names + file_names:
            path = Path(directory, name)
            seen[path.relative_to(root).as_posix()] = "dir" if path.is_dir() else path.read_bytes()
    return seen


def mounted(lower: Path, layers: Path, name: str) -> Overlay:
    overlay = mount_overlay([lower], layers / f"{name}-upper", layers / f"{name}-work", layers / f"{name}-merged")
    assert isinstance(overlay, Overlay), overlay
    return overlay


def mounts_under(root: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(root) in line]


def test_a_restored_layer_keeps_deletions_and_undoes_later_changes(tmp_path: Path) -> None:
    lower = tmp_path / "starter"
    (lower / "replaced").mkdir(parents=True)
    (lower / "replaced" / "old.txt").write_text("old")
    for name in ("keep.txt", "gone.txt", "changed.txt"):
        (lower / name).write_text(f"starter {name}")
    lower_before = view(lower)

    first = mounted(lower, tmp_path, "first")
    merged = first.merged
    (merged / "gone.txt").unlink()  # a whiteout in the upper layer
    subprocess.run(["rm", "-r", str(merged / "replaced")], check=True)
    (merged / "replaced").mkdir()  # an opaque directory: old.txt must not show through
    (merged / "replaced" / "new.txt").write_text("new")
    (merged / "changed.txt").write_text("changed before the snapshot")
    at_snapshot = view(merged)

    store = SnapshotStore(tmp_path / "snapshots", durable=False)
    info = store.take(first.upper, {}, step=1, layer=True)
    assert info.layer
    # Only what the item changed was read: the untouched starter file is not in the manifest.
    recorded = {e["path"] for e in store.manifest(info.name)}
    assert recorded == {".", "gone.txt", "replaced", "replaced/new.txt", "changed.txt"}

    (merged / "changed.txt").write_text("changed after the snapshot")
    (merged / "gone.txt").write_text("recreated after the snapshot")
    (merged / "late.txt").write_text("written after the snapshot")
    (merged / "keep.txt").unlink()
    first.unmount()
    assert not mounts_under(tmp_path)

    store.restore(info.name, tmp_path / "second-upper")
    second = mounted(lower, tmp_path, "second")
    try:
        assert view(second.merged) == at_snapshot
        assert "gone.txt" not in at_snapshot and "replaced/old.txt" not in at_snapshot
    finally:
        second.unmount()

    # Where no overlay can be mounted, the same layer applied to a copy gives the same view.
    copy = tmp_path / "copy"
    provision(lower, copy)
    apply_upper_layer(tmp_path / "second-upper", copy)
    assert view(copy) == at_snapshot
    assert view(lower) == lower_before  # the shared starter files were never written


def test_a_harness_killed_with_sigkill_leaves_no_mount(tmp_path: Path) -> None:
    lower = tmp_path / "starter"
    lower.mkdir()
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from pytest_innovator.mounts import mount_overlay\n"
        f"mount_overlay([Path({str(lower)!r})], Path({str(tmp_path / 'u')!r}), Path({str(tmp_path / 'w')!r}), "
        f"Path({str(tmp_path / 'm')!r}))\n"
        "print('mounted', flush=True)\n"
        "time.sleep(600)\n"
    )
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert harness.stdout is not None and harness.stdout.readline() == "mounted\n"
    assert mounts_under(tmp_path)
    harness.kill()
    harness.wait()
    for _ in range(100):
        if not mounts_under(tmp_path):
            break
        subprocess.run(["sleep", "0.05"])
    assert not mounts_under(tmp_path)


def test_an_item_resumed_from_its_layer_sees_its_deletion_and_not_what_came_after(pytester: pytest.Pytester) -> None:
    """From the command line: step 2 deletes a starter file, step 3 (after the snapshot of step 2)
    writes another; the branch from step 2 scores only if the first is still gone and the second
    never was."""
    root = pytester.path
    add_task(root / "suite", "number")
    first_replay = root / "first.jsonl"
    first_replay.write_text(
        "\n".join(
            json.dumps(call)
            for call in [
                {"tool": "create_session", "arguments": {"name": "s"}},
                {"tool": "run_command", "arguments": {"session": "s", "command": "rm answer.txt", "wait": 10}},
                {"tool": "write_file", "arguments": {"path": "late.txt", "content": "after the snapshot"}},
                {"tool": "finish"},
            ]
        )
    )
    check = "test ! -e answer.txt && test ! -e late.txt && echo 0.9 > answer.txt"
    branch_replay = root / "branch.jsonl"
    branch_replay.write_text(
        '{"tool": "create_session", "arguments": {"name": "s"}}\n'
        + json.dumps({"tool": "run_command", "arguments": {"session": "s", "command": check, "wait": 10}})
        + '\n{"tool": "finish"}'
    )

    def run(results: str, replay: Path, *extra: str) -> None:
        command = [sys.executable, "-m", "pytest", "suite", "-p", "no:cacheprovider", "-p", "no:randomly"]
        command += ["--innovator-backend", "sandbox", "--innovator-agent", "replay", "--innovator-replay", str(replay)]
        command += ["--innovator-results", results, "--innovator-snapshot-steps", "1", "--innovator-snapshot-keep", "9"]
        subprocess.run([*command, *extra], cwd=root, capture_output=True, timeout=300)

    run("first", first_replay)
    item = the_run(root, "first") / "number"
    first = json.loads((item / "result.json").read_text())
    assert first["workspace_provisioning"] == "overlay" and not first["score_final"]
    with upper_layer(item) as upper:
        assert (upper / "late.txt").is_file()
    assert (root / "suite" / "number" / "workspace" / "answer.txt").is_file()  # the task's own file stays

    [after_step_2] = [p.name for p in (item / "snapshots").iterdir() if p.name.endswith("-step2")]
    run("branch", branch_replay, "--innovator-resume", f"{item}@{after_step_2}")
    branch = json.loads((the_run(root, "branch") / "number" / "result.json").read_text())
    assert branch["workspace_provisioning"] == "overlay"
    assert branch["score_final"] == pytest.approx(80)
    assert not mounts_under(root)
