"""Tensors derived from parameters (projected or folded weights), cached for inference until a parameter changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import starmap
from operator import attrgetter, getitem, is_
from typing import Generic, TypeVar

import torch as th
from torch import nn

Derived = TypeVar("Derived")
_version_of = attrgetter("_version")


class DerivedWeights(Generic[Derived]):
    """``build(like)`` computed once and reused until a parameter it reads changes.

    A parameter changes when it is updated in place (an optimizer step, ``load_state_dict``: its version
    counter moves) or replaced (``load_state_dict(assign=True)``: another tensor). Another dtype or device
    of ``like`` also rebuilds.

    :param sources: ``(module, name)`` of every parameter ``build`` reads. They are looked up in the modules'
        parameter dicts at each call, which sees replaced parameters and costs far less than
        ``Module.__getattr__`` (inference steps take microseconds).
    :param build: the derived tensors for the dtype and device of ``like``; runs without gradient
    """

    def __init__(self, sources: Iterable[tuple[nn.Module, str]], build: Callable[[th.Tensor], Derived]) -> None:
        self.build = build
        self._lookups = [(module._parameters, name) for module, name in sources]
        self._parameters: list[th.Tensor] = []  # held, so that a replaced parameter's id is never reused
        self._versions: list[int] = []
        self._like: tuple | None = None
        self._value: Derived | None = None

    def __call__(self, like: th.Tensor) -> Derived:
        parameters = list(starmap(getitem, self._lookups))  # C loops: this check runs at every inference step
        versions = list(map(_version_of, parameters))
        like_key = (like.dtype, like.device)
        if versions != self._versions or like_key != self._like or not all(map(is_, parameters, self._parameters)):
            with th.no_grad():
                self._value = self.build(like)
            self._parameters, self._versions, self._like = parameters, versions, like_key
        return self._value
