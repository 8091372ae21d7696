"""Tensors derived from parameters (projected or folded weights), cached for inference while the parameters hold
the same values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import starmap
from operator import attrgetter, getitem
from typing import Generic, TypeVar

import numpy as np
import torch as th
from torch import nn
from torch._utils import _flatten_dense_tensors

Derived = TypeVar("Derived")
_data_ptr, _stride, _size, _device_index = th.Tensor.data_ptr, th.Tensor.stride, th.Tensor.size, th.Tensor.get_device
_dtype = attrgetter("dtype")
_to_bytes = np.ndarray.tobytes
_SAME_SIZE_INTEGER = {1: th.uint8, 2: th.int16, 4: th.int32, 8: th.int64}


class DerivedWeights(Generic[Derived]):
    """``build(like)`` computed once and reused while every parameter it reads holds the same values.

    Parameters change in many ways: in place through autograd (an optimizer step, ``load_state_dict``), in place
    through ``.data`` (SB3's ``polyak_update``, user code), to another tensor behind the same Parameter
    (``p.data = ...``, ``load_from_vector``, ``.to``) or to another Parameter (``load_state_dict(assign=True)``).
    No version counter or hook sees them all, so each call checks two things: where every parameter's values
    lie (data pointer, strides, shape, dtype, device), so that a move to other memory rebuilds; and the values,
    bit for bit, of the parameters that ``build`` copies or computes from, against a copy taken when it ran.
    Parameters that the derived tensors only view (a transpose, a detached alias) need no value check: every
    write to their memory shows in the views.

    :param sources: ``(module, name)`` of every parameter (or buffer) whose values ``build`` copies or computes from
    :param build: the derived tensors for the dtype and device of ``like``; runs without gradient
    :param viewed: ``(module, name)`` of every parameter whose memory ``build`` only views
    """

    def __init__(
        self,
        sources: Iterable[tuple[nn.Module, str]],
        build: Callable[[th.Tensor], Derived],
        viewed: Iterable[tuple[nn.Module, str]] = (),
    ) -> None:
        self.build = build
        sources = [(_tensors_of(module, name), name) for module, name in sources]
        self._n_sources = len(sources)
        self._lookups = sources + [(_tensors_of(module, name), name) for module, name in viewed]
        self._built: _Built | None = None  # replaced as one: other threads see all or none

    def __call__(self, like: th.Tensor) -> Derived:
        if th.is_grad_enabled():  # keep the copy and the build out of autograd
            with th.no_grad():
                return self(like)
        parameters = list(starmap(getitem, self._lookups))
        # the device's index, not the device, which is a new object at each call (a move also moves the pointer)
        key = (like.dtype, like.get_device(), *map(_data_ptr, parameters), *map(_stride, parameters))
        key += (*map(_size, parameters), *map(_dtype, parameters), *map(_device_index, parameters))
        built = self._built
        if built is not None and built.key == key and built.sources.unchanged():
            return built.derived
        sources = _Snapshot(parameters[: self._n_sources])
        derived = self.build(like)  # from the values kept above, or newer ones: the next call rebuilds then
        self._built = _Built(key, sources, derived)
        return derived

    def __getstate__(self) -> dict:
        # a copy's parameters lie elsewhere (and the snapshot's views would not follow them): it builds its own
        return {**self.__dict__, "_built": None}


def _tensors_of(module: nn.Module, name: str) -> dict[str, th.Tensor]:
    """The module's dict that holds ``name``: its parameters, or its buffers (a standardisation's statistics)."""
    return module._parameters if name in module._parameters else module._buffers


class _Snapshot:
    """Parameters' values as they were, read again in a form that compares equal exactly when the bits are the
    same (NaNs equal, -0.0 and 0.0 not).

    On the CPU the parameters are read through numpy views of their memory, made once (valid while the memory
    does not move, which the caller checks) and copied to bytes, which ``==`` compares many times faster than
    ``torch.equal`` compares tensors there. Elsewhere (and for bfloat16, which numpy lacks) they are flattened
    into one tensor viewed as integers.
    """

    def __init__(self, parameters: list[th.Tensor]) -> None:
        on_host = all(p.is_cpu and p.dtype != th.bfloat16 for p in parameters)
        self._views = [p.detach().numpy() for p in parameters] if on_host else None
        self._parameters = None if on_host else parameters
        values = self._read()
        self._values = values if on_host else values.clone()

    def unchanged(self) -> bool:
        current = self._read()
        return current == self._values if self._views is not None else th.equal(current, self._values)

    def _read(self) -> list[bytes] | th.Tensor:
        if self._views is not None:
            return list(map(_to_bytes, self._views))
        values = _flatten_dense_tensors(self._parameters)  # one call; mixed dtypes promote
        return values.view(_SAME_SIZE_INTEGER[values.element_size()])


@dataclass(frozen=True)
class _Built(Generic[Derived]):
    key: tuple
    sources: _Snapshot
    derived: Derived
