"""A value function of the history, and the advantage weights it gives the return-conditioned likelihood."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from gymnasium import spaces
from torch import nn

from rate_sb3.architecture import RATEConfig
from rate_sb3.encoders import ActionEncoder, ObservationEncoder
from rate_sb3.model import RATETransformer
from rate_sb3.observations import window_steps


class HistoryCritic(nn.Module):
    """V(history): the expected (discounted) return-to-go of a partial episode, read by a memory transformer of its
    own.

    The policy's tokens carry the hindsight return-to-go, which a value head on its outputs would simply read
    back. The critic puts one learned token in each return token's place, so that its value depends on the
    observations and actions so far (through its memory) and on nothing else.

    :param observation_encoder: the critic's own observation encoder (built like the policy's)
    :param action_space: Discrete or bounded Box
    :param config: the transformer's architecture (the policy's)
    """

    def __init__(self, observation_encoder: ObservationEncoder, action_space: spaces.Space, config: RATEConfig) -> None:
        super().__init__()
        self.observation_encoder = observation_encoder
        self.action_encoder = ActionEncoder(action_space, config.d_model)
        self.return_placeholder = nn.Parameter(th.zeros(config.d_model))
        self.transformer = RATETransformer(config)
        self.value_head = nn.Linear(config.d_model, 1)

    def forward(
        self, observations: th.Tensor, model_actions: th.Tensor, valid: th.Tensor, burn_in_segments: int = 0
    ) -> th.Tensor:
        """Values (B, W') at each step of segment-aligned windows, before the step's action; as
        :meth:`rate_sb3.policies.RATEPolicy.window_hidden`, burn-in segments are left out."""

        def step_tokens(steps: slice) -> th.Tensor:
            obs_tokens = self.observation_encoder.steps(window_steps(observations, steps))
            placeholders = self.return_placeholder.expand_as(obs_tokens)
            return th.stack([placeholders, obs_tokens, self.action_encoder(model_actions[:, steps])], dim=2)

        hidden = self.transformer.window_outputs(step_tokens, valid, burn_in_segments)
        return self.value_head(hidden).squeeze(-1)


@dataclass(frozen=True)
class AdvantageWeighting:
    """Advantage-weighted likelihood (AWR, Peng et al. 2019): each step's log-likelihood weighs
    ``min(exp(A / temperature), max_weight)``, with ``A`` = hindsight return-to-go discounted by ``gamma`` -
    V(history), and the weights are normalised to mean 1 over the batch's valid steps.

    :param temperature: smaller values put more of the weight on the steps that did better than expected
    :param max_weight: cap on a step's weight before normalisation
    :param value_coef: weight of the critic's squared error in the loss
    :param gamma: discount of the returns the critic learns; below 1 an action is credited with the rewards
        that soon follow it rather than with the whole rest of the episode
    """

    temperature: float = 0.1
    max_weight: float = 20.0
    value_coef: float = 0.5
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"advantage_temperature={self.temperature} must be > 0")
        if not (math.isfinite(self.max_weight) and self.max_weight >= 1):
            raise ValueError(f"max_advantage_weight={self.max_weight} must be a finite number >= 1")
        if not self.value_coef >= 0:
            raise ValueError(f"vf_coef={self.value_coef} must be >= 0")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"advantage_gamma={self.gamma} must be in (0, 1]")

    def weights(self, advantages: th.Tensor) -> th.Tensor:
        """Unnormalised weights of detached advantages (the exponent is capped before it can overflow)."""
        return th.exp((advantages / self.temperature).clamp(max=math.log(self.max_weight)))
