"""Run a command as the root of a process tree that can always be ended as a whole.

Usage: ``python -m pytest_innovator.reaper [--control-fd R --reply-fd W] -- CMD ARGS...``

The reaper makes itself a session leader with fd 0 as its controlling terminal, marks itself a
child subreaper (``PR_SET_CHILD_SUBREAPER``), then starts CMD and waits. Because it is a
subreaper, every orphan in the tree (``cmd &``, ``nohup``, ``setsid``, double-forked daemons) is
reparented to the reaper instead of to init, so the reaper can always find it by walking
``/proc/<pid>/task/*/children`` from itself.

Control (bytes on the control fd, or signals):
  ``k`` / SIGUSR1    SIGKILL every descendant except CMD itself; ``k`` is acknowledged with a
                     ``k`` on the reply fd once they are all gone.
  ``K``              the same, after sending SIGINT to CMD, so that a shell abandons the rest of
                     the command list it is running (the killed job's status, 137, stays ``$?``).
  end of file on the control fd, SIGTERM, SIGHUP (the terminal hung up), or CMD exiting:
                     SIGKILL every descendant, reap them all and exit with CMD's status.

End of file on the control fd is how the owner's death is noticed: it happens when the last
copy of the write end closes, whichever thread created the reaper and through whatever wrapper
(a sandbox with its own PID namespace) it was started. ``PR_SET_PDEATHSIG`` is used only without
a control fd, because it fires when the *thread* that spawned the reaper exits.

What holds: when the reaper exits, no process it or CMD started is left. The one exception is a
``kill -9`` of the reaper itself (or a process that asks an outside service, such as systemd or
a container daemon, to start something for it); a sandbox with its own PID namespace covers the
first case, as everything in the namespace dies with its init.

Standard library only: this runs inside sandboxes that see little of the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import signal
import sys
import termios
import time
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_DEADLINE_SECONDS = 10.0
HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP)
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
USAGE = "usage: python -m pytest_innovator.reaper [--control-fd R --reply-fd W] -- CMD [ARGS...]"


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _children_of(pid: int) -> list[int]:
    children: list[int] = []
    try:
        task_ids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task_id in task_ids:
        try:
            with open(f"/proc/{pid}/task/{task_id}/children", "rb") as children_file:
                children.extend(int(child) for child in children_file.read().split())
        except OSError:
            continue
    return children


def process_stats() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) for every process now."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
            # The command name may contain spaces and parentheses: parse after the last ')'.
            fields = stat[stat.rindex(b")") + 2 :].split()
        except (OSError, ValueError):
            continue
        yield int(entry), fields


def _parent_map() -> dict[int, list[int]]:
    """Fallback for kernels without /proc/<pid>/task/<tid>/children: scan every process."""
    children: dict[int, list[int]] = {}
    for pid, fields in process_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    return children


HAVE_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def descendants(root: int, use_children_files: bool = HAVE_CHILDREN_FILES) -> list[int]:
    """Every process below ``root``, parents before their children."""
    parent_map = None if use_children_files else _parent_map()
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        children = _children_of(pid) if parent_map is None else parent_map.get(pid, [])
        found.extend(children)
        pending.extend(children)
    return found


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return True  # already gone
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"Z", b"X")


class Reaper:
    def __init__(self, argv: list[str], control_fd: int | None, reply_fd: int | None) -> None:
        self.argv = argv
        self.control_fd = control_fd
        self.reply_fd = reply_fd
        self.child_pid = 0
        self.child_status: int | None = None

    def start(self) -> None:
        with contextlib.suppress(PermissionError):  # already a session leader
            os.setsid()
        if os.isatty(0):
            try:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            except OSError as exc:
                sys.stderr.write(f"reaper: cannot take the terminal as controlling tty: {exc}\n")
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if self.control_fd is None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        for fd in (self.control_fd, self.reply_fd):
            if fd is not None:
                os.set_inheritable(fd, False)

        wakeup_read, wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup_fd = wakeup_read
        signal.set_wakeup_fd(wakeup_write)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, lambda *_: None)  # the wakeup fd carries the signal number
        for signum in IGNORED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

        self.child_pid = os.fork()
        if self.child_pid == 0:
            self._exec_child()

    def _exec_child(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
            for signum in HANDLED_SIGNALS + IGNORED_SIGNALS + (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(signum, signal.SIG_DFL)
            os.execvp(self.argv[0], self.argv)
        except BaseException as exc:
            try:
                sys.stderr.write(f"reaper: cannot run {self.argv[0]!r}: {exc}\n")
                sys.stderr.flush()
            finally:
                os._exit(127)

    def loop(self) -> int:
        watched = [self.wakeup_fd] + ([self.control_fd] if self.control_fd is not None else [])
        while True:
            readable, _, _ = select.select(watched, [], [])
            if self.wakeup_fd in readable:
                for signum in os.read(self.wakeup_fd, 512):
                    if signum == signal.SIGCHLD:
                        self.reap()
                    elif signum == signal.SIGUSR1:
                        self.kill_descendants(spare_child=True)
                    elif signum in (signal.SIGTERM, signal.SIGHUP):
                        return self.finish()
                if self.child_status is not None:
                    return self.finish()
            if self.control_fd is not None and self.control_fd in readable:
                try:
                    requests = os.read(self.control_fd, 512)
                except OSError:
                    requests = b""
                if not requests:
                    return self.finish()
                for request in requests:
                    if request in b"kK":
                        if request == ord("K") and self.child_status is None:
                            self._signal(self.child_pid, signal.SIGINT)
                        self.kill_descendants(spare_child=True)
                        self._reply(b"k")
                if self.child_status is not None:
                    return self.finish()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child_pid:
                self.child_status = status

    def kill_descendants(self, spare_child: bool) -> None:
        """SIGKILL the whole tree (but CMD if ``spare_child``) until none of it is left.

        Repeated because a process may fork while the tree is being walked, and the children of
        a killed process only show up under the reaper once their parent is gone.
        """
        me = os.getpid()
        deadline = time.monotonic() + KILL_DEADLINE_SECONDS
        while True:
            self.reap()
            remaining = [
                pid
                for pid in descendants(me)
                if not (spare_child and pid == self.child_pid) and not (spare_child and _is_zombie(pid))
            ]
            if not remaining or time.monotonic() > deadline:
                return
            for pid in remaining:
                self._signal(pid, signal.SIGKILL)
            time.sleep(0.0005)

    def finish(self) -> int:
        self.kill_descendants(spare_child=False)
        self.reap()
        if self.child_status is None:
            return 0
        if os.WIFSIGNALED(self.child_status):
            return 128 + os.WTERMSIG(self.child_status)
        return os.WEXITSTATUS(self.child_status)

    def _reply(self, message: bytes) -> None:
        if self.reply_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.reply_fd, message)

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise


def parse_args(args: list[str]) -> tuple[list[str], int | None, int | None]:
    control_fd: int | None = None
    reply_fd: int | None = None
    while args and args[0] != "--":
        if args[0] in ("--control-fd", "--reply-fd") and len(args) >= 2 and args[1].isdigit():
            if args[0] == "--control-fd":
                control_fd = int(args[1])
            else:
                reply_fd = int(args[1])
            args = args[2:]
        else:
            raise SystemExit(f"reaper: unexpected argument {args[0]!r}\n{USAGE}")
    if len(args) < 2:
        raise SystemExit(f"reaper: no command given\n{USAGE}")
    return args[1:], control_fd, reply_fd


def main(args: list[str] | None = None) -> int:
    argv, control_fd, reply_fd = parse_args(sys.argv[1:] if args is None else args)
    reaper = Reaper(argv, control_fd, reply_fd)
    reaper.start()
    return reaper.loop()


if __name__ == "__main__":
    sys.exit(main())
