"""Asynchronous command sessions: a PTY-backed bash per session, output addressed by offsets.

How a session works:

* The shell runs under ``pytest_innovator/reaper.py`` (session leader with the PTY as its
  controlling terminal, child subreaper), so every process a command starts, including ones
  put in the background with ``&``, ``nohup``, ``setsid`` or a double fork, stays below the
  reaper and ends with the session. The reaper is driven through a pipe: a byte asks it to
  kill, the end of the pipe (a closed session or a dead harness) makes it end everything.
* The terminal has no echo and no output processing (no ``\\n`` -> ``\\r\\n``): the log holds
  exactly the bytes the commands wrote.
* One reader thread per process moves the output of every session's terminal into that
  session's :class:`OutputBuffer` (the last bytes in memory, all of them in
  ``<log_dir>/<name>.log``). Offsets count bytes since the session began. The thread waits on
  all terminals at once (epoll) and reads them in rounds of about ``ROUND_BYTES`` in all:
  terminals it emptied on their last read come first, those with a backlog take turns, so a
  command's few lines are read within one short round however many sessions print flat out.
  (A thread per session made every step of a round trip queue for the interpreter lock behind
  fifty busy readers.) The thread starts with the first session and ends with the last. When
  a terminal ends (its processes have exited), a short-lived thread waits for the shell's exit
  code, so that the reader never blocks on one session.
* Completion comes from a sentinel the shell prints before each prompt (``PROMPT_COMMAND``):
  ``ESC ] 7770 ; nonce ; command id ; exit code BEL``. The reader removes sentinels from the
  stream, so neither buffer nor log contains them; the nonce is random per session and never
  exported, so programs run in the session do not print a valid one by accident.
  Before the sentinel the shell prints its notices of background jobs that changed state
  (``jobs -n``: "[1]+  Killed ..."), so they belong to the command during which that happened,
  not, by a race, to the next one.
* A kill's jobs may not have been reaped by the shell yet when its prompt runs, and their
  notices would then land in the next command's output. So a kill creates the file
  ``reaped-<command id>`` in the control directory while it lasts: a prompt for that command
  first waits for every job (``wait -n`` prints each one's notice; the kill ends them all).
  After the kill, an idle shell is sent an empty line, whose prompt does the same for jobs
  killed while no command ran or after the command ended: their notices are in the log between
  two commands.
* A command is written to ``<log_dir>/<name>.ctl/cmd-<id>.sh`` and the shell is sent the short
  line ``__pti_start <id>; . <file>``. Commands of any length and shape (heredocs, several
  lines) thus run in the shell itself, so ``cd``, variables and functions persist, and the
  terminal's 4095-byte line limit does not apply. ``__pti_start`` prints a start sentinel
  (``s`` in place of the exit code): interrupt and kill wait for it, because a signal that
  reaches the shell before it has read the command line is lost.
* The shell reads its settings from ``--rcfile`` (not from the environment), so the nonce and
  the prompt hooks are readonly shell variables and functions that no program inherits.

What a caller sees:

* Interrupt is Ctrl-C: SIGINT to the foreground job (exit code 130 unless the program handles
  it). Kill ends every process the session started but the shell; the running command ends
  with 137 and the rest of its command list is skipped (a command made only of shell builtins,
  such as ``while :; do :; done``, has no process to kill and ends with 130).
* ``exit``, or a failing command under ``set -e``, ends the shell as it would end a terminal:
  the command is done with the shell's exit code, and the session is no longer alive.

Errors a caller can cause raise :class:`SessionError`, whose message says what to do instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pytest_innovator.output_buffer import OutputBuffer
from pytest_innovator.reaper import process_stats

from .errors import InnovatorError

REAPER_PATH = Path(__file__).with_name("reaper.py")
SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TERMINAL_ROWS, TERMINAL_COLUMNS = 50, 200
TERMINAL_LINE_LIMIT = 4095  # longest line a terminal in canonical mode accepts
START_TIMEOUT_SECONDS = 30.0
WRITE_TIMEOUT_SECONDS = 10.0
KILL_TIMEOUT_SECONDS = 20.0
CLOSE_TIMEOUT_SECONDS = 15.0
READ_CHUNK_BYTES = 64 * 1024
ROUND_BYTES = 64 * 1024  # read from all terminals per round of the reader
DEFAULT_ENV = {"TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat"}

SENTINEL_PREFIX = b"\x1b]7770;"
SENTINEL_PAYLOAD = re.compile(rb"(\d{1,18});(s|\d{1,3})")
SENTINEL_PAYLOAD_MAX_BYTES = 24

# Read by the shell before its first prompt. PROMPT_COMMAND is unset first so that an exported
# one from the environment loses its export flag, then made readonly.
SHELL_INIT = r"""
__pti_nonce=@NONCE@
__pti_cmd=0
PS1='' PS2='' PS0=''
unset HISTFILE MAILCHECK PROMPT_COMMAND
set +o history
__pti_start() { __pti_cmd=$1; builtin printf '\033]7770;%s;%s;s\007' "$__pti_nonce" "$1"; }
__pti_reaped=@REAPED@
__pti_done() {
  local s=$?
  if [[ -e $__pti_reaped$__pti_cmd ]]; then
    if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 403)); then
      while builtin wait -n; (($? != 127)); do :; done
    fi
    builtin wait
  fi
  builtin jobs -n
  builtin printf '\033]7770;%s;%s;%s\007' "$__pti_nonce" "$__pti_cmd" "$s"
}
PROMPT_COMMAND=__pti_done
readonly PROMPT_COMMAND __pti_nonce __pti_reaped
readonly -f __pti_start __pti_done
"""
START_WAIT_SECONDS = 5.0
FOREGROUND_WAIT_SECONDS = 0.25


class SessionError(InnovatorError):
    """A request the session cannot serve; the message says what to do instead."""


@dataclass
class CommandResult:
    session: str
    command_id: int
    done: bool
    exit_code: int | None
    output: str  # utf-8 with errors="replace", from start_offset up to next_offset
    start_offset: int
    next_offset: int
    truncated: bool  # more output exists past next_offset than max_output allowed


@dataclass
class SessionStatus:
    name: str
    alive: bool
    busy: bool
    command: str | None
    command_id: int | None
    started_at: float | None
    last_exit_code: int | None
    output_end: int
    pid: int | None


@dataclass
class _Command:
    command_id: int
    text: str
    started_at: float
    start_offset: int
    script_path: Path
    started: bool = False
    done: bool = False
    exit_code: int | None = None
    end_offset: int | None = None


class Sentinel(NamedTuple):
    command_id: int
    exit_code: int | None  # None: the command started


class SentinelScanner:
    """Splits a terminal stream into output bytes and :class:`Sentinel` records.

    A sentinel split across two reads is held back until its end arrives.
    """

    def __init__(self, nonce: str) -> None:
        self._marker = SENTINEL_PREFIX + nonce.encode("ascii") + b";"
        self._held = b""

    def feed(self, data: bytes) -> list[bytes | Sentinel]:
        if self._held:
            data = self._held + data
            self._held = b""
        marker = self._marker
        items: list[bytes | Sentinel] = []
        pos = 0
        while True:
            start = data.find(marker, pos)
            if start < 0:
                cut = len(data) - self._partial_marker_length(data, pos)
                if cut > pos:
                    items.append(data if pos == 0 and cut == len(data) else data[pos:cut])
                self._held = data[cut:]
                return items
            payload_start = start + len(marker)
            payload_limit = payload_start + SENTINEL_PAYLOAD_MAX_BYTES
            bell = data.find(b"\x07", payload_start, payload_limit + 1)
            if bell < 0 and len(data) <= payload_limit:
                if start > pos:
                    items.append(data[pos:start])
                self._held = data[start:]  # the rest of the sentinel has not arrived yet
                return items
            match = SENTINEL_PAYLOAD.fullmatch(data, payload_start, bell) if bell >= 0 else None
            if match is None:  # looks like a sentinel but is not one: pass it through
                items.append(data[pos : start + 1])
                pos = start + 1
                continue
            if start > pos:
                items.append(data[pos:start])
            exit_code = None if match[2] == b"s" else int(match[2])
            items.append(Sentinel(int(match[1]), exit_code))
            pos = bell + 1

    def _partial_marker_length(self, data: bytes, pos: int) -> int:
        # The marker holds a single ESC (its first byte; the nonce is hex), so a tail of
        # ``data`` that starts the marker begins at the last ESC.
        escape = data.rfind(b"\x1b", max(pos, len(data) - len(self._marker) + 1))
        if escape >= 0 and self._marker.startswith(data[escape:]):
            return len(data) - escape
        return 0


def _incomplete_utf8_tail(data: bytes) -> int:
    """Length of a UTF-8 sequence cut short at the end of ``data`` (0 if none)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return back if back < needed else 0
    return 0


