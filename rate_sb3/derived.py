"""Tensors derived from parameters (projected or folded weights), cached for inference while the parameters hold
the same values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import starmap
from operator import attrgetter, getitem
from typing import Generic, TypeVar

import torch as th
from torch import nn
from torch._utils import _flatten_dense_tensors

Derived = TypeVar("Derived")
_dtype_of = attrgetter("dtype")
_data_ptr, _stride = th.Tensor.data_ptr, th.Tensor.stride
_layout_of = attrgetter("shape", "dtype", "device")
_SAME_SIZE_INTEGER = {1: th.uint8, 2: th.int16, 4: th.int32, 8: th.int64}


class DerivedWeights(Generic[Derived]):
    """``build(like)`` computed once and reused while every parameter it reads holds the same values.

    Parameters change in many ways: in place through autograd (an optimizer step, ``load_state_dict``), in place
    through ``.data`` (SB3's ``polyak_update``, user code), to another tensor behind the same Parameter
    (``p.data = ...``, ``load_from_vector``, ``.to``) or to another Parameter (``load_state_dict(assign=True)``).
    No version counter or hook sees them all, so each call compares the parameters' values, bit for bit, with a
    copy taken when the derived tensors were built: one concatenation, one copy to bytes and one comparison.
    That costs memory traffic in proportion to the values (with the folded attention weights of a 64-wide
    model, a third of ``predict``'s time), so parameters that the derived tensors only view (a transpose, a
    detached alias) are ``viewed`` instead: every write to their memory shows in the views, and only where
    their values lie (data pointer, strides, shape, dtype, device) is compared, to rebuild the views when a
    parameter moves to other memory.

    :param sources: ``(module, name)`` of every parameter whose values ``build`` copies or computes from
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
        self._lookups = [(module._parameters, name) for module, name in sources]
        self._viewed = [(module._parameters, name) for module, name in viewed]
        self._built: tuple | None = None  # (key, values, derived), replaced as one: other threads see all or none

    def __call__(self, like: th.Tensor) -> Derived:
        if th.is_grad_enabled():  # keep the copy and the build out of autograd
            with th.no_grad():
                return self(like)
        parameters = list(starmap(getitem, self._lookups))
        values = _flatten_dense_tensors(parameters)  # one call (a view of a single parameter; mixed dtypes promote)
        viewed = list(starmap(getitem, self._viewed))
        key = (like.dtype, like.device, values.device, *map(_dtype_of, parameters), *map(_data_ptr, viewed))
        key += (*map(_stride, viewed), *map(_layout_of, viewed))
        current, built = _comparable(values), self._built
        if built is not None and built[0] == key and _same(current, built[1]):
            return built[2]
        derived = self.build(like)  # from the values compared above, or newer ones: the next call rebuilds then
        self._built = (key, current if isinstance(current, bytes) else current.clone(), derived)
        return derived


def _comparable(values: th.Tensor) -> bytes | th.Tensor:
    """Flat values in a form that compares equal exactly when the bits are the same (NaNs equal, -0.0 and 0.0
    not): on the CPU their bytes, a copy that ``==`` compares many times faster than ``torch.equal`` compares
    tensors there; elsewhere a view as integers."""
    if values.is_cpu and values.dtype != th.bfloat16:  # numpy has no bfloat16
        return values.numpy(force=True).tobytes()
    return values.view(_SAME_SIZE_INTEGER[values.element_size()])


def _same(current: bytes | th.Tensor, built: bytes | th.Tensor) -> bool:
    return current == built if isinstance(current, bytes) else th.equal(current, built)
