"""Turning an /init body into a callable action: plain code, zip (+ virtualenv), or baked-in handler."""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import (
    ERR_BAD_VENV,
    ERR_NO_CODE,
    ERR_ZIP_NO_MAIN,
    FORBIDDEN,
    INIT_FAILED,
    ContractError,
    decode_base64,
)

# Upstream's launcher imports the action as module `main__` (`from main__ import main`).
ACTION_MODULE = "main__"


@dataclass(frozen=True)
class ActionSource:
    """Where the action's code lives once unpacked, and which function to call."""

    directory: Path
    entry_file: Path
    function: str


@dataclass(frozen=True)
class LoadedAction:
    name: str
    main: Callable[..., Any]
    source: ActionSource
    namespace: dict[str, Any]  # the module's globals, where it declares its models


def _fresh_dir(configured: str | None) -> Path:
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="warmwhisk-action-"))


def _extract_zip(data: bytes, target: Path, max_bytes: int) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ContractError(INIT_FAILED, f"The action code is base64 but not a zip file: {exc}") from exc
    with archive:
        total = 0
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts:
                raise ContractError(INIT_FAILED, f"Unsafe path in zip file: {info.filename!r}")
            total += info.file_size
            if total > max_bytes:
                raise ContractError(INIT_FAILED, f"The zip file unpacks to more than {max_bytes} bytes.")
        try:
            archive.extractall(target)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ContractError(INIT_FAILED, f"The zip file could not be extracted: {exc}") from exc
    # Zips built for the actionloop may name the entry file `exec`.
    if not (target / "__main__.py").exists() and (target / "exec").is_file():
        (target / "exec").rename(target / "__main__.py")
    if not (target / "__main__.py").is_file():
        raise ContractError(INIT_FAILED, ERR_ZIP_NO_MAIN)


def unpack(
    fields: dict[str, Any], handler: str | None, action_dir: str | None, max_zip_bytes: int
) -> ActionSource:
    """Write the action's code to disk (or locate the baked-in handler)."""
    code: str = fields["code"]
    if not code.strip():
        if handler is None:
            raise ContractError(FORBIDDEN, ERR_NO_CODE)
        return baked_in_source(handler, fields["main"])
    directory = _fresh_dir(action_dir)
    if fields["binary"]:
        _extract_zip(decode_base64(code), directory, max_zip_bytes)
    else:
        (directory / "__main__.py").write_text(code, encoding="utf-8")
    return ActionSource(directory, directory / "__main__.py", fields["main"])


def baked_in_source(handler: str, requested_main: str) -> ActionSource:
    """`WARMWHISK_HANDLER=path[:function]`: a file, or a folder with `__main__.py`.

    An explicit `:function` wins over /init's `main` (which the invoker always sends, "main" by
    default); without one, /init's `main` is used.
    """
    path_text, _, function = handler.partition(":")
    path = Path(path_text)
    entry = path / "__main__.py" if path.is_dir() else path
    if not entry.is_file():
        raise ContractError(INIT_FAILED, f"WARMWHISK_HANDLER names {entry}, which does not exist.")
    return ActionSource(entry.parent, entry, function or requested_main)


def _activate_virtualenv(directory: Path) -> None:
    venv = directory / "virtualenv"
    if not venv.is_dir():
        return
    for script in (venv / "bin" / "activate_this.py", venv / "Scripts" / "activate_this.py"):
        if script.is_file():
            code = compile(script.read_text(encoding="utf-8"), str(script), "exec")
            exec(code, {"__file__": str(script), "__name__": "activate_this"})
            return
    raise ContractError(INIT_FAILED, ERR_BAD_VENV)


def import_action(
    source: ActionSource, name: str, module_name: str = ACTION_MODULE, chdir: bool = True
) -> LoadedAction:
    """Import the entry file as module `main__` and find its entry function.

    The working directory becomes the action's folder, so relative `open()` works as upstream
    (`chdir=False` for a model host, which serves several actions in one process).
    Exceptions propagate: the caller reports them with their traceback.
    """
    _activate_virtualenv(source.directory)
    if str(source.directory) not in sys.path:
        sys.path.insert(0, str(source.directory))
    if chdir:
        os.chdir(source.directory)
    spec = importlib.util.spec_from_file_location(module_name, source.entry_file)
    if spec is None or spec.loader is None:
        raise ContractError(INIT_FAILED, f"Cannot load {source.entry_file} as Python code.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so pickling and dataclasses can find it
    spec.loader.exec_module(module)
    main = getattr(module, source.function, None)
    if not callable(main):
        raise ContractError(
            INIT_FAILED,
            f"The action has no function {source.function!r} to call (looked in {source.entry_file.name}).",
        )
    return LoadedAction(name=name, main=main, source=source, namespace=vars(module))
