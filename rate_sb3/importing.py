"""Callables named by dotted import paths, as YAML hyperparameters name them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def import_callable(name: Any, what: str, example: str) -> Callable:
    """The callable at the dotted path ``name`` (a callable is returned as it is).

    :param name: ``"package.module.attribute"`` or a callable
    :param what: what the callable is for, to name it in errors (e.g. ``"env wrapper"``)
    :param example: a valid path, shown when ``name`` is not one
    """
    if callable(name):
        return name
    module_name, _, attribute = name.rpartition(".") if isinstance(name, str) else ("", "", "")
    if not module_name:
        raise ValueError(f"{what} {name!r}: expected a dotted import path such as {example}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{what} {name}: cannot import {module_name} ({error})") from error
    found = getattr(module, attribute, None)
    if not callable(found):
        raise ValueError(f"{what} {name}: {module_name} has nothing callable named {attribute!r}")
    return found
