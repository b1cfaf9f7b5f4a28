"""Files domicile keeps on the host (SQLite shards and catalog with their journals, keys, the
local archive): readable by their owner only, whatever the umask. A mode given at creation can
only be narrowed by the umask, never widened, so each folder and file is created with its mode
rather than fixed afterwards."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("domicile")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each ``0700``."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=DIR_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode ``0600`` unless it exists (SQLite then takes it over,
    and gives its journals the database file's mode)."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def tighten(root: Path) -> None:
    """Make ``root`` and everything under it private, saying what changed (a data dir made by
    an earlier release, or copied in with looser modes)."""
    changed = []
    for folder, _, files in os.walk(root):
        for path, wanted in [(Path(folder), DIR_MODE)] + [
            (Path(folder, f), FILE_MODE) for f in files
        ]:
            try:
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & 0o077:
                    continue
                path.chmod(wanted)
            except FileNotFoundError:  # a journal another process just finished with
                continue
            changed.append(f"{path} ({stat.S_IMODE(info.st_mode):o})")
    if changed:
        log.warning(
            "made %d path%s under %s private (owner only; they were open to others): %s",
            len(changed),
            "" if len(changed) == 1 else "s",
            root,
            ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""),
        )
