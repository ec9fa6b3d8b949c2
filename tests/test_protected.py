"""Protected paths on real files: every kind of change is seen; an untouched tree shows none."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_innovator.protected import (
    FileState,
    check_protected,
    checksum_protected,
    from_json,
    matching_paths,
    sha256_of,
    to_json,
)

PATTERNS = ["eval/", "data/test.jsonl", "ckpt/*.pt", "**/*.lock"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    files = {
        "eval/grade.py": b"def grade(): ...\n",
        "eval/fixtures/answers.json": b'{"a": 1}\n',
        "data/test.jsonl": b'{"q": 1}\n',
        "data/train.jsonl": b'{"q": 2}\n',
        "ckpt/model.pt": b"\x00weights" * 100,
        "ckpt/README": b"free to edit\n",
        "src/poetry.lock": b"locked\n",
        "src/main.py": b"print()\n",
    }
    for relative, contents in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents)
    os.symlink("grade.py", tmp_path / "eval" / "current.py")
    return tmp_path


def changes_of(root: Path, before: dict[str, FileState], patterns: list[str] = PATTERNS) -> dict[str, str]:
    return {change.path: change.what for change in check_protected(root, before, patterns)}


def test_patterns_cover_named_files_directories_and_globs(workspace: Path) -> None:
    assert sorted(checksum_protected(workspace, PATTERNS)) == [
        "ckpt/model.pt",
        "data/test.jsonl",
        "eval",
        "eval/current.py",
        "eval/fixtures",
        "eval/fixtures/answers.json",
        "eval/grade.py",
        "src/poetry.lock",
    ]
    assert matching_paths(workspace, ["eval"]) == matching_paths(workspace, ["./eval/"])


def test_untouched_tree_reports_nothing(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    (workspace / "eval/grade.py").read_bytes()
    (workspace / "data/train.jsonl").write_text("unprotected, free to change")
    (workspace / "ckpt/README").unlink()
    (workspace / "ckpt/other.bin").write_text("not a .pt")
    assert check_protected(workspace, before, PATTERNS) == []


def test_content_change_of_same_size_is_modified(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    stat_before = os.stat(workspace / "ckpt/model.pt")
    with open(workspace / "ckpt/model.pt", "r+b") as stream:
        stream.write(b"\x01")
    os.utime(workspace / "ckpt/model.pt", ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    assert changes_of(workspace, before) == {"ckpt/model.pt": "modified"}


def test_deleted_file_and_deleted_directory(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    (workspace / "data/test.jsonl").unlink()
    shutil.rmtree(workspace / "eval/fixtures")
    assert changes_of(workspace, before) == {
        "data/test.jsonl": "deleted",
        "eval/fixtures": "deleted",
        "eval/fixtures/answers.json": "deleted",
    }


def test_files_added_under_a_protected_directory_or_matching_a_glob(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    (workspace / "eval/fixtures/deeper").mkdir()
    (workspace / "eval/fixtures/deeper/extra.json").write_text("{}")
    (workspace / "ckpt/best.pt").write_bytes(b"new checkpoint")
    (workspace / "src/new.lock").write_text("")
    assert changes_of(workspace, before) == {
        "ckpt/best.pt": "added",
        "eval/fixtures/deeper": "added",
        "eval/fixtures/deeper/extra.json": "added",
        "src/new.lock": "added",
    }


def test_named_file_missing_at_start_then_created(workspace: Path) -> None:
    patterns = ["results/final.json"]
    before = checksum_protected(workspace, patterns)
    assert before == {"results/final.json": FileState("missing")}
    (workspace / "results").mkdir()
    (workspace / "results/final.json").write_text("{}")
    assert changes_of(workspace, before, patterns) == {"results/final.json": "added"}


def test_file_swapped_for_a_symlink_to_identical_content(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    grader = workspace / "eval/grade.py"
    shutil.copy2(grader, workspace / "src/grade_copy.py")
    grader.unlink()
    os.symlink("../src/grade_copy.py", grader)
    assert changes_of(workspace, before) == {"eval/grade.py": "type changed (file -> symlink)"}


def test_directory_swapped_for_a_symlink_to_a_copy(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    shutil.copytree(workspace / "eval/fixtures", workspace / "src/fixtures")
    shutil.rmtree(workspace / "eval/fixtures")
    os.symlink("../src/fixtures", workspace / "eval/fixtures")
    assert changes_of(workspace, before) == {
        "eval/fixtures": "type changed (dir -> symlink)",
        "eval/fixtures/answers.json": "deleted",
    }


def test_symlink_retargeted(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    (workspace / "eval/current.py").unlink()
    os.symlink("../src/main.py", workspace / "eval/current.py")
    assert changes_of(workspace, before) == {"eval/current.py": "symlink target changed"}


def test_chmod_of_file_and_directory(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    os.chmod(workspace / "eval/grade.py", 0o777)
    os.chmod(workspace / "eval", 0o700)
    changes = check_protected(workspace, before, PATTERNS)
    assert {c.path: c.what for c in changes} == {
        "eval": "mode changed",
        "eval/grade.py": "mode changed",
    }
    grade = next(c for c in changes if c.path == "eval/grade.py")
    assert (grade.before.mode, grade.after.mode) == (0o666 & ~current_umask(), 0o777)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_content_and_mode_change_together(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    (workspace / "data/test.jsonl").write_text("tampered")
    os.chmod(workspace / "data/test.jsonl", 0o600)
    assert changes_of(workspace, before) == {"data/test.jsonl": "modified, mode changed"}


def test_fifo_under_a_protected_directory_does_not_hang(workspace: Path) -> None:
    before = checksum_protected(workspace, PATTERNS)
    os.mkfifo(workspace / "eval/pipe")
    assert changes_of(workspace, before) == {"eval/pipe": "added"}
    assert checksum_protected(workspace, ["eval/pipe"])["eval/pipe"].kind == "other"


def test_streaming_hash_of_a_multi_chunk_file(tmp_path: Path) -> None:
    contents = os.urandom(3 * (1 << 20) + 12345)
    (tmp_path / "big.bin").write_bytes(contents)
    assert sha256_of(tmp_path / "big.bin") == hashlib.sha256(contents).hexdigest()


def test_states_round_trip_through_json(workspace: Path) -> None:
    before = checksum_protected(workspace, [*PATTERNS, "missing.txt"])
    text = json.dumps(to_json(before))
    assert from_json(text) == before
    assert from_json(json.loads(text)) == before
    (workspace / "eval/grade.py").write_text("changed")
    assert changes_of(workspace, from_json(text)) == {"eval/grade.py": "modified"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": {"kind": "socket-ish", "sha256": None, "target": None, "mode": None}}, "has kind"),
        ({"a": {"kind": "file", "colour": "red"}}, "'a' is malformed"),
    ],
)
def test_malformed_states_are_refused(data: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_json(data)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("/etc/passwd", "is absolute"),
        ("../grader", r"leaves the workspace \('..'\)"),
        ("./", "names no path"),
    ],
)
def test_bad_patterns_say_how_to_write_them(tmp_path: Path, pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checksum_protected(tmp_path, [pattern])


def test_symlinked_directory_is_not_followed(workspace: Path) -> None:
    os.symlink("eval", workspace / "eval-link")
    assert checksum_protected(workspace, ["eval-link"]) == {"eval-link": FileState("symlink", target="eval")}
    assert checksum_protected(workspace, ["eval-link/grade.py"]) == {"eval-link/grade.py": FileState("missing")}
    os.symlink("src", workspace / "src-link")
    assert list(checksum_protected(workspace, ["**/*.lock"])) == ["src/poetry.lock"]


# ---------------------------------------------------------------------------------------------
# Random trees, random single changes

NAMES = st.sampled_from(["a", "b", "c.txt", "d"])
TREES = st.recursive(
    st.binary(max_size=64),
    lambda children: st.dictionaries(NAMES, children, max_size=3),
    max_leaves=10,
)
MUTATIONS = st.sampled_from(["modify", "delete", "chmod", "add-beside", "to-symlink"])


def build(root: Path, tree: dict[str, object]) -> None:
    for name, node in tree.items():
        if isinstance(node, dict):
            (root / name).mkdir()
            build(root / name, node)
        else:
            assert isinstance(node, bytes)
            (root / name).write_bytes(node)


def mutate(root: Path, relative: str, mutation: str) -> str:
    """Apply one change at ``relative``; returns the path the change must be reported at."""
    path = root / relative
    if mutation == "modify" and path.is_file():
        path.write_bytes(path.read_bytes() + b"!")
    elif mutation == "chmod":
        os.chmod(path, 0o751)
    elif mutation in ("delete", "to-symlink"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        if mutation == "to-symlink":
            os.symlink("a", path)
    else:
        target = path if path.is_dir() else path.parent
        (target / "zz-new").write_text("new")
        return (target / "zz-new").relative_to(root).as_posix()
    return relative


@settings(max_examples=60, deadline=None)
@given(tree=st.dictionaries(NAMES, TREES, min_size=1, max_size=4), mutation=MUTATIONS, data=st.data())
def test_any_single_change_inside_a_protected_directory_is_reported(
    tree: dict[str, object], mutation: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "protected").mkdir()
        build(root / "protected", tree)
        before = checksum_protected(root, ["protected"])
        assert check_protected(root, before, ["protected"]) == []

        relative = data.draw(st.sampled_from(sorted(p for p in before if p != "protected")))
        reported_at = mutate(root, relative, mutation)
        reported = {c.path: c.what for c in check_protected(root, before, ["protected"])}
        assert reported_at in reported, (mutation, relative, reported)
