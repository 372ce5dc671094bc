"""What ties the processes ``dormouse up`` starts to it, so that none outlives it unnoticed.

Two ties, each covering what the other cannot:

* On Linux every child asks the kernel for SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), so even a SIGKILLed supervisor takes its stack with it, each
  child stopping as on Ctrl-C. Celery's prefork pool does the same for its own processes.
* Every child inherits the supervisor's flock on ``DATA_DIR/up.lock``. A flock belongs to the
  open file, not to a process, so it is released only when the *last* process of the stack
  exits: a stack left running (no pdeathsig off Linux, a child stuck or stopped) keeps
  ``DATA_DIR`` held, and the next ``dormouse up`` refuses, naming the processes, instead of
  starting a second stack beside it. That is the guard everywhere, and the only one off Linux.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when this process dies; None off Linux.

    The kernel sends it when the *thread* that forked the child exits, not the process: the
    supervisor starts (and restarts) its children from its main thread only, so the two agree.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, in the parent: between fork and exec the child must not load anything.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def _preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(127)  # no tie to the parent: better not to run at all
        if os.getppid() != parent:
            # The parent died between fork and prctl: the signal will never come.
            os._exit(1)

    return _preexec


@dataclass(frozen=True)
class Holder:
    """A process that has ``DATA_DIR/up.lock`` open."""

    pid: int
    argv: tuple[str, ...]

    @property
    def command(self) -> str | None:
        """``up``, ``worker``, … for a ``dormouse`` process; None for another (the broker)."""
        for i, arg in enumerate(self.argv):
            if arg == "cli.main" or Path(arg).name == "dormouse":
                return next((a for a in self.argv[i + 1 :] if a in _COMMANDS), "")
        return None

    def describe(self) -> str:
        command = self.command
        if command is not None:
            return f"{self.pid} (dormouse {command})".replace(" )", ")")
        # Valkey rewrites its title: "valkey-server 127.0.0.1:0".
        name = Path(self.argv[0].split(" ")[0]).name if self.argv else "?"
        return f"{self.pid} ({name})"


_COMMANDS = {"up", "api", "worker", "beat"}


def holders(path: Path) -> list[Holder] | None:
    """The processes that have ``path`` open, by /proc; None where there is no /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    try:
        wanted = path.stat()
    except OSError:
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = fd.stat()  # follows the link to the open file
                if (target.st_dev, target.st_ino) == (wanted.st_dev, wanted.st_ino):
                    raw = (entry / "cmdline").read_bytes()
                    argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
                    found.append(Holder(int(entry.name), argv))
                    break
        except OSError:  # gone meanwhile, or another user's
            continue
    return sorted(found, key=lambda h: h.pid)
