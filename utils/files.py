"""Files the app writes and reads: one atomic write, one bounded read of a file the user names.

`write_atomic` is the only way the app replaces a file (run folders, the response cache, the web
cache): a temporary file in the same folder, then a rename, so a reader never sees half a file and a
crash leaves the old one. Run folders ask for durability (fsync of the file and its folder: a run
costs money); caches do not (losing an entry costs one call, an fsync per entry would cost more).

`read_user_text` is the one way a file named by the user (config, batch, saved run) is read: bounded
in size before a byte is read, and every failure one clear line (`UsageError`), never a traceback.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from utils.errors import UsageError
from utils.text import bracket_depth


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Replace `path` with `data` all at once. `mode`: the file's permissions (default: the 0600 of a
    temporary file). `durable`: fsync the file and, after the rename, the folder. On failure the
    temporary file is removed and the error raised; the old file is untouched."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_user_text(path: Path, what: str, *, max_bytes: int, encoding: str = "utf-8",
                   missing: str | None = None, too_big: str | None = None) -> str:
    """The text of a file the user named, or a `UsageError` that starts with `what` (the flag or
    setting, e.g. "--batch"): file not found (`missing` replaces that line), a folder, larger than
    `max_bytes` (checked before reading; `too_big` replaces the line), unreadable or not `encoding`."""
    try:
        if path.stat().st_size > max_bytes:
            size = f"{max_bytes // 2**20} MB" if max_bytes >= 2**20 else f"{max_bytes // 1000} kB"
            raise UsageError(too_big or f"{what}: {path} is larger than {size}")
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise UsageError(missing or f"{what}: file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{what}: {path} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: cannot read {path}: {str(exc)[:200]}") from None


def parse_user_file(text: str, parse: Callable[[str], Any], where: str, *, max_depth: int,
                    syntax: type[Exception] | tuple[type[Exception], ...], describe: Callable[[Any], str],
                    error: type[Exception] = UsageError) -> Any:
    """`parse(text)` for a file the user gave (YAML, JSON): nesting past `max_depth` is refused before
    the parser recurses (a hostile 100,000 '[' would end in RecursionError), and a `syntax` error is
    one line, `<where> is not valid <describe(exc)>`, raised as `error`."""
    if bracket_depth(text) > max_depth:
        raise error(f"{where} is nested deeper than {max_depth} levels")
    try:
        return parse(text)
    except syntax as exc:
        raise error(f"{where} is not valid {describe(exc)}") from None
    except (RecursionError, ValueError, TypeError):
        raise error(f"{where} is nested too deeply or malformed") from None


def safe_yaml(text: str) -> Any:
    """`yaml.safe_load` on libyaml's C parser where PyYAML was built with it (a workflow spec parses
    in 1 ms instead of 14), the pure-Python one otherwise; same safe constructors either way."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def parse_user_yaml(text: str, where: str, *, max_depth: int) -> Any:
    """YAML the user wrote (a config file, a workflow spec), parsed safely (`parse_user_file`)."""
    import yaml

    return parse_user_file(text, safe_yaml, where, max_depth=max_depth, syntax=yaml.YAMLError,
                           describe=lambda exc: "YAML: " + str(exc).splitlines()[0])
