import itertools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_innovator.reaper import descendants
from pytest_innovator.sessions import (
    Sentinel,
    SentinelScanner,
    Session,
    SessionError,
    SessionManager,
)

NONCE = "0123456789abcdef"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def manager(tmp_path: Path, workdir: Path) -> Iterator[SessionManager]:
    with SessionManager(workdir, tmp_path / "logs") as session_manager:
        yield session_manager


@pytest.fixture
def session(manager: SessionManager) -> Session:
    return manager.create()


def unique_sleep_seconds() -> str:
    """An argument for ``sleep`` that no other process on the machine has."""
    return f"1000.{secrets.randbelow(10**9):09d}"


def processes_with_argument(argument: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline_file:
                arguments = cmdline_file.read().split(b"\0")
        except OSError:
            continue
        if argument.encode() in arguments:
            found.append(int(entry))
    return found


def running_with_argument(pid: int, argument: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline_file:
            return argument.encode() in cmdline_file.read().split(b"\0")
    except OSError:
        return False


def wait_for_sleepers(pid_file: Path, count: int, seconds: str, timeout: float = 20.0) -> list[int]:
    """Wait until ``count`` pids written to ``pid_file`` run ``sleep seconds``; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file.exists():
            pids = [int(line) for line in pid_file.read_text().split()]
            if len(pids) >= count and all(running_with_argument(pid, seconds) for pid in pids):
                return pids
        time.sleep(0.01)
    raise AssertionError(f"{pid_file} did not get {count} sleeping pids within {timeout} s")


def record_and_sleep(pid_file: Path, seconds: str) -> str:
    """A shell command that appends its pid to ``pid_file``, then becomes ``sleep seconds``."""
    return f"sh -c 'echo $$ >> {pid_file}; exec sleep {seconds}'"


# -- sentinel scanning -------------------------------------------------------------------


def sentinel(command_id: int, code: str) -> bytes:
    return f"\x1b]7770;{NONCE};{command_id};{code}\x07".encode()


STREAM = (
    b"first line\n"
    + sentinel(1, "s")
    + b"\x1b[1mbold\x1b[0m and \x1b]7770;ffffffffffffffff;9;0\x07 of another session\n"
    + sentinel(1, "0")
    + b"\x1b]7770;"
    + NONCE.encode()
    + b";not a sentinel\x07 tail\x1b"
    + sentinel(2, "137")
    + b"\x1b]7770"
)
STREAM_OUTPUT = (
    b"first line\n"
    b"\x1b[1mbold\x1b[0m and \x1b]7770;ffffffffffffffff;9;0\x07 of another session\n"
    b"\x1b]7770;" + NONCE.encode() + b";not a sentinel\x07 tail\x1b"
)
STREAM_SENTINELS = [Sentinel(1, None), Sentinel(1, 0), Sentinel(2, 137)]


def scan(pieces: list[bytes]) -> tuple[bytes, list[Sentinel]]:
    scanner = SentinelScanner(NONCE)
    output = b""
    sentinels = []
    for piece in pieces:
        for item in scanner.feed(piece):
            if isinstance(item, Sentinel):
                sentinels.append(item)
            else:
                output += item
    return output, sentinels


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_sentinels_are_found_wherever_the_stream_is_split(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[start:end] for start, end in itertools.pairwise(edges)]
    output, sentinels = scan(pieces)
    # The trailing partial marker is held back until more data shows what it is.
    assert output == STREAM_OUTPUT
    assert sentinels == STREAM_SENTINELS


def test_a_held_partial_marker_is_released_when_it_turns_out_to_be_output() -> None:
    output, sentinels = scan([b"abc\x1b]77", b"70; not ours\n"])
    assert output == b"abc\x1b]7770; not ours\n"
    assert sentinels == []


# -- running commands --------------------------------------------------------------------


def test_exit_codes_and_output(session: Session) -> None:
    result = session.run("echo hello; echo to stderr >&2", wait=30)
    assert (result.done, result.exit_code) == (True, 0)
    assert result.output == "hello\nto stderr\n"
    assert (result.start_offset, result.next_offset, result.truncated) == (0, 16, False)
    assert session.run("false", wait=30).exit_code == 1
    assert session.run("sh -c 'exit 7'", wait=30).exit_code == 7
    failed = session.run("no-such-command-here", wait=30)
    assert failed.exit_code == 127
    assert "no-such-command-here" in failed.output
    assert session.result().command_id == failed.command_id


def test_directory_variables_and_functions_persist(session: Session, workdir: Path) -> None:
    assert session.run("pwd", wait=30).output == f"{workdir}\n"
    session.run("mkdir sub && cd sub; export GREETING=hi; LOCAL=there; f() { echo f$1; }", wait=30)
    result = session.run("pwd; echo $GREETING $LOCAL; f 1; sh -c 'echo $GREETING'", wait=30)
    assert result.output == f"{workdir}/sub\nhi there\nf1\nhi\n"


def test_multi_line_command_with_heredoc(session: Session) -> None:
    command = "cat <<'EOF' > notes.txt\nline one\n  $NOT_EXPANDED\nEOF\nwc -l < notes.txt\n"
    command += "for i in 1 2; do\n  echo item $i\ndone"
    result = session.run(command, wait=30)
    assert result.output == "2\nitem 1\nitem 2\n"
    assert session.run("cat notes.txt", wait=30).output == "line one\n  $NOT_EXPANDED\n"


def test_a_100_kb_command(session: Session) -> None:
    value = "x" * 100_000
    result = session.run(f"value='{value}'\necho ${{#value}}", wait=30)
    assert (result.exit_code, result.output) == (0, "100000\n")


def test_run_returns_before_completion_with_an_offset_to_resume_from(session: Session) -> None:
    session.run("echo before", wait=30)
    early = session.run("echo start; sleep 2; echo done", wait=0.2)
    assert not early.done and early.exit_code is None
    assert session.status().busy
    assert session.wait(30)
    text, end = session.read(early.next_offset)
    assert (early.output + text).endswith("done\n")
    assert "done" in text
    final = session.result()
    assert (final.done, final.exit_code, final.next_offset) == (True, 0, end)
    assert final.output == "start\ndone\n"


def test_busy_session_refuses_a_second_command(session: Session) -> None:
    session.run("sleep 100")
    with pytest.raises(SessionError, match=r"still running command 1 .*interrupt or kill"):
        session.run("true")
    session.kill()
    assert session.run("echo free", wait=30).output == "free\n"


def test_send_input(session: Session) -> None:
    started = session.run("read answer; echo got $answer")
    assert not started.done
    session.send_input("forty two\n")
    assert session.wait(30)
    assert session.result().output == "got forty two\n"


def test_send_input_refuses_lines_a_terminal_would_cut(session: Session) -> None:
    session.run("read answer")
    with pytest.raises(SessionError, match=r"longer than the 4095 bytes.*redirect"):
        session.send_input("y" * 5000 + "\n")
    session.interrupt()
    assert session.wait(30)


def test_interrupt_ends_the_command_and_the_session_stays_usable(session: Session) -> None:
    session.run("sleep 100; echo not reached")
    session.interrupt()
    assert session.wait(30)
    result = session.result()
    assert result.exit_code == 130
    assert "not reached" not in result.output
    assert session.run("echo still here", wait=30).output == "still here\n"


def test_max_output_truncates_and_reading_resumes(session: Session) -> None:
    result = session.run("seq 1 2000", wait=30, max_output=100)
    assert result.done and result.truncated
    assert result.next_offset - result.start_offset == 100
    rest, end = session.read(result.next_offset, 1 << 20)
    assert result.output + rest == "".join(f"{n}\n" for n in range(1, 2001))
    assert end == session.status().output_end


def test_a_character_is_never_split_between_reads(session: Session) -> None:
    result = session.run("printf 'é%.0s' $(seq 1 1000)", wait=30, max_output=1001)
    assert result.truncated and result.output == "é" * 500
    assert result.next_offset == result.start_offset + 1000
    rest, _ = session.read(result.next_offset)
    assert rest == "é" * 500


def test_sentinels_of_other_sessions_reach_the_output(session: Session) -> None:
    fake = "\x1b]7770;ffffffffffffffff;1;0\x07"
    result = session.run(r"printf '\033]7770;ffffffffffffffff;1;0\007\n'", wait=30)
    assert result.output == fake + "\n"
    assert session.log_path.read_bytes() == (fake + "\n").encode()


def test_the_log_is_byte_identical_to_20_mb_of_output(session: Session, tmp_path: Path) -> None:
    copy = tmp_path / "written.bin"
    result = session.run(f"head -c 20000000 /dev/urandom | tee {copy}", wait=300, max_output=10)
    assert result.done and result.exit_code == 0 and result.truncated
    written = copy.read_bytes()
    assert len(written) == 20_000_000
    assert session.log_path.read_bytes() == written
    # Offset 0 left the in-memory window long ago: it is read back from the log.
    text, next_offset = session.read(0, 4096)
    assert text == written[:next_offset].decode("utf-8", "replace")
    text, next_offset = session.read(19_999_000, 4096)
    # A trailing lead byte of a UTF-8 sequence waits for the rest (the session is alive).
    assert 20_000_000 - 3 <= next_offset <= 20_000_000
    assert text == written[19_999_000:next_offset].decode("utf-8", "replace")


def test_offsets_older_than_the_window_come_from_the_log(tmp_path: Path, workdir: Path) -> None:
    with SessionManager(workdir, tmp_path / "logs", buffer_capacity=64) as small:
        session = small.create()
        expected = "".join(f"{n}\n" for n in range(1, 1001))
        assert session.run("seq 1 1000", wait=30).output == expected
        assert session.read(0, 10) == (expected[:10], 10)


def test_offsets_outside_the_output_are_refused(session: Session) -> None:
    session.run("echo 12345", wait=30)
    with pytest.raises(SessionError, match=r"between 0 and 6"):
        session.read(7)
    with pytest.raises(SessionError, match=r"between 0 and 6"):
        session.read(-1)
    with pytest.raises(SessionError, match=r"max_bytes must be a positive"):
        session.read(0, 0)
    with pytest.raises(SessionError, match=r"wait must be 0 or more"):
        session.run("true", wait=-1)


def test_result_before_any_command(session: Session) -> None:
    with pytest.raises(SessionError, match=r"no command has run in session 's1' yet"):
        session.result()


def test_exiting_the_shell_ends_the_session(session: Session) -> None:
    result = session.run("echo bye; exit 3", wait=30)
    assert (result.done, result.exit_code, result.output) == (True, 3, "bye\n")
    assert not session.status().alive
    with pytest.raises(SessionError, match=r"has exited \(exit code 3\).*create a new session"):
        session.run("true")


def test_status(session: Session) -> None:
    idle = session.status()
    assert (idle.name, idle.alive, idle.busy, idle.command, idle.output_end) == (
        "s1",
        True,
        False,
        None,
        0,
    )
    assert idle.pid is not None
    session.run("echo hi; sleep 100")
    assert session.status().busy
    session.kill()
    status = session.status()
    assert (status.busy, status.command_id, status.last_exit_code) == (False, 1, 137)
    assert status.command == "echo hi; sleep 100"
    assert status.started_at is not None and status.output_end >= 3


# -- kill and close: nothing is left behind ----------------------------------------------


# The shell's notices of killed jobs ("[1]+  Killed ...") must not reach the next command's
# output. Whether they would depends on when the shell reaps the jobs, so each scenario runs a
# few times.
KILL_REPETITIONS = 5


def kill_repeatedly(session: Session, tmp_path: Path, command: str, sleepers: int, exit_code: int) -> None:
    """Run ``command`` (``LAUNCH`` stands for a recorded sleep), kill it, check what is left."""
    for repetition in range(KILL_REPETITIONS):
        seconds = unique_sleep_seconds()
        pid_file = tmp_path / f"pids-{repetition}"
        session.run(command.replace("LAUNCH", record_and_sleep(pid_file, seconds)))
        wait_for_sleepers(pid_file, sleepers, seconds)
        session.kill()
        result = session.result()
        assert (result.done, result.exit_code) == (True, exit_code)
        assert "not reached" not in result.output
        assert processes_with_argument(seconds) == []
        assert session.run("echo alive", wait=30).output == "alive\n"


def test_kill_ends_the_command_and_its_background_children(session: Session, tmp_path: Path) -> None:
    kill_repeatedly(session, tmp_path, "LAUNCH & setsid LAUNCH & LAUNCH; echo not reached", 3, 137)


def test_kill_of_a_shell_loop_ends_its_background_children(session: Session, tmp_path: Path) -> None:
    # The shell leaves the loop at once, so it reaches its prompt while the job may still live.
    kill_repeatedly(session, tmp_path, "LAUNCH & while :; do :; done; echo not reached", 1, 130)


def test_kill_while_idle_ends_background_processes(session: Session, tmp_path: Path) -> None:
    for repetition in range(KILL_REPETITIONS):
        seconds = unique_sleep_seconds()
        pid_file = tmp_path / f"pids-{repetition}"
        session.run(f"nohup {record_and_sleep(pid_file, seconds)} > /dev/null 2>&1 &", wait=30)
        wait_for_sleepers(pid_file, 1, seconds)
        session.kill()
        assert processes_with_argument(seconds) == []
        assert session.status().alive
        assert session.run("echo alive", wait=30).output == "alive\n"
    # The notices are not lost: the log holds them, between the commands.
    assert session.log_path.read_text().count("Killed") == KILL_REPETITIONS


DAEMON = """python3 -c '
import os, sys
if os.fork(): sys.exit()
os.setsid()
if os.fork(): sys.exit()
null = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2): os.dup2(null, fd)
with open(sys.argv[1], "a") as pid_file: pid_file.write(f"{os.getpid()}\\n")
os.execvp("sleep", ["sleep", sys.argv[2]])
' PID_FILE SECONDS"""

LAUNCHES = {
    "background": "LAUNCH &",
    "nohup": "nohup LAUNCH > /dev/null 2>&1 &",
    "setsid": "setsid LAUNCH &",
    "subshell orphan": "( LAUNCH & )",
    "double-forked daemon": DAEMON,
}


@pytest.mark.parametrize("how", list(LAUNCHES))
def test_close_leaves_no_process_behind(manager: SessionManager, tmp_path: Path, how: str) -> None:
    session = manager.create()
    seconds = unique_sleep_seconds()
    pid_file = tmp_path / "pids"
    command = LAUNCHES[how].replace("LAUNCH", record_and_sleep(pid_file, seconds))
    command = command.replace("PID_FILE", str(pid_file)).replace("SECONDS", seconds)
    result = session.run(command, wait=30)
    assert result.done and result.exit_code == 0, result
    [pid] = wait_for_sleepers(pid_file, 1, seconds)
    manager.close(session.name)
    assert not running_with_argument(pid, seconds)
    assert processes_with_argument(seconds) == []
    assert not session.control_dir.exists()
    assert session.log_path.exists()


def test_close_all_ends_running_commands_of_every_session(manager: SessionManager, tmp_path: Path) -> None:
    seconds = unique_sleep_seconds()
    for index in range(3):
        manager.create().run(record_and_sleep(tmp_path / f"pids{index}", seconds))
    for index in range(3):
        wait_for_sleepers(tmp_path / f"pids{index}", 1, seconds)
    assert len(processes_with_argument(seconds)) == 3
    manager.close_all()
    assert processes_with_argument(seconds) == []
    assert manager.list() == []


HARNESS = """
import sys, time
from pathlib import Path
from pytest_innovator.sessions import SessionManager
workdir, log_dir, pid_file, seconds = sys.argv[1:]
manager = SessionManager(Path(workdir), Path(log_dir))
manager.create().run(f"setsid sh -c 'echo $$ > {pid_file}; exec sleep {seconds}' &", wait=30)
print("started", flush=True)
time.sleep(1000)
"""


def test_a_killed_harness_leaves_no_process_behind(tmp_path: Path, workdir: Path) -> None:
    seconds = unique_sleep_seconds()
    pid_file = tmp_path / "pids"
    harness = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HARNESS,
            str(workdir),
            str(tmp_path / "logs"),
            str(pid_file),
            seconds,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert harness.stdout is not None and harness.stdout.readline() == "started\n"
    wait_for_sleepers(pid_file, 1, seconds)
    harness.kill()
    harness.wait()
    # The reaper notices the end of its control pipe; give it time to act, then check.
    deadline = time.monotonic() + 30
    while processes_with_argument(seconds) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processes_with_argument(seconds) == []


def test_a_session_outlives_the_thread_that_created_it(manager: SessionManager) -> None:
    creator = threading.Thread(target=manager.create, args=("from-thread",))
    creator.start()
    creator.join()
    session = manager.get("from-thread")
    assert session.run("echo alive", wait=30).output == "alive\n"


# -- the one reader of every terminal ---------------------------------------------------


def session_threads() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate() if thread.name.startswith("session-"))


