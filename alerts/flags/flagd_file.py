"""The embedded default store: an OpenFeature flagd flag file, rewritten atomically.

A serving app that evaluates flags with the OpenFeature SDK and the flagd provider
in in-process file mode, or a `flagd` daemon started with ``--uri file:<path>``,
re-reads the file when it changes. We change only ``flags.<key>.defaultVariant``;
every other flag, targeting rule, ``$evaluators`` and ``metadata`` block is
written back as the same JSON value.

Flag definition format: https://flagd.dev/reference/flag-definitions/
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import (
    UNKNOWN_FLAG,
    FlagChange,
    FlagStore,
    FlagStoreError,
    UnknownFlagError,
    check_reason,
    check_variant,
)

__all__ = ["FlagdFileStore"]

NOT_A_FLAG_FILE = "{path}: not a flagd flag file ({why})"
BAD_FLAG = "{path}: flag {flag_key!r} is malformed ({why})"

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def _thread_lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


class FlagdFileStore(FlagStore):
    """A flagd JSON flag file whose flags' ``defaultVariant`` is the served version.

    Writes go to a temporary file in the same directory, are fsynced, renamed over
    the original with `os.replace` (atomic on POSIX) and the directory is fsynced,
    so a reader sees either the old file or the new one, never a mix. Writers in
    threads and processes are serialised with a lock file beside the flag file.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "flags.json").write_text('{"flags": {"loan-model": {"state": "ENABLED",'
    ...     ' "variants": {"v2": "v2", "v3": "v3"}, "defaultVariant": "v3"}}}')
    >>> store = FlagdFileStore(d / "flags.json")
    >>> store.current("loan-model")
    'v3'
    >>> store.set_variant("loan-model", "v2", reason="rollback").changed
    True
    >>> store.current("loan-model")
    'v2'
    >>> store.set_variant("loan-model", "v2", reason="again").noop
    True
    """

    kind = "flagd-file"

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync

    # -- reading ---------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise FlagStoreError(NOT_A_FLAG_FILE.format(path=self.path, why="missing")) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FlagStoreError(NOT_A_FLAG_FILE.format(path=self.path, why=f"invalid JSON: {exc}")) from exc
        if not isinstance(data, dict) or not isinstance(data.get("flags"), dict):
            raise FlagStoreError(NOT_A_FLAG_FILE.format(path=self.path, why="no top-level 'flags' object"))
        return data

    def _flag(self, data: dict[str, Any], flag_key: str) -> dict[str, Any]:
        flags = data["flags"]
        if flag_key not in flags:
            raise UnknownFlagError(
                UNKNOWN_FLAG.format(flag_key=flag_key, where=str(self.path), available=sorted(flags))
            )
        flag = flags[flag_key]
        if not isinstance(flag, dict) or not isinstance(flag.get("variants"), dict):
            raise FlagStoreError(BAD_FLAG.format(path=self.path, flag_key=flag_key, why="no 'variants' object"))
        return flag

    def current(self, flag_key: str) -> str:
        flag = self._flag(self._load(), flag_key)
        default = flag.get("defaultVariant")
        if not isinstance(default, str):
            raise FlagStoreError(BAD_FLAG.format(path=self.path, flag_key=flag_key, why="no 'defaultVariant'"))
        return default

    def variants(self, flag_key: str) -> list[str]:
        """The variant names the flag defines."""
        return list(self._flag(self._load(), flag_key)["variants"])

    # -- writing ---------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with _thread_lock(self.path):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def set_variant(self, flag_key: str, variant: str, *, reason: str, dry_run: bool = False) -> FlagChange:
        check_reason(reason)
        with self._locked():
            data = self._load()
            flag = self._flag(data, flag_key)
            check_variant(flag_key, variant, list(flag["variants"]))
            previous = flag.get("defaultVariant")
            notes = self._notes(flag)
            if previous == variant:
                return self._change(
                    flag_key,
                    previous,
                    variant,
                    changed=False,
                    dry_run=dry_run,
                    reason=reason,
                    path=str(self.path),
                    notes=notes,
                )
            if dry_run:
                return self._change(
                    flag_key,
                    previous,
                    variant,
                    changed=False,
                    dry_run=True,
                    reason=reason,
                    path=str(self.path),
                    notes=notes,
                )
            flag["defaultVariant"] = variant
            self._write_atomic(data)
        return self._change(
            flag_key,
            previous,
            variant,
            changed=True,
            dry_run=False,
            reason=reason,
            path=str(self.path),
            notes=notes,
        )

    @staticmethod
    def _notes(flag: dict[str, Any]) -> list[str]:
        notes = []
        if flag.get("state") != "ENABLED":
            notes.append(f"flag state is {flag.get('state')!r}: flagd serves no variant")
        if flag.get("targeting") not in (None, {}):
            notes.append("flag has targeting: defaultVariant applies only where no rule matches")
        return notes

    def _write_atomic(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        directory = self.path.parent
        try:
            mode = os.stat(self.path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            # mkstemp creates 0600; keep the mode the serving app could read before.
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.fsync:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}
