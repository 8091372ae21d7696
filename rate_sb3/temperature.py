"""The entropy temperature of online fine-tuning: fixed, or learned by dual ascent against a target entropy."""

from __future__ import annotations

import math

import torch as th
from gymnasium import spaces
from torch import nn

MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 1.0
DEFAULT_INITIAL_TEMPERATURE = 0.01


class EntropyTemperature(nn.Module):
    """Weight of the entropy bonus in the online loss (as in SAC and the Online Decision Transformer).

    Learned, it is the Lagrange multiplier of the constraint "entropy >= target": each :meth:`update` raises it
    while the policy's entropy is below the target and lowers it while above, within [1e-4, 1].

    :param ent_coef: ``"auto"`` or ``"auto_<initial value>"`` (learned), or a float (fixed)
    :param target_entropy: ``"auto"`` (:func:`default_target_entropy`) or a float, in nats per step
    :param action_space: the policy's action space
    :param learning_rate: learning rate of the temperature's optimizer
    """

    def __init__(
        self, ent_coef: str | float, target_entropy: str | float, action_space: spaces.Space, learning_rate: float
    ) -> None:
        super().__init__()
        initial, self.learned = parse_ent_coef(ent_coef)
        self.target = parse_target_entropy(target_entropy, action_space)
        self.log_value = nn.Parameter(th.tensor(initial, dtype=th.float32).log())
        self.optimizer = th.optim.Adam([self.log_value], lr=learning_rate)

    @property
    def value(self) -> th.Tensor:
        """The current temperature, without gradient."""
        return self.log_value.exp().detach()

    def update(self, entropy: float) -> None:
        """One step of dual ascent, given the policy's mean entropy on the last batch (no-op when fixed)."""
        if not self.learned:
            return
        loss = self.log_value.exp() * (entropy - self.target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with th.no_grad():
            self.log_value.clamp_(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))


def parse_ent_coef(ent_coef: str | float) -> tuple[float, bool]:
    """``(initial temperature, learned)`` from SAC's ``ent_coef`` convention."""
    if isinstance(ent_coef, str):
        if ent_coef == "auto":
            return DEFAULT_INITIAL_TEMPERATURE, True
        initial = _float_or_none(ent_coef[5:]) if ent_coef.startswith("auto_") else None
        if initial is None or not initial > 0:
            raise ValueError(f"ent_coef={ent_coef!r}: use 'auto', 'auto_<initial value > 0>' or a float >= 0")
        return initial, True
    if not float(ent_coef) >= 0:
        raise ValueError(f"ent_coef={ent_coef} must be >= 0")
    return float(ent_coef), False


def parse_target_entropy(target_entropy: str | float, action_space: spaces.Space | None) -> float | None:
    """The target in nats per step (``None`` for ``"auto"`` without an action space, when only validating)."""
    if isinstance(target_entropy, str):
        if target_entropy != "auto":
            raise ValueError(f"target_entropy={target_entropy!r}: use 'auto' or a float (nats per step)")
        return None if action_space is None else default_target_entropy(action_space)
    return float(target_entropy)


def default_target_entropy(action_space: spaces.Space) -> float:
    """Discrete: a tenth of the uniform entropy (imitating near-deterministic experts); Box: -dim(A) (SAC)."""
    if isinstance(action_space, spaces.Discrete):
        return 0.1 * math.log(action_space.n)
    return -float(action_space.shape[0])


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