def only_lines_of(text: bytes, line: bytes) -> bool:
    """Whether ``text`` is made of copies of ``line`` (the last one possibly cut short)."""
    whole, _, rest = text.rpartition(b"\n")
    return whole.split(b"\n") == [line] * (whole.count(b"\n") + 1) and line.startswith(rest)


def test_a_quiet_session_is_served_while_others_print_flat_out(manager: SessionManager) -> None:
    printers = [manager.create() for _ in range(8)]
    for number, printer in enumerate(printers):
        printer.run(f"yes printer-{number}")
    quiet = manager.create()
    for number in range(50):
        result = quiet.run(f"echo {number}", wait=60)
        assert (result.done, result.exit_code, result.output) == (True, 0, f"{number}\n")
    for number, printer in enumerate(printers):
        assert printer.status().busy
        # Every terminal's output went to its own session, nothing of another's.
        assert only_lines_of(printer.log_path.read_bytes(), f"printer-{number}".encode())


def test_closing_sessions_while_others_print_does_not_disturb_them(manager: SessionManager) -> None:
    counters = [manager.create() for _ in range(3)]
    for counter in counters:
        counter.run("seq 1 300000")
    for _ in range(3):
        manager.create().run("yes")
    for status in manager.list():
        if status.command == "yes":
            manager.close(status.name)
    expected = "".join(f"{n}\n" for n in range(1, 300001)).encode()
    for counter in counters:
        assert counter.wait(120) and counter.result().exit_code == 0
        assert counter.log_path.read_bytes() == expected