def _check_non_negative(what: str, value: float) -> None:
    if value < 0:
        raise SessionError(f"{what} must be 0 or more seconds, not {value}")


def _check_positive(what: str, value: int) -> None:
    if value <= 0:
        raise SessionError(f"{what} must be a positive number of bytes, not {value}")


class Session:
    """One PTY-backed bash. Create sessions through :class:`SessionManager`.

    All methods may be called from any thread.
    """

    def __init__(
        self,
        name: str,
        log_path: Path,
        workdir: Path,
        env: dict[str, str],
        wrap: Callable[[list[str]], list[str]],
        buffer_capacity: int,
        condition: threading.Condition,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.control_dir = log_path.with_suffix(".ctl")
        self._condition = condition
        self._ready = False
        self._shell_process_group = -1
        self._shell_command_line = b""
        self._alive = True
        self._closing = False
        self._failure: BaseException | None = None
        self._shell_exit_code: int | None = None
        self._next_command_id = 1
        self._current: _Command | None = None
        self._prompts = 0  # completion sentinels seen
        self._write_lock = threading.Lock()
        self._kill_lock = threading.Lock()
        self._reading_done = threading.Event()  # the reader no longer reads this terminal
        self._exit_waiter: threading.Thread | None = None

        nonce = secrets.token_hex(8)
        self._scanner = SentinelScanner(nonce)
        self.control_dir.mkdir(mode=0o700)
        init_path = self.control_dir / "init.sh"
        reaped = shlex.quote(str(self.control_dir / "reaped-"))
        init_path.write_text(SHELL_INIT.replace("@NONCE@", nonce).replace("@REAPED@", reaped))
        self._buffer = OutputBuffer(log_path, buffer_capacity)

        master_fd, slave_fd = os.openpty()
        control_read, self._control_fd = os.pipe()
        self._reply_fd, reply_write = os.pipe()
        self._master_fd = master_fd
        attributes = termios.tcgetattr(slave_fd)
        attributes[1] &= ~termios.OPOST
        attributes[3] &= ~(termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL | termios.ECHOCTL)
        termios.tcsetattr(slave_fd, termios.TCSANOW, attributes)
        window = struct.pack("HHHH", TERMINAL_ROWS, TERMINAL_COLUMNS, 0, 0)
        fcntl.ioctl(slave_fd, termios.TIOCSWINSZ, window)
        shell = ["bash", "--noprofile", "--rcfile", str(init_path), "--noediting", "-i"]
        reaper = [sys.executable, "-I", "-S", str(REAPER_PATH)]
        reaper += ["--control-fd", str(control_read), "--reply-fd", str(reply_write), "--"]
        try:
            self._process = subprocess.Popen(
                wrap(reaper + shell),
                stdin=slave_fd,
                stdout=slave_fd,
                stderr=slave_fd,
                cwd=workdir,
                env=env,
                pass_fds=(control_read, reply_write),
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (master_fd, self._control_fd, self._reply_fd):
                os.close(fd)
            self._release_files()
            raise SessionError(f"cannot start session {name!r} in {workdir}: {exc}") from exc
        finally:
            for fd in (slave_fd, control_read, reply_write):
                os.close(fd)
        self.pid: int | None = self._process.pid
        os.set_blocking(master_fd, False)
        self._reader = _start_reading(self)

        with condition:
            condition.wait_for(lambda: self._ready or not self._alive, START_TIMEOUT_SECONDS)
            ready, alive = self._ready, self._alive
        if not (ready and alive):
            output = self._buffer.read(0, 4096)[0].decode("utf-8", "replace").strip()
            self.close()
            problem = "its shell exited" if not alive else "its shell did not start in time"
            raise SessionError(f"cannot start session {name!r}: {problem}; its output was: {output or '(none)'}")
        init_path.unlink()

    # -- commands -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        current = self._current
        return current is not None and not current.done

    def run(self, command: str, wait: float = 0.0, max_output: int = 64 * 1024) -> CommandResult:
        """Start ``command`` in the shell; return at completion or after ``wait`` seconds.

        The result holds the output so far (at most ``max_output`` bytes from the command's
        start) and the offset to resume reading from. Raises SessionError if a command is
        still running or the session has ended.
        """
        _check_non_negative("wait", wait)
        _check_positive("max_output", max_output)
        script = command if command.endswith("\n") else command + "\n"
        with self._condition:
            self._require_usable()
            if self.busy:
                assert self._current is not None
                raise SessionError(
                    f"session {self.name!r} is still running command {self._current.command_id} "
                    f"({_shorten(self._current.text)!r}): wait for it, read its output, send it "
                    "input, interrupt or kill it, or run the new command in another session"
                )
            command_id = self._next_command_id
            self._next_command_id += 1
            script_path = self.control_dir / f"cmd-{command_id}.sh"
            script_path.write_bytes(script.encode("utf-8", "surrogateescape"))
            command_record = _Command(command_id, command, time.time(), self._buffer.end, script_path)
            self._current = command_record
        # ^U first erases a partial line left in the terminal, which would otherwise be glued
        # to the front of this one; the backslash and ``builtin`` keep aliases out of the way.
        line = f"\x15\\__pti_start {command_id}; builtin . {shlex.quote(str(script_path))}\n"
        try:
            self._write_terminal(line.encode())
        except SessionError:
            with self._condition:
                self._finish_command(command_record, exit_code=None)
            raise
        if wait > 0:
            self.wait(wait)
        return self.result(max_output)

    def wait(self, timeout: float) -> bool:
        """Block until no command is running or ``timeout`` seconds pass; True if none runs."""
        _check_non_negative("timeout", timeout)
        with self._condition:
            return self._condition.wait_for(lambda: not self.busy, timeout)

    def result(self, max_output: int = 64 * 1024) -> CommandResult:
        """State of the current (or last) command and up to ``max_output`` bytes of its output."""
        _check_positive("max_output", max_output)
        with self._condition:
            current = self._current
            if current is None:
                raise SessionError(f"no command has run in session {self.name!r} yet: run one first")
            if self._buffer.closed:
                raise SessionError(f"session {self.name!r} is closed; its log is {self.log_path}")
            done, exit_code = current.done, current.exit_code
            limit = current.end_offset if current.end_offset is not None else self._buffer.end
        output, next_offset = self._decode(current.start_offset, limit, max_output, not done)
        return CommandResult(
            session=self.name,
            command_id=current.command_id,
            done=done,
            exit_code=exit_code,
            output=output,
            start_offset=current.start_offset,
            next_offset=next_offset,
            truncated=next_offset < limit,
        )

    def read(self, since: int, max_bytes: int = 64 * 1024) -> tuple[str, int]:
        """Output from offset ``since`` (at most ``max_bytes`` bytes) and the offset after it.

        A UTF-8 character cut in two by the end of the range is left for the next read, unless
        it is all there is to return.
        """
        _check_positive("max_bytes", max_bytes)
        with self._condition:
            if self._buffer.closed:
                raise SessionError(f"session {self.name!r} is closed; its log is {self.log_path}")
            end, growing = self._buffer.end, self._alive
        if since < 0 or since > end:
            raise SessionError(
                f"offset {since} is outside the output of session {self.name!r}, which holds "
                f"{end} bytes: read from an offset between 0 and {end}"
            )
        return self._decode(since, end, max_bytes, growing)

    def _decode(self, since: int, limit: int, max_bytes: int, growing: bool) -> tuple[str, int]:
        size = min(max_bytes, limit - since)
        if size <= 0:
            return "", since
        try:
            data, next_offset = self._buffer.read(since, size)
        except ValueError as exc:  # closed meanwhile
            raise SessionError(f"session {self.name!r}: {exc}") from exc
        # Keep a character cut in two for the next read, unless nothing else would be returned.
        cut = _incomplete_utf8_tail(data)
        if 0 < cut < len(data) and (next_offset < limit or growing):
            data = data[:-cut]
            next_offset -= cut
        return data.decode("utf-8", "replace"), next_offset

    # -- input and signals ----------------------------------------------------------------

    def send_input(self, text: str) -> None:
        """Type ``text`` into the terminal (add ``\\n`` to end a line)."""
        with self._condition:
            self._require_usable()
        self._write_terminal(text.encode("utf-8", "surrogateescape"), check_line_length=True)

    def interrupt(self) -> None:
        """Send SIGINT to the foreground job, as Ctrl-C at a terminal does."""
        with self._condition:
            self._require_usable()
            self._wait_until_started()
            busy = self.busy
        if busy:
            self._wait_for_foreground_job()
        self._write_terminal(b"\x03")

    def kill(self) -> None:
        """SIGKILL every process the session started; the shell stays.

        A running command ends with exit code 137 and the rest of its command list is skipped;
        the shell's notices of the jobs that were killed ("[1]+  Killed ...") are part of its
        output. After a kill while no command runs, they are in the log between two commands.
        Returns once the processes are gone, the shell has reaped them and the command has
        finished.
        """
        with self._kill_lock:
            with self._condition:
                self._require_usable()
                self._wait_until_started()
                busy = self.busy
            if busy:
                self._wait_for_foreground_job()
            with self._condition:  # held while writing: close() closes the fd under it
                self._require_usable()
                # The shell's next prompt waits for its jobs to be reaped (all of them are being
                # killed), so that their notices come before that prompt's sentinel.
                reaped_flag = self.control_dir / f"reaped-{self._current.command_id if self._current else 0}"
                reaped_flag.touch()
                try:
                    os.write(self._control_fd, b"K" if self.busy else b"k")
                except OSError as exc:
                    reaped_flag.unlink()
                    raise SessionError(f"session {self.name!r} has ended ({exc})") from exc
            try:
                readable, _, _ = select.select([self._reply_fd], [], [], KILL_TIMEOUT_SECONDS)
                if not readable or not os.read(self._reply_fd, 1):
                    raise SessionError(
                        f"session {self.name!r} did not confirm the kill within "
                        f"{KILL_TIMEOUT_SECONDS:.0f} s: close the session"
                    )
                self.wait(5.0)
                self._await_prompt()
            finally:
                with contextlib.suppress(OSError):
                    reaped_flag.unlink()

    def _await_prompt(self) -> None:
        """If the shell is idle, make it print a prompt (an empty line) and wait for its sentinel.

        A kill's jobs may die while the shell waits for input, or while it already prints the
        prompt of a command that ended by itself; their notices would then be printed in the
        next command's output.
        """
        with self._condition:  # held while writing, so no command line can come before this one
            if self.busy or not self._alive or self._closing:
                return
            prompts = self._prompts
            try:
                self._write_terminal(b"\x15\n")
            except SessionError:
                return
            self._condition.wait_for(lambda: self._prompts > prompts or not self._alive, KILL_TIMEOUT_SECONDS)

    # -- state ----------------------------------------------------------------------------

    def status(self) -> SessionStatus:
        """Whether the shell lives, what runs (or ran last) and how much output there is."""
        with self._condition:
            current = self._current
            last_exit_code = None
            if current is not None and current.done:
                last_exit_code = current.exit_code
            return SessionStatus(
                name=self.name,
                alive=self._alive,
                busy=self.busy,
                command=current.text if current else None,
                command_id=current.command_id if current else None,
                started_at=current.started_at if current else None,
                last_exit_code=last_exit_code,
                output_end=self._buffer.end,
                pid=self.pid,
            )

    def _wait_until_started(self) -> None:
        """Let the shell read a just-sent command line first: a signal that reaches the shell
        before that is lost (the shell only redraws its prompt). The caller holds the condition.
        """
        self._condition.wait_for(
            lambda: not self.busy or (self._current is not None and self._current.started),
            START_WAIT_SECONDS,
        )

    def _wait_for_foreground_job(self) -> None:
        """Wait briefly until a started program holds the terminal.

        Ctrl-C is lost if it arrives while the shell starts a job: before the job takes the
        terminal it reaches only the shell, and after, until the job's program is executed, it
        reaches a copy of the shell that ignores it; either way the shell then waits for the
        whole job. A job leader still showing the shell's command line has not executed yet.
        Jobs that never execute a program (subshells) are signalled after the short wait.
        """
        deadline = time.monotonic() + FOREGROUND_WAIT_SECONDS
        with self._write_lock:
            while self._master_fd >= 0 and time.monotonic() < deadline:
                try:
                    foreground = os.tcgetpgrp(self._master_fd)
                except OSError:
                    return
                if foreground != self._shell_process_group and (_command_line(foreground) != self._shell_command_line):
                    return
                time.sleep(0.001)

    def _require_usable(self) -> None:
        if self._closing:
            raise SessionError(f"session {self.name!r} is closed: create a new session")
        if self._failure is not None:
            raise SessionError(
                f"session {self.name!r} stopped capturing output ({self._failure}): close it and create a new session"
            )
        if not self._alive:
            raise SessionError(
                f"the shell of session {self.name!r} has exited (exit code "
                f"{self._shell_exit_code}): close it and create a new session"
            )

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """End every process of the session, the shell included; the log stays on disk."""
        self._begin_close()
        self._finish_close()

    def _begin_close(self) -> None:
        with self._condition:
            if self._closing:
                return
            self._closing = True
            os.close(self._control_fd)  # end of file: the reaper kills everything and exits

    def _finish_close(self) -> None:
        with self._kill_lock, self._write_lock:  # the order kill() takes them in
            if self._master_fd < 0:
                return
            try:
                self._process.wait(CLOSE_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if not self._reading_done.wait(2.0):
                # Something still holds the terminal: the reaper was killed from outside.
                _kill_session_members(self._process.pid)
                self._reading_done.wait(2.0)
            _stop_reading(self)
            if self._exit_waiter is not None:
                self._exit_waiter.join()
            for fd in (self._master_fd, self._reply_fd):
                os.close(fd)
            self._master_fd = -1
            with self._condition:
                self._buffer.close()
                self._mark_shell_gone(self._process.returncode)
            self._release_files()

    def _release_files(self) -> None:
        self._buffer.close()
        shutil.rmtree(self.control_dir, ignore_errors=True)

    # -- terminal I/O ---------------------------------------------------------------------

    def _write_terminal(self, data: bytes, check_line_length: bool = False) -> None:
        with self._write_lock:
            if self._master_fd < 0:
                raise SessionError(f"session {self.name!r} is closed: create a new session")
            # Termios requests on the master act on the terminal the shell sees.
            if check_line_length and termios.tcgetattr(self._master_fd)[3] & termios.ICANON:
                longest_line = max(len(line) for line in data.split(b"\n"))
                if longest_line > TERMINAL_LINE_LIMIT:
                    raise SessionError(
                        f"a line of {longest_line} bytes is longer than the "
                        f"{TERMINAL_LINE_LIMIT} bytes a terminal accepts in line mode: write "
                        "the text to a file and redirect the command's input from it instead"
                    )
            view = memoryview(data)
            deadline = time.monotonic() + WRITE_TIMEOUT_SECONDS
            while view:
                try:
                    view = view[os.write(self._master_fd, view) :]
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise SessionError(
                        f"the terminal of session {self.name!r} is gone ({exc}): close it and create a new session"
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SessionError(
                        f"the terminal of session {self.name!r} accepted no input for "
                        f"{WRITE_TIMEOUT_SECONDS:.0f} s (the running program is not reading "
                        "it): interrupt or kill the command"
                    )
                select.select([], [self._master_fd], [], min(remaining, 0.05))
                time.sleep(0.001)

    def _terminal_ended(self) -> None:
        """Called by the reader: every process holding the terminal has exited."""
        # The reaper exits right after; its exit code is waited for aside, so that the reader
        # goes on serving the other sessions.
        self._exit_waiter = threading.Thread(
            target=self._await_shell_exit, name=f"session-{self.name}-exit", daemon=True
        )
        self._exit_waiter.start()

    def _stop_capturing(self, failure: BaseException) -> None:
        """Reading this terminal failed: record why and end the session's commands."""
        self._failure = failure
        with self._condition:
            self._mark_shell_gone(None)

    def _await_shell_exit(self) -> None:
        exit_code = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            exit_code = self._process.wait(5.0)
        with self._condition:
            self._mark_shell_gone(exit_code)

    def _consume(self, data: bytes) -> None:
        for item in self._scanner.feed(data):
            if isinstance(item, bytes):
                self._buffer.append(item)
            else:
                self._on_sentinel(item)

    def _on_sentinel(self, sentinel: Sentinel) -> None:
        with self._condition:
            if not self._ready:
                self._ready = True  # the first prompt
                try:
                    self._shell_process_group = os.tcgetpgrp(self._master_fd)
                    self._shell_command_line = _command_line(self._shell_process_group)
                except OSError:
                    pass  # interrupt and kill then skip waiting for a foreground job
                self._condition.notify_all()
                return
            if sentinel.exit_code is not None:
                self._prompts += 1
            current = self._current
            # A prompt for another id comes from a line typed with send_input: not a command.
            if current is None or current.done or current.command_id != sentinel.command_id:
                self._condition.notify_all()
                return
            if sentinel.exit_code is None:
                current.started = True
                self._condition.notify_all()
            else:
                self._finish_command(current, sentinel.exit_code)

    def _finish_command(self, command: _Command, exit_code: int | None) -> None:
        """Record the end of ``command``; the caller holds the condition."""
        command.done = True
        command.exit_code = exit_code
        command.end_offset = self._buffer.end
        with contextlib.suppress(OSError):
            command.script_path.unlink()
        self._condition.notify_all()

    def _mark_shell_gone(self, exit_code: int | None) -> None:
        """The caller holds the condition."""
        if self._alive:
            self._alive = False
            self._shell_exit_code = exit_code
        if self._current is not None and not self._current.done:
            self._finish_command(self._current, exit_code)
        self._condition.notify_all()


def _shorten(text: str, limit: int = 60) -> str:
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return first_line if len(first_line) <= limit else first_line[: limit - 3] + "..."


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline_file:
            return cmdline_file.read()
    except OSError:
        return b""


def _kill_session_members(session_id: int) -> None:
    """SIGKILL every process whose session id is ``session_id`` (last resort for close)."""
    for pid, fields in process_stats():
        if int(fields[3]) == session_id:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


class _TerminalReader:
    """The thread that reads the terminals of every session in the process.

    Each round it waits until terminals have output, then reads them in turn: first those it
    emptied on their last read (quiet sessions: a command's few lines, a prompt), then those
    with a backlog, least recently read first. A round reads about ``ROUND_BYTES`` in all, so a
    quiet session's output waits for a short round at most, however many others print flat out.
    The thread ends when its last session is removed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held for a whole round: a removed session is never read
        self._sessions: dict[int, Session] = {}  # by terminal (master) fd
        self._backlogged: set[int] = set()  # terminals left with output at their last read
        self._last_read: dict[int, int] = {}  # terminal -> number of the read that served it
        self._reads = 0
        self._stopping = False
        self._failed = False
        self.stopped = False  # set once, under _reader_lock, by whoever stops the thread
        self._epoll = select.epoll()
        self._wake_read, self._wake_write = os.pipe()
        self._epoll.register(self._wake_read, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="session-reader", daemon=True)
        self._thread.start()

    def add(self, session: Session) -> bool:
        """Start reading ``session``'s terminal; False if this reader has stopped working."""
        with self._lock:
            if self._failed:
                return False
            self._sessions[session._master_fd] = session
            self._last_read[session._master_fd] = 0
            # epoll takes a terminal added while the thread waits into that wait.
            self._epoll.register(session._master_fd, select.EPOLLIN)
            return True

    def remove(self, session: Session) -> bool:
        """Stop reading ``session``'s terminal; True if no session is left."""
        with self._lock:
            if self._sessions.get(session._master_fd) is session:
                self._drop(session._master_fd)
            return not self._sessions

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        os.write(self._wake_write, b"x")
        self._thread.join()
        self._epoll.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _drop(self, fd: int) -> Session:
        """The caller holds the lock."""
        session = self._sessions.pop(fd)
        del self._last_read[fd]
        self._backlogged.discard(fd)
        self._epoll.unregister(fd)
        session._reading_done.set()
        return session

    def _run(self) -> None:
        try:
            while True:
                events = self._epoll.poll()
                with self._lock:
                    if self._stopping:
                        return
                    self._read_round([fd for fd, _ in events if fd in self._sessions])
        except BaseException as exc:  # the sessions can no longer be read: say so in each
            with self._lock:
                self._failed = True
                sessions = [self._drop(fd) for fd in list(self._sessions)]
            for session in sessions:
                session._stop_capturing(exc)

    def _read_round(self, ready: list[int]) -> None:
        if not ready:
            return
        ready.sort(key=lambda fd: (fd in self._backlogged, self._last_read[fd]))
        share = max(1, ROUND_BYTES // len(ready))
        left = ROUND_BYTES
        for fd in ready:
            if left <= 0:
                break
            self._reads += 1
            self._last_read[fd] = self._reads
            left -= self._read_terminal(fd, min(share, left))

    def _read_terminal(self, fd: int, limit: int) -> int:
        """Move what ``fd`` holds, at least one read and about ``limit`` bytes at most, into its
        session; return the number of bytes read."""
        chunks: list[bytes] = []
        size = 0
        ended = emptied = False
        while size < limit:
            try:
                chunk = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                emptied = True
                break
            except OSError:  # EIO: every process holding the terminal has exited
                ended = True
                break
            if not chunk:
                ended = True
                break
            chunks.append(chunk)
            size += len(chunk)
        if emptied or ended:
            self._backlogged.discard(fd)
        else:
            self._backlogged.add(fd)
        session = self._sessions[fd]
        try:
            if chunks:
                session._consume(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except Exception as exc:
            self._drop(fd)
            session._stop_capturing(exc)
            return size
        if ended:
            session._terminal_ended()
            self._drop(fd)
        return size


_reader_lock = threading.Lock()
_reader: _TerminalReader | None = None


def _start_reading(session: Session) -> _TerminalReader:
    global _reader
    with _reader_lock:
        if _reader is None or not _reader.add(session):
            _reader = _TerminalReader()
            _reader.add(session)
        return _reader


def _forget_reader() -> None:
    global _reader, _reader_lock
    _reader, _reader_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_reader)  # a forked child has no reader thread


def _stop_reading(session: Session) -> None:
    """Stop reading ``session``'s terminal; the reader thread ends with its last session."""
    global _reader
    with _reader_lock:
        reader = session._reader
        if not reader.remove(session) or reader.stopped:
            return
        reader.stopped = True
        if _reader is reader:
            _reader = None
    reader.stop()


class SessionManager:
    """Creates, finds and closes the sessions of one workspace.

    ``wrap`` lets a sandbox backend prefix the spawned argv (for example with ``bwrap ...``);
    the wrapped program must keep the file descriptors it inherits open and must see
    ``log_dir`` and ``pytest_innovator/reaper.py`` at the same paths.
    """

    def __init__(
        self,
        workdir: Path,
        log_dir: Path,
        env: dict[str, str] | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
        buffer_capacity: int = 1 << 20,
    ) -> None:
        self.workdir = Path(workdir)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # An inherited TERM describes the harness's terminal, not the session's.
        self._env = {**os.environ, **DEFAULT_ENV} if env is None else {**DEFAULT_ENV, **env}
        self._wrap = wrap if wrap is not None else (lambda argv: argv)
        self._buffer_capacity = buffer_capacity
        # Shared by every session: a change of any session's state wakes all waiters.
        self.condition = threading.Condition()
        self._sessions: dict[str, Session] = {}
        self._starting: set[str] = set()
        self._closed_names: set[str] = set()
        self._names_given = 0

    def create(self, name: str | None = None) -> Session:
        """Start a new session; ``name`` defaults to ``s1``, ``s2``, ... ."""
        with self.condition:
            if name is None:
                name = self._next_name()
            elif not SESSION_NAME.fullmatch(name):
                raise SessionError(
                    f"session name {name!r} is not allowed: use letters, digits, '.', '_' or "
                    "'-' (at most 64 characters, starting with a letter or digit)"
                )
            elif name in self._sessions or name in self._starting:
                raise SessionError(f"a session named {name!r} already exists: pick another name or close it")
            self._starting.add(name)
        try:
            if not self.workdir.is_dir():
                raise SessionError(f"working directory {self.workdir} does not exist: create it first")
            session = Session(
                name,
                self._log_path(name),
                self.workdir,
                self._env,
                self._wrap,
                self._buffer_capacity,
                self.condition,
            )
        finally:
            with self.condition:
                self._starting.discard(name)
        with self.condition:
            self._sessions[name] = session
            self._closed_names.discard(name)
        return session

    def _next_name(self) -> str:
        while True:
            self._names_given += 1
            name = f"s{self._names_given}"
            if name not in self._sessions and name not in self._starting:
                return name

    def _log_path(self, name: str) -> Path:
        """``<name>.log``, or ``<name>.<n>.log`` if an earlier session of that name left one."""
        candidate = self.log_dir / f"{name}.log"
        number = 1
        while candidate.exists() or candidate.with_suffix(".ctl").exists():
            number += 1
            candidate = self.log_dir / f"{name}.{number}.log"
        return candidate

    def get(self, name: str) -> Session:
        with self.condition:
            session = self._sessions.get(name)
            if session is not None:
                return session
            existing = ", ".join(self._sessions) or "none"
            if name in self._closed_names:
                raise SessionError(f"session {name!r} was closed: create a new session (open sessions: {existing})")
            raise SessionError(
                f"there is no session named {name!r}: use one of the open sessions ({existing}) or create it"
            )

    def list(self) -> list[SessionStatus]:
        with self.condition:
            sessions = list(self._sessions.values())
        return [session.status() for session in sessions]

    def close(self, name: str) -> None:
        session = self.get(name)
        with self.condition:
            self._sessions.pop(name, None)
            self._closed_names.add(name)
        session.close()

    def close_all(self) -> None:
        with self.condition:
            sessions = list(self._sessions.values())
            self._closed_names.update(self._sessions)
            self._sessions.clear()
        for session in sessions:  # tell every reaper first, so they clean up in parallel
            session._begin_close()
        for session in sessions:
            session._finish_close()

    def watch_any(self, timeout: float) -> bool:
        """Wait until a command that is running now finishes (or ``timeout`` seconds pass).

        Returns True if one finished, False on timeout or at once when no command is running.
        """
        with self.condition:
            running = [session for session in self._sessions.values() if session.busy]
            if not running:
                return False
            return self.condition.wait_for(lambda: any(not session.busy for session in running), timeout)

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()
