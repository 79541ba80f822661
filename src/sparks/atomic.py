"""Atomic writes: a result appears complete under its final name, or not at all.

A writer fills a hidden sibling ``.{name}.tmp-{pid}`` and renames it over the final name
(``os.replace``, atomic on one file system). A job killed mid-write leaves only such a sibling,
which no stage reads; the next write of the same result removes the leftovers of dead processes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(path: Path) -> None:
    """Delete the temporary siblings of ``path`` left by writers that no longer run."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.removeprefix(f".{path.name}.tmp-").split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """The hidden temporary name this process writes ``path`` under (stale ones removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextmanager
def atomic_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    ``suffix`` keeps an extension on the temporary name for writers that infer the format from it.
    """
    path = Path(path)
    tmp = temp_sibling(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