def test_sessions_come_and_go_from_many_threads(manager: SessionManager) -> None:
    manager.create("printer").run("yes")

    def create_use_and_close(number: int) -> str:
        session = manager.create(f"churn-{number}")
        output = session.run(f"echo {number}", wait=60).output
        manager.close(session.name)
        return output

    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(create_use_and_close, range(12)))
    assert outputs == [f"{number}\n" for number in range(12)]
    assert manager.get("printer").status().busy


def test_closing_the_last_session_ends_the_reader_thread(tmp_path: Path, workdir: Path) -> None:
    assert session_threads() == []  # a session of an earlier test was left open
    with SessionManager(workdir, tmp_path / "logs") as manager:
        first, second = manager.create(), manager.create()
        assert session_threads() == ["session-reader"]  # one thread reads every terminal
        assert first.run("exit 4", wait=30).exit_code == 4
        manager.close(first.name)
        assert second.run("echo still read", wait=30).output == "still read\n"
    assert session_threads() == []
    with SessionManager(workdir, tmp_path / "logs") as manager:  # and starts again when needed
        assert manager.create().run("echo again", wait=30).output == "again\n"
    assert session_threads() == []


def test_a_session_whose_output_cannot_be_kept_stops_alone(manager: SessionManager) -> None:
    broken, healthy = manager.create(), manager.create()

    def disk_full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    broken._buffer.append = disk_full  # type: ignore[method-assign]
    result = broken.run("echo lost", wait=30)
    assert (result.done, result.exit_code) == (True, None)
    with pytest.raises(SessionError, match=r"stopped capturing output \(\[Errno 28\] No space left"):
        broken.run("true")
    assert healthy.run("echo fine", wait=30).output == "fine\n"
    manager.close(broken.name)
    assert healthy.run("echo still fine", wait=30).output == "still fine\n"


