"""Finding the app named on a command line: ``"module:attribute"`` or
``"path/to/file.py:attribute"``, what ``durably worker``, ``durably replay`` and
``durably doctor`` are given."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType

from durably.engine import Durably
from durably.errors import ConfigurationError


def load_app(spec: str) -> Durably:
    """The :class:`~durably.Durably` app named by ``spec``.

    ``spec`` is ``"module:attribute"`` (``myshop.workflows:app``; the attribute may
    be dotted) or ``"path/to/file.py:attribute"``. Modules of the current directory
    are importable, as with ``python -m``. A :class:`~durably.SyncDurably` stands for
    the app it wraps.

    Raises:
        ConfigurationError: the spec is malformed, the module cannot be found, the
            module raised while it was imported (the message names the error and
            where it was raised; the error is chained), or the attribute is missing or
            not an app.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"the app must be given as module:attribute (for example myshop.workflows:app), "
            f"not {spec!r}"
        )
    target: object = _import(module_name, spec)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    wrapped = getattr(target, "app", None)  # a SyncDurably wraps its Durably as .app
    if not isinstance(target, Durably) and isinstance(wrapped, Durably):
        target = wrapped
    if not isinstance(target, Durably):
        raise ConfigurationError(
            f"{spec!r} is a {type(target).__name__}, not a durably app (Durably or "
            f"SyncDurably); point at the object made with durably.Durably(...)"
        )
    return target


def _import(module_name: str, spec: str) -> ModuleType:
    if module_name.endswith(".py"):
        directory, _, file_name = module_name.rpartition("/")
        folder = os.path.abspath(directory or ".")
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = file_name.removesuffix(".py")
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules of this directory
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (
            module_name == error.name or module_name.startswith(f"{error.name}.")
        ):
            raise ConfigurationError(
                f"cannot import module {module_name!r} for the app {spec!r}: {error} (run "
                f"from the directory that contains it, or set PYTHONPATH)"
            ) from error
        raise _failed_import(module_name, error) from error
    except Exception as error:  # the user's module raised while being imported
        raise _failed_import(module_name, error) from error


def _failed_import(module_name: str, error: Exception) -> ConfigurationError:
    """The error for a module that was found but raised while it was imported."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<frozen ")  # the import system's own
    ]
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return ConfigurationError(
        f"importing module {module_name!r} failed: {type(error).__name__}: {error}{where}; "
        f"fix the module (try: python -c 'import {module_name}')"
    )
