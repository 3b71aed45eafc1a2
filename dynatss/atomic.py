"""The one way dynatss writes files: atomically, with the normal file mode, and one-line errors.

Readers never see half a file, and a crash, a kill or a full disk mid-write leaves the previous
version (a checkpoint, a report, detections) intact. The temporary file sits beside the target as
``.<name>.tmp<pid>`` and is renamed onto it after an fsync; :func:`remove_stale_temporaries` deletes
those a killed process left behind. New files get mode ``0o666 & ~umask`` (usually 0644), as
``open()`` would give them. A failed write raises :class:`DynatssError` naming the file and the
reason (``No space left on device``, ``Permission denied``, ...).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from dynatss.errors import DynatssError, signals_deferred

_TEMPORARY_PATTERN = re.compile(r"\..+\.tmp(\d+)")
# A path-based writer (torch.onnx, safetensors) that fails while less than this is free on the
# device hit a full disk, whatever its own message says.
_FULL_DISK_BYTES = 1 << 20


def temporary_path(path: Path) -> Path:
    """Where the atomic writer of ``path`` puts its bytes before the rename."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, then put it back
    os.umask(mask)
    return 0o666 & ~mask


def _disk_is_full(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        stats = os.statvfs(folder)
        return stats.f_bavail * stats.f_frsize < _FULL_DISK_BYTES
    return False


def _write_error(path: Path, error: OSError, folder: Path) -> DynatssError:
    if error.strerror:
        reason = error.strerror
    elif _disk_is_full(folder):
        reason = "No space left on device"
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
    return DynatssError(f"{path}: cannot write ({reason})")


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DynatssError(f"{path.parent}: is a file, not a folder; cannot write {path.name} there") from None
    except OSError as error:
        raise DynatssError(f"{path.parent}: cannot create the folder ({error.strerror})") from None
    if path.is_dir():
        raise DynatssError(f"{path}: is a folder; expected a file name")


def _finish(temporary: Path, path: Path) -> None:
    """Give ``temporary`` the normal mode, fsync it, rename it onto ``path``, fsync the folder."""
    os.chmod(temporary, default_file_mode())
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible everywhere)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; on success the
    file is fsynced and renamed onto ``path``. On failure it is removed and ``path`` is untouched.

    Prefer :func:`atomic_write` (the writer gets an open file, so a full disk reports ENOSPC).
    """
    with atomic_paths(path) as (temporary,):
        yield temporary


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together (a safetensors export and its ``.json``).

    Yields one temporary beside each path. Only once every one of them is written are they renamed
    onto their paths, in the order given (put first the file that can tell a stale partner: issue
    18); a failure while writing any of them removes them all and leaves every path as it was.
    """
    paths = [Path(path) for path in paths]
    for path in paths:
        _make_parent(path)
    temporaries = [temporary_path(path) for path in paths]
    where = str(paths[0]) + "".join(f" (and {path.name})" for path in paths[1:])
    try:
        yield temporaries
        for temporary, path in zip(temporaries, paths):
            _finish(temporary, path)
    except OSError as error:
        failure = _write_error(Path(where), error, paths[0].parent)
        _remove(temporaries)
        raise failure from None
    except RuntimeError:  # path-based writers (torch, safetensors) report I/O this way
        full = _disk_is_full(paths[0].parent)
        _remove(temporaries)
        if full:
            raise DynatssError(f"{where}: cannot write (No space left on device)") from None
        raise
    except BaseException:
        _remove(temporaries)
        raise


def _remove(temporaries: list[Path]) -> None:
    for temporary in temporaries:
        temporary.unlink(missing_ok=True)


def write_into(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on ``path`` opened for writing (created with the normal mode): the
    writer behind :func:`atomic_write`, for the temporaries of :func:`atomic_paths`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    with os.fdopen(descriptor, "wb") as handle:
        write(handle)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it onto ``path``.

    ``write`` is one bounded write (a checkpoint, a text): Ctrl-C and SIGTERM wait until the file is
    in place (:func:`~dynatss.errors.signals_deferred`), then stop the program as usual.
    """
    with signals_deferred(), atomic_path(path) as temporary:
        write_into(temporary, write)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_file(path: str | Path, *, what: str = "output") -> Path:
    """Fail early, in one line, if ``path`` could not be written (before hours of work are done).

    The folder may not exist yet (it is created on write); an existing folder at ``path``, a file
    where a folder is needed, or a folder this process cannot write is a DynatssError.
    """
    path = Path(path)
    if path.is_dir():
        raise DynatssError(f"{path}: {what} is a folder; expected a file name")
    check_writable_folder(path.parent, what=f"folder of the {what}")
    return path


def check_writable_folder(folder: str | Path, *, what: str = "output folder") -> Path:
    """Fail early if files cannot be created in ``folder`` (it need not exist yet)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link cannot be created through
            raise DynatssError(f"{existing}: {what}: broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise DynatssError(f"{existing}: {what}: is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DynatssError(f"{existing}: {what}: not writable (permission denied or read-only)")
    return folder


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.tmp<pid>`` files in ``folder`` whose process no longer runs (a killed run's
    half-written checkpoints); return what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for candidate in folder.iterdir():
        match = _TEMPORARY_PATTERN.fullmatch(candidate.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to another user
    except (OverflowError, ValueError):
        return False  # not a process id at all
    return True