# -- the manager -------------------------------------------------------------------------


def test_names_and_clear_errors(manager: SessionManager) -> None:
    first = manager.create()
    build = manager.create("build")
    assert (first.name, build.name, manager.create().name) == ("s1", "build", "s2")
    assert manager.get("build") is build
    assert [status.name for status in manager.list()] == ["s1", "build", "s2"]
    with pytest.raises(SessionError, match=r"no session named 'nope'.*s1, build, s2"):
        manager.get("nope")
    with pytest.raises(SessionError, match=r"'build' already exists"):
        manager.create("build")
    with pytest.raises(SessionError, match=r"name 'a/b' is not allowed"):
        manager.create("a/b")
    manager.close("build")
    with pytest.raises(SessionError, match=r"session 'build' was closed"):
        manager.get("build")
    with pytest.raises(SessionError, match=r"'build' is closed"):
        build.run("true")
    again = manager.create("build")  # a closed name may be used again, with a new log
    assert again.log_path != build.log_path


def test_a_missing_working_directory_is_reported(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path / "missing", tmp_path / "logs")
    with pytest.raises(SessionError, match=r"missing does not exist"):
        manager.create()


def test_a_shell_that_cannot_start_is_reported(tmp_path: Path, workdir: Path) -> None:
    manager = SessionManager(workdir, tmp_path / "logs", env={"PATH": str(tmp_path / "empty")})
    with pytest.raises(SessionError, match=r"its shell exited.*cannot run 'bash'"):
        manager.create()
    assert manager.list() == []


