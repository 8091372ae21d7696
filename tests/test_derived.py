"""DerivedWeights: derived tensors rebuilt exactly when a parameter they read holds other values."""

import pytest
import torch as th
from torch import nn

from rate_sb3.derived import DerivedWeights


def counted_double(linear: nn.Linear, sources: list[tuple[nn.Module, str]]) -> tuple[DerivedWeights, list[int]]:
    """Twice the layer's weight, cached, and the number of times it was built."""
    builds = [0]

    def build(like: th.Tensor) -> th.Tensor:
        builds[0] += 1
        return 2 * linear.weight.to(like)

    return DerivedWeights(sources, build), builds


def set_data(param: nn.Parameter, value: th.Tensor) -> None:
    param.data = value


UPDATES = {
    "in place, tracked": lambda linear: linear.weight.detach().add_(1.0),
    "p.data.mul_": lambda linear: linear.weight.data.mul_(-2.0),  # moves no version counter
    "p.data = tensor": lambda linear: set_data(linear.weight, th.randn(3, 4)),
    "another Parameter": lambda linear: linear.load_state_dict({"weight": th.randn(3, 4)}, strict=False, assign=True),
    "a NaN": lambda linear: linear.weight.data.view(-1)[0].fill_(float("nan")),
}


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", [th.float32, th.bfloat16])  # values read as bytes, or flattened (no numpy bf16)
def test_derived_weights_follow_every_update_and_are_built_once_otherwise(update, with_bias, dtype):
    linear = nn.Linear(4, 3).to(dtype)
    sources = [(linear, "weight")] + ([(linear, "bias")] if with_bias else [])
    derived, builds = counted_double(linear, sources)
    like = th.zeros(())
    with th.inference_mode():
        for _ in range(3):
            th.testing.assert_close(derived(like), 2 * linear.weight.to(like))
        UPDATES[update](linear)
        for _ in range(3):
            th.testing.assert_close(derived(like), 2 * linear.weight.to(like), equal_nan=True)
    assert builds[0] == 2


def test_derived_weights_are_built_for_each_dtype_of_like():
    linear = nn.Linear(4, 3)
    derived, builds = counted_double(linear, [(linear, "weight")])
    assert derived(th.zeros((), dtype=th.float64)).dtype == th.float64
    assert derived(th.zeros(())).dtype == th.float32
    assert builds[0] == 2


@pytest.mark.parametrize("update", UPDATES)
def test_views_of_viewed_parameters_follow_every_update(update):
    # a viewed parameter's values are not compared: writes reach the view, moves to other memory rebuild it
    linear = nn.Linear(4, 3)
    derived = DerivedWeights([(linear, "bias")], lambda like: linear.weight.detach().t(), viewed=[(linear, "weight")])
    like = th.zeros(())
    with th.inference_mode():
        derived(like)
        UPDATES[update](linear)
        th.testing.assert_close(derived(like), linear.weight.t(), equal_nan=True)
