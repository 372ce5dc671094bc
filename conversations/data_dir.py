"""DATA_DIR is readable by its owner only: it holds customers' messages (``dormouse.db``),
generated secrets (API key, webhook secrets) and operators' password hashes.

The directory is 0700 and what is in it 0600. Every ``dormouse`` command runs with a umask
of 077 (``cli/root.py``), which its children (``up``'s API, workers, beat, the embedded broker)
inherit, so SQLite's files, the beat schedule and the broker's log are created owner-only
without each writer knowing. A secret is created 0600 by ``os.open`` itself, never written
first and narrowed after: between the two, another user could open it. A DATA_DIR left
looser by an earlier version (0755 and 0644 under the usual umask) is tightened at start.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # group and world bits


def use_private_umask() -> None:
    """Files and directories this process (and its children) creates are owner-only."""
    os.umask(PRIVATE_UMASK)


def make_dir(data_dir: Path) -> None:
    """Create ``data_dir`` 0700 if it does not exist (mode given, not left to the umask)."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def make_private(data_dir: Path) -> int:
    """Create ``data_dir`` 0700, or take group and world access away from it and everything
    in it; one warning says what was open. Returns how many entries were tightened."""
    make_dir(data_dir)
    opened: list[tuple[Path, int]] = []
    for where, dirs, files in os.walk(data_dir):  # not into symlinked directories
        for path in (Path(where), *(Path(where, name) for name in (*dirs, *files))):
            if path != Path(where) and path.is_symlink():
                continue  # not ours to change: chmod would follow it elsewhere
            try:
                mode = stat.S_IMODE(path.lstat().st_mode)
                if mode & _OTHERS:
                    path.chmod(mode & ~_OTHERS)
                    opened.append((path, mode))
            except FileNotFoundError:  # removed meanwhile (a metrics file of a process)
                continue
    if opened:
        first, mode = opened[0]
        log.warning(
            "DATA_DIR %s was readable by others (%s was %04o): took group and world access "
            "away from %d entries; it is now owner-only (0700, files 0600)",
            data_dir,
            first.name,
            mode,
            len(opened),
        )
    return len(opened)


def create_secret_file(path: Path, value: str) -> None:
    """Write a new file readable by its owner only from the first byte (O_EXCL: never an
    existing one, nor through a symlink planted in its place)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(value)
