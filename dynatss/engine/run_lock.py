"""One training process per run directory (issue 18): an OS-level lock held for the process's life.

``dynatss train`` (plain, ``--resume``, ``--overwrite``) holds an exclusive lock on
``RUN_DIR/train.lock`` from before it reads anything in the run directory until it ends; a second
``train`` into the same directory is refused in one line naming the holder (its pid, host, start
time and command, which the lock file holds). The lock is ``flock(2)`` (``fcntl``; on NFS the kernel
turns it into a byte-range lock) or ``msvcrt.locking`` on Windows: the operating system releases it
when the process ends, however it ends, so a crash or ``kill -9`` never leaves a stale lock. The file
is deleted when the lock is released; one left by a killed process means nothing and is reused.
Where the platform has neither, training runs unlocked.

Readers (``eval``, ``report``, ``predict``) take no lock: every file of a run is replaced atomically
(dynatss.atomic), so they read a live run without disturbing it.

A run directory that does not exist yet is locked when it is created, after every check has passed
(nothing is written before that); if another run appeared there meanwhile, this one is refused.
Under torchrun only global rank 0 locks: it alone writes the run directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from dynatss.engine.run_dir import holds_run
from dynatss.errors import DynatssError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None

LOCK_FILE = "train.lock"
# A file the holder deleted between our open and our lock is retried; more tries than this means
# the holders are changing faster than we can look, which does not happen.
_ATTEMPTS = 8
# msvcrt locks a byte range; lock one far past the holder's description so that it stays readable.
_WINDOWS_LOCK_OFFSET = 1 << 20
# The holder's command line, shortened to keep the refusal on one readable line.
_COMMAND_CHARS = 160


def _try_lock(descriptor: int) -> bool:
    """Take the exclusive lock without waiting; False when another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if msvcrt is not None:  # pragma: no cover - Windows
        os.lseek(descriptor, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    return True  # no locking on this platform: run unlocked


def _holder_description() -> str:
    """What a refused process prints about this one (JSON, one line)."""
    return json.dumps({
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([_program(), *sys.argv[1:]])[:_COMMAND_CHARS],
    })  # fmt: skip


def _program() -> str:
    """``dynatss`` for the command line (its script, ``python -m dynatss``), else the script's name
    (a Python program calling ``Detector.train``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return "dynatss" if name in ("dynatss", "__main__.py", "-c") else name


def describe_holder(lock_file: Path) -> str:
    """``pid 123 on host 'gpu1' since 2025-01-01 10:00:00: dynatss train cfg.yaml``, or less when
    the holder has not written its description yet (or it cannot be read)."""
    try:
        holder = json.loads(lock_file.read_text())
        return (f"pid {int(holder['pid'])} on host '{holder['host']}' since {holder['started']}: "
                f"{holder['command']}")  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said which yet"


class RunDirLock:
    """The lock of one run directory. Use as a context manager around the whole run::

        with RunDirLock(run_dir) as lock:   # locks now if run_dir exists
            ...                              # checks, reads (nothing written)
            lock.hold(create=True)           # creates run_dir if needed and locks it
            ...                              # writes

    ``enabled=False`` (torchrun ranks other than 0) makes every method a no-op.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.enabled = enabled
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def __enter__(self) -> RunDirLock:
        self.hold(create=False)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()

    def hold(self, *, create: bool) -> None:
        """Lock the run directory if not yet held; a holder elsewhere is a one-line DynatssError.

        ``create=False`` locks only a directory that exists and can be written (the checks report
        the others); ``create=True`` creates it first, and refuses a run that appeared in it since
        the checks, when it was not locked yet.
        """
        if not self.enabled or self.held:
            return
        if not create and not (self.run_dir.is_dir() and os.access(self.run_dir, os.W_OK | os.X_OK)):
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._descriptor = self._lock()
        except OSError as error:
            raise DynatssError(f"{self.path}: cannot create the run directory's lock ({error.strerror})") from None
        self._write_description()
        if create and holds_run(self.run_dir):  # not locked during the checks, and a run is here now
            self.release()
            raise DynatssError(
                f"{self.run_dir}: another process started a training run here while this one was starting; "
                "continue it with --resume, or choose another --output-dir"
            )

    def _lock(self) -> int:
        """Open, create and lock the lock file, retrying when its holder deleted it under us."""
        for _ in range(_ATTEMPTS):
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _try_lock(descriptor):
                os.close(descriptor)
                raise DynatssError(
                    f"{self.run_dir}: in use by another training process ({describe_holder(self.path)}); "
                    "wait for it to end or stop it, or choose another --output-dir"
                )
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(descriptor), os.stat(self.path)):
                    return descriptor
            os.close(descriptor)  # we locked a file its holder has just deleted: take the new one
        raise DynatssError(f"{self.path}: the lock file keeps changing; is another process starting here?")

    def _write_description(self) -> None:
        with contextlib.suppress(OSError):  # only the refusal message of others needs it
            os.ftruncate(self._descriptor, 0)
            os.lseek(self._descriptor, 0, os.SEEK_SET)
            os.write(self._descriptor, _holder_description().encode("utf-8"))

    def release(self) -> None:
        """Delete the lock file, then unlock it (in that order, so that no one locks a file about
        to vanish without noticing); nothing when not held."""
        if self._descriptor is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._descriptor)  # closing releases the lock
        self._descriptor = None