def test_watch_any_returns_when_a_running_command_finishes(manager: SessionManager) -> None:
    assert manager.watch_any(0) is False  # nothing runs
    quick, slow = manager.create(), manager.create()
    slow.run("sleep 100")
    quick.run("sleep 0.5")
    assert manager.watch_any(60)
    assert not quick.status().busy and slow.status().busy


def test_env_and_wrap(tmp_path: Path, workdir: Path) -> None:
    env = {"PATH": os.environ["PATH"], "FROM_ENV": "given"}
    with SessionManager(
        workdir, tmp_path / "logs", env=env, wrap=lambda argv: ["env", "WRAPPED=yes", *argv]
    ) as manager:
        result = manager.create().run("echo $FROM_ENV $WRAPPED $TERM; env | grep -c pti", wait=30)
        assert result.output == "given yes dumb\n0\n"  # nothing of the session's own leaks


# -- the reaper on its own ---------------------------------------------------------------

REAPER = [sys.executable, "-m", "pytest_innovator.reaper", "--"]


def test_reaper_returns_the_exit_code_of_its_command() -> None:
    assert subprocess.run([*REAPER, "sh", "-c", "exit 3"], timeout=60).returncode == 3


def test_reaper_ends_orphans_when_its_command_exits(tmp_path: Path) -> None:
    seconds = unique_sleep_seconds()
    pid_file = tmp_path / "pids"
    script = f"setsid {record_and_sleep(pid_file, seconds)} & "
    script += f"while [ ! -s {pid_file} ]; do sleep 0.01; done"
    assert subprocess.run([*REAPER, "sh", "-c", script], timeout=60).returncode == 0
    assert processes_with_argument(seconds) == []


