"""The return-conditioned training objective shared by offline pretraining and online fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch as th

from rate_sb3.buffers import WindowBatch
from rate_sb3.critic import AdvantageWeighting
from rate_sb3.observations import map_observations
from rate_sb3.policies import RATEPolicy

EntropyMask = Callable[[th.Tensor], th.Tensor]


@dataclass
class LossTerms:
    loss: th.Tensor
    nll: th.Tensor
    entropy: th.Tensor  # mean over the steps the entropy mask selects (0 when it selects none)
    entropy_steps: int  # how many steps that is
    action_accuracy: float | None  # Discrete: share of argmax actions equal to the targets
    action_mse: float | None  # Box: squared error of the mode in [-1, 1] units
    value_loss: th.Tensor | None = None  # with advantage weighting: the critic's mean squared error
    max_weight: float | None = None  # with advantage weighting: the largest normalised step weight


def window_loss(
    policy: RATEPolicy,
    batch: WindowBatch,
    temperature: th.Tensor | float = 0.0,
    action_mse_coef: float = 0.0,
    entropy_mask: EntropyMask | None = None,
    advantage: AdvantageWeighting | None = None,
) -> LossTerms:
    """Masked negative log-likelihood of the batch's actions minus ``temperature`` times the entropy.

    The entropy bonus covers the valid steps that ``entropy_mask`` (observations -> bool, (B, W)) selects, all
    valid steps by default; ``entropy`` is its mean over them, which the temperature's target constrains.

    Box actions add ``action_mse_coef`` times the squared error of the deterministic action (per step, summed
    over action dimensions): the squashed Gaussian's likelihood of actions at the bounds of the box is fitted by
    a wide Gaussian, which leaves its mean, and so the deterministic action, far from the targets.

    With ``advantage``, the policy's critic learns the hindsight returns-to-go (its squared error is added), and
    each step's log-likelihood is weighted by its advantage (:class:`rate_sb3.critic.AdvantageWeighting`).
    """
    model_actions = policy.actions_to_model(batch.actions)
    hidden = policy.window_hidden(
        batch.observations, model_actions, batch.returns_to_go, batch.valid, batch.burn_in_segments
    )
    skip = batch.burn_in_segments * policy.config.segment_len
    mask = batch.valid[:, skip:].float()
    targets = model_actions[:, skip:]
    count = mask.sum().clamp(min=1.0)
    likelihood_weights, value_loss = mask, None
    if advantage is not None:
        likelihood_weights, value_loss = advantage_weights(policy, batch, model_actions, mask, advantage)
    nll = -(policy.action_head.log_prob(hidden, targets) * likelihood_weights).sum() / count
    entropy_weights = mask if entropy_mask is None else mask * selected_steps(entropy_mask, batch)[:, skip:]
    entropy_steps = int(entropy_weights.sum().item())
    entropy_sum = (policy.action_head.entropy(hidden) * entropy_weights).sum()
    entropy = entropy_sum / max(entropy_steps, 1)
    loss = nll - temperature * entropy_sum / count  # each selected step weighs as much as in the likelihood
    if value_loss is not None:
        loss = loss + advantage.value_coef * value_loss
    mode = policy.action_head.mode(hidden)
    if policy.discrete_actions:
        accuracy, mse = float(((mode == targets).float() * mask).sum() / count), None
    else:
        squared_error = (((mode - targets) ** 2).sum(-1) * mask).sum() / count
        loss = loss + action_mse_coef * squared_error
        accuracy, mse = None, squared_error.item() / targets.shape[-1]
    max_weight = None if advantage is None else float(likelihood_weights.max())
    return LossTerms(loss, nll, entropy, entropy_steps, accuracy, mse, value_loss, max_weight)


def advantage_weights(
    policy: RATEPolicy, batch: WindowBatch, model_actions: th.Tensor, mask: th.Tensor, advantage: AdvantageWeighting
) -> tuple[th.Tensor, th.Tensor]:
    """Step weights (B, W'), of mean 1 over the valid steps, and the critic's mean squared error."""
    if policy.critic is None:
        raise ValueError("advantage weighting needs a policy built with critic=True")
    values = policy.critic(batch.observations, model_actions, batch.valid, batch.burn_in_segments)
    targets = batch.value_targets[:, batch.burn_in_segments * policy.config.segment_len :]
    value_loss = (((values - targets) ** 2) * mask).sum() / mask.sum().clamp(min=1.0)
    weights = advantage.weights((targets - values).detach()) * mask
    return weights * mask.sum().clamp(min=1.0) / weights.sum().clamp(min=1e-8), value_loss


def selected_steps(entropy_mask: EntropyMask, batch: WindowBatch) -> th.Tensor:
    """The entropy mask on the batch's observations, as float weights (B, W)."""
    selected = entropy_mask(batch.observations)
    if not isinstance(selected, th.Tensor) or selected.shape != batch.valid.shape:
        got = tuple(selected.shape) if isinstance(selected, th.Tensor) else type(selected).__name__
        raise ValueError(
            f"entropy_mask {getattr(entropy_mask, '__name__', entropy_mask)} returned {got}: it must map "
            f"observations {map_observations(batch.observations, lambda x: tuple(x.shape))} to a bool tensor "
            f"{tuple(batch.valid.shape)} (batch, step)"
        )
    return selected.float()


def check_finite(terms: LossTerms, step: int, phase: str) -> None:
    """Raise ValueError (which Optuna treats as a pruned trial) when the loss is NaN or infinite."""
    if not th.isfinite(terms.loss):
        raise ValueError(
            f"{phase} loss is not finite at step {step}: loss={terms.loss.item()}, nll={terms.nll.item()}, "
            f"entropy={terms.entropy.item()}; lower the learning rate or check the demonstrations for NaN"
        )
