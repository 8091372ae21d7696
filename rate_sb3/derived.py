"""Tensors derived from parameters (projected or folded weights), cached for inference until a parameter changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import starmap
from operator import attrgetter, getitem, is_
from typing import Generic, TypeVar

import torch as th
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

Derived = TypeVar("Derived")
_version_of = attrgetter("_version")
_registrations = 0  # parameters registered in any module so far (new modules, replaced parameters)


def _count_registration(module: nn.Module, name: str, parameter: nn.Parameter | None) -> None:
    global _registrations
    _registrations += 1


register_module_parameter_registration_hook(_count_registration)


class DerivedWeights(Generic[Derived]):
    """``build(like)`` computed once and reused until a parameter it reads changes.

    A parameter changes when it is updated in place (an optimizer step, ``load_state_dict``: its version
    counter moves) or replaced (``load_state_dict(assign=True)``, ``module.weight = ...``: another tensor,
    registered anew). Another dtype or device of ``like`` also rebuilds.

    :param sources: ``(module, name)`` of every parameter ``build`` reads. They are looked up again in the
        modules' parameter dicts only when a parameter has been registered anywhere since the last call (a
        registration hook counts them): inference steps take microseconds, and these checks run at each.
    :param build: the derived tensors for the dtype and device of ``like``; runs without gradient
    """

    def __init__(self, sources: Iterable[tuple[nn.Module, str]], build: Callable[[th.Tensor], Derived]) -> None:
        self.build = build
        self._lookups = [(module._parameters, name) for module, name in sources]
        self._parameters: list[th.Tensor] = []  # held, so that a replaced parameter's id is never reused
        self._versions: list[int] = []
        self._like: tuple | None = None
        self._registrations = -1  # the count when the parameters were last looked up
        self._value: Derived | None = None

    def __call__(self, like: th.Tensor) -> Derived:
        like_key = (like.dtype, like.device)
        if (
            self._registrations == _registrations  # the same parameters: their versions are enough
            and like_key == self._like
            and list(map(_version_of, self._parameters)) == self._versions  # C loops: this runs at every step
        ):
            return self._value
        registrations = _registrations
        parameters = list(starmap(getitem, self._lookups))
        versions = list(map(_version_of, parameters))
        if versions != self._versions or like_key != self._like or not all(map(is_, parameters, self._parameters)):
            with th.no_grad():
                self._value = self.build(like)
            self._parameters, self._versions, self._like = parameters, versions, like_key
        self._registrations = registrations
        return self._value