def test_reaper_ends_the_tree_on_sigterm() -> None:
    seconds = unique_sleep_seconds()
    reaper = subprocess.Popen([*REAPER, "sleep", seconds])

    def sleeping() -> list[int]:  # the reaper's own command line holds the argument too
        return [pid for pid in processes_with_argument(seconds) if pid != reaper.pid]

    deadline = time.monotonic() + 20
    while not sleeping() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sleeping()
    reaper.send_signal(signal.SIGTERM)
    assert reaper.wait(60) == 128 + signal.SIGKILL
    assert processes_with_argument(seconds) == []


def test_reaper_sigusr1_spares_its_command() -> None:
    seconds = unique_sleep_seconds()
    # The shell waits for its background sleep: once the sleep is killed, it exits normally.
    reaper = subprocess.Popen([*REAPER, "sh", "-c", f"sleep {seconds} & wait; exit 5"])
    deadline = time.monotonic() + 20
    while not processes_with_argument(seconds) and time.monotonic() < deadline:
        time.sleep(0.01)
    reaper.send_signal(signal.SIGUSR1)
    assert reaper.wait(60) == 5
    assert processes_with_argument(seconds) == []


def test_both_ways_of_walking_the_process_tree_agree() -> None:
    tree = subprocess.Popen(["sh", "-c", "sleep 100 & (sleep 100 & wait) & wait"])
    try:
        deadline = time.monotonic() + 20
        while len(descendants(tree.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        found = descendants(tree.pid, use_children_files=True)
        assert len(found) == 3  # two sleeps and the subshell
        assert sorted(descendants(tree.pid, use_children_files=False)) == sorted(found)
    finally:
        for pid in [*descendants(tree.pid), tree.pid]:
            os.kill(pid, signal.SIGKILL)
        tree.wait()


def test_reaper_usage_errors() -> None:
    result = subprocess.run([*REAPER[:-1]], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no command given" in result.stderr
