"""Token encoders and action heads chosen from Gymnasium spaces."""

from __future__ import annotations

import math
import threading
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import (
    is_image_space,
    is_image_space_channels_first,
    preprocess_obs,
)
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from torch import nn
from torch.nn import functional as F

from rate_sb3.derived import DerivedWeights
from rate_sb3.extractors import default_features_extractor
from rate_sb3.observations import map_observations

SUPPORTED_OBSERVATIONS = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_ACTIONS = (spaces.Discrete, spaces.Box)
_OBSERVATIONS_HINT = "supported: Box (vectors or images), Discrete, MultiDiscrete, MultiBinary, or a Dict of them"


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """The one rule of the spaces RATE supports (the policy, the demonstrations and the algorithm all apply it):
    raise a ValueError naming the space and the fix when RATE cannot encode it.

    :param observation_space: the env's observation space, without the previous reward
    :param action_space: the env's action space
    """
    check_observation_space(observation_space)
    if not isinstance(action_space, SUPPORTED_ACTIONS):
        raise ValueError(f"RATE does not support the action space {action_space}; supported: Discrete, Box")
    if isinstance(action_space, spaces.Box) and not np.all(np.isfinite([action_space.low, action_space.high])):
        raise ValueError(f"RATE needs a bounded Box action space, got {action_space}; rescale it to [-1, 1]")


def check_observation_space(space: spaces.Space) -> None:
    if isinstance(space, spaces.Dict):
        for key, subspace in space.spaces.items():
            if not isinstance(subspace, SUPPORTED_OBSERVATIONS):
                raise ValueError(
                    f"RATE cannot encode the key {key!r} of the Dict observation: {subspace}; {_OBSERVATIONS_HINT}. "
                    "Flatten that part (a gymnasium.ObservationWrapper) or drop the key (gymnasium.wrappers."
                    "FilterObservation)"
                )
            _check_image_layout(subspace, f"the image observation {key!r}")
        return
    if not isinstance(space, SUPPORTED_OBSERVATIONS):
        raise ValueError(
            f"RATE does not support the observation space {space}; {_OBSERVATIONS_HINT} "
            "(a Tuple becomes one with gymnasium.wrappers.FlattenObservation)"
        )
    _check_image_layout(space, "the image observation")


def _check_image_layout(space: spaces.Space, name: str) -> None:
    """Images must be channel-first (C, H, W) or channel-last (H, W, C), which SB3 transposes; channels in the
    middle would be transposed into nonsense."""
    if is_image_space(space) and int(np.argmin(space.shape)) == 1:
        raise ValueError(
            f"{name} has shape {space.shape}, whose smallest dimension (the channels) is in the middle: RATE and "
            "SB3 need channel-first (C, H, W) or channel-last (H, W, C) images; transpose it in an "
            "ObservationWrapper"
        )


def is_image_observation(space: spaces.Space) -> bool:
    """An image, or a Dict holding one: the observation goes through a CNN (no fast path in ``predict``)."""
    if isinstance(space, spaces.Dict):
        return any(is_image_space(subspace) for subspace in space.spaces.values())
    return is_image_space(space)


class ObservationEncoder(nn.Module):
    """Maps raw observations (N, *shape), or a dict of them, to tokens (N, d): SB3's preprocessing, a features
    extractor, then a linear layer to ``d_model``.

    :param space: the env's observation space (channel-first images)
    :param d_model: token width
    :param normalize_images: divide uint8 images by 255
    :param features_extractor_class: an SB3 features extractor class (default: :func:`default_features_extractor`)
    :param features_extractor_kwargs: its keyword arguments
    :param standardize: subtract a mean and divide by a standard deviation (buffers, set by :meth:`set_statistics`)
        before the features extractor; vector Box observations only
    """

    def __init__(
        self,
        space: spaces.Space,
        d_model: int,
        normalize_images: bool = True,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        self.space, self.normalize_images = space, normalize_images
        self.images = is_image_observation(space)
        if self.images:
            _check_channels_first(space)
        self.standardize = standardize
        if standardize:
            if not isinstance(space, spaces.Box) or self.images:
                raise ValueError(
                    f"standardize_observations needs vector Box observations, got {space}; leave it off for images, "
                    "Dict and discrete observations"
                )
            self.register_buffer("observation_mean", th.zeros(space.shape))
            self.register_buffer("observation_std", th.ones(space.shape))
            self.register_buffer("statistics_set", th.tensor(False))
        extractor_class = features_extractor_class or default_features_extractor(space)
        extractor = extractor_class(space, **(features_extractor_kwargs or {}))
        if normalize_images and getattr(extractor, "reads_raw_indices", False):
            raise ValueError(
                f"{extractor_class.__name__} embeds raw category indices, which normalize_images=True would divide "
                "by 255: pass policy_kwargs=dict(normalize_images=False)"
            )
        # one Sequential, so that vector observations keep the parameter names of earlier versions
        self.net = nn.Sequential(extractor, nn.Linear(extractor.features_dim, d_model))

    def forward(self, observations: th.Tensor | dict[str, th.Tensor]) -> th.Tensor:
        features = preprocess_obs(observations, self.space, normalize_images=self.normalize_images)
        if self.standardize:
            features = (features - self.observation_mean) / self.observation_std
        return self.net(features)

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardise with this mean and standard deviation (per observation dimension) from now on."""
        with th.no_grad():
            self.observation_mean.copy_(th.as_tensor(mean, dtype=th.float32).reshape(self.space.shape))
            self.observation_std.copy_(th.as_tensor(std, dtype=th.float32).reshape(self.space.shape))
            self.statistics_set.fill_(True)

    @property
    def flat_linear(self) -> nn.Linear | None:
        """The encoder's linear layer when it is all there is: a layer over the flattened observation as floats
        (Box vectors, MultiBinary); None for images, Dict, one-hot Discrete and MultiDiscrete observations, and
        any other features extractor."""
        linear_only = type(self.net[0]) is FlattenExtractor and isinstance(self.space, (spaces.Box, spaces.MultiBinary))
        return self.net[1] if linear_only and not self.images else None

    def host_tokens(self, observations: np.ndarray | dict[str, np.ndarray], device: th.device) -> th.Tensor:
        """Tokens (n, d) of host observations (n, *shape), or a dict of them."""
        return self(map_observations(observations, lambda array: th.as_tensor(array, device=device)))

    def steps(self, observations: th.Tensor | dict[str, th.Tensor], valid: th.Tensor | None = None) -> th.Tensor:
        """Tokens (B, W, d) of the observations of windows (B, W, *shape), or a dict of them.

        With images and ``valid`` (B, W), only the valid steps are encoded and the padding's tokens are zeros: no
        loss reads them, and windows of short episodes are mostly padding, which costs a CNN as much as frames.
        """
        first = next(iter(observations.values())) if isinstance(observations, dict) else observations
        flat = map_observations(observations, lambda steps: steps.flatten(0, 1))
        if not self.images or valid is None or bool(valid.all()):
            return self(flat).unflatten(0, first.shape[:2])
        chosen = valid.flatten()
        tokens = self(map_observations(flat, lambda steps: steps[chosen]))
        all_tokens = tokens.new_zeros(len(chosen), tokens.shape[-1]).index_put((chosen,), tokens)
        return all_tokens.unflatten(0, first.shape[:2])


def _check_channels_first(space: spaces.Space) -> None:
    subspaces = space.spaces.items() if isinstance(space, spaces.Dict) else [(None, space)]
    for key, subspace in subspaces:
        if is_image_space(subspace) and not is_image_space_channels_first(subspace):
            name = "image observations" if key is None else f"the image observation {key!r}"
            raise ValueError(
                f"{name} must be channel-first, got shape {subspace.shape}; "
                "wrap the env with stable_baselines3.common.vec_env.VecTransposeImage"
            )


class ActionEncoder(nn.Module):
    """Embeds actions: an embedding table for Discrete, a linear layer over [-1, 1]-scaled Box actions."""

    def __init__(self, space: spaces.Space, d_model: int) -> None:
        super().__init__()
        self.discrete = isinstance(space, spaces.Discrete)
        if self.discrete:
            self.net = nn.Embedding(int(space.n), d_model)
        else:
            self.net = nn.Linear(int(np.prod(space.shape)), d_model)

    def forward(self, actions: th.Tensor) -> th.Tensor:
        """``actions``: (..., ) Discrete indices from 0, or (..., act_dim) Box actions scaled to [-1, 1]."""
        return th.tanh(self.net(actions.long() if self.discrete else actions))


class CategoricalHead(nn.Module):
    """Logits over Discrete actions; exact entropy."""

    def __init__(self, d_model: int, n_actions: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, n_actions, bias=False)
        self.max_entropy = math.log(n_actions)

    def log_prob(self, hidden: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return -F.cross_entropy(self.linear(hidden).transpose(1, -1), actions.long(), reduction="none")

    def entropy(self, hidden: th.Tensor) -> th.Tensor:
        log_p = F.log_softmax(self.linear(hidden), dim=-1)
        return -(log_p.exp() * log_p).sum(-1)

    def act(self, hidden: th.Tensor, deterministic: bool) -> th.Tensor:
        """Actions for hidden states (n, d), of any dtype. ``predict`` calls this at every step: a kept copy of
        the weight would save less than checking that it is current costs."""
        logits = F.linear(hidden, self.linear.weight.to(hidden))
        if deterministic:
            return logits.argmax(-1)
        # Gumbel-max: distributed as a Categorical's sample, at a sixth of its cost for a few envs
        return logits.sub_(th.empty_like(logits).exponential_().log_()).argmax(-1)

    def mode(self, hidden: th.Tensor) -> th.Tensor:
        return self.linear(hidden).argmax(-1)


class SquashedGaussianHead(nn.Module):
    """A tanh-squashed diagonal Gaussian over Box actions scaled to [-1, 1]."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
    EPS = 1e-6

    def __init__(self, d_model: int, action_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, 2 * action_dim)

    def _mean_and_std(self, hidden: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean, raw_log_std = self.linear(hidden).chunk(2, dim=-1)
        log_std = self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (th.tanh(raw_log_std) + 1)
        return mean, log_std.exp()

    def _normal(self, hidden: th.Tensor) -> th.distributions.Normal:
        return th.distributions.Normal(*self._mean_and_std(hidden))

    @staticmethod
    def _squash_correction(pre_tanh: th.Tensor) -> th.Tensor:
        # log(1 - tanh(x)^2), computed stably
        return 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))

    def log_prob(self, hidden: th.Tensor, actions: th.Tensor) -> th.Tensor:
        pre_tanh = th.atanh(actions.clamp(-1 + self.EPS, 1 - self.EPS))
        normal = self._normal(hidden)
        return (normal.log_prob(pre_tanh) - self._squash_correction(pre_tanh)).sum(-1)

    def entropy(self, hidden: th.Tensor) -> th.Tensor:
        """One-sample reparameterised estimate of the squashed distribution's entropy."""
        normal = self._normal(hidden)
        pre_tanh = normal.rsample()
        return -(normal.log_prob(pre_tanh) - self._squash_correction(pre_tanh)).sum(-1)

    def act(self, hidden: th.Tensor, deterministic: bool) -> th.Tensor:
        mean, std = self._mean_and_std(hidden)  # no Normal object: predict calls this at every step
        return th.tanh(mean if deterministic else th.addcmul(mean, std, th.randn_like(mean)))

    def mode(self, hidden: th.Tensor) -> th.Tensor:
        return th.tanh(self._mean_and_std(hidden)[0])


class _Features(NamedTuple):
    """A buffer of step features (float32 on the CPU) and numpy views of its parts."""

    tensor: th.Tensor  # (n, features)
    actions: np.ndarray  # (n, action features)
    returns: np.ndarray  # (n,)
    observations: np.ndarray  # (n, flattened observation; 0 wide when the observation encoder runs on its own)


class StepEncoder:
    """The tokens [a_{t-1}, R_t, o_t] of one env step in a single matrix product, for ``predict``.

    With one env a step costs PyTorch calls, not arithmetic, so the host writes each env's features
    [previous action | return-to-go | flattened observation] into one row of a buffer kept for the number of
    envs (and the thread: calls from several threads do not share one) and a block-diagonal matrix maps the
    row to the three tokens (with a standardised observation's shift and scale folded in). A Discrete action's
    features are one-hot, and its tanh is folded into the embedding table; a Box action's tanh follows the
    product. An observation encoder that is more than a linear layer (a CNN, a one-hot Discrete) runs on its own
    and its token is appended.
    """

    def __init__(
        self, action_encoder: ActionEncoder, return_encoder: nn.Linear, observation_encoder: ObservationEncoder
    ) -> None:
        self.action_encoder, self.return_encoder = action_encoder, return_encoder
        self.observation_encoder = observation_encoder
        self.observation_linear = observation_encoder.flat_linear
        self.d_model = return_encoder.out_features
        action_net = action_encoder.net
        self.action_width = action_net.num_embeddings if action_encoder.discrete else action_net.in_features
        self.observation_width = self.observation_linear.in_features if self.observation_linear else 0
        self._action_indices = np.arange(self.action_width, dtype=np.float32)  # one-hot: an index equals one
        self._features: dict[tuple[int, int], _Features] = {}  # by number of envs and thread
        sources = [(action_net, "weight"), (return_encoder, "weight"), (return_encoder, "bias")]
        if not action_encoder.discrete:
            sources.append((action_net, "bias"))
        if self.observation_linear is not None:
            sources += [(self.observation_linear, "weight"), (self.observation_linear, "bias")]
            if observation_encoder.standardize:
                sources += [(observation_encoder, "observation_mean"), (observation_encoder, "observation_std")]
        self._folded = DerivedWeights(sources, self._fold)

    def __call__(
        self, last_action: np.ndarray, return_to_go: np.ndarray, observations: np.ndarray, like: th.Tensor
    ) -> th.Tensor:
        """Tokens (n, 3, d) like ``like`` (dtype, device) from host arrays: the previous model actions
        (n, action_dim), the scaled returns-to-go (n,) and the observations (n, *shape)."""
        n = len(return_to_go)
        features = self._features.get((n, threading.get_ident())) or self._add_features(n)
        if self.action_encoder.discrete:
            np.equal(last_action, self._action_indices, out=features.actions)
        else:
            features.actions[:] = last_action
        features.returns[:] = return_to_go
        if self.observation_linear is not None:
            features.observations[:] = observations.reshape(n, -1)
        weight, bias = self._folded(like)
        inputs = features.tensor if like.is_cpu and like.dtype == th.float32 else features.tensor.to(like)
        tokens = th.addmm(bias, inputs, weight).view(n, -1, self.d_model)
        if not self.action_encoder.discrete:
            tokens[:, 0].tanh_()
        if self.observation_linear is None:
            observation_tokens = self.observation_encoder.host_tokens(observations, like.device)
            tokens = th.cat([tokens, observation_tokens[:, None]], dim=1)
        return tokens

    def __getstate__(self) -> dict:
        # a copy (deepcopy, pickle) of a buffer's numpy views would no longer view its tensor: copies make their own
        return {**self.__dict__, "_features": {}}

    def _add_features(self, n: int) -> _Features:
        tensor = th.zeros(n, self.action_width + 1 + self.observation_width, dtype=th.float32)
        array, width = tensor.numpy(), self.action_width
        features = _Features(tensor, array[:, :width], array[:, width], array[:, width + 1 :])
        self._features[n, threading.get_ident()] = features
        return features

    def _fold(self, like: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        d, width, action_net = self.d_model, self.action_width, self.action_encoder.net
        observation_linear = self.observation_linear
        n_tokens = 2 if observation_linear is None else 3
        weight = like.new_zeros(width + 1 + self.observation_width, n_tokens * d)
        bias = like.new_zeros(n_tokens * d)
        if self.action_encoder.discrete:
            weight[:width, :d] = th.tanh(action_net.weight)
        else:
            weight[:width, :d], bias[:d] = action_net.weight.t(), action_net.bias
        weight[width, d : 2 * d], bias[d : 2 * d] = self.return_encoder.weight[:, 0], self.return_encoder.bias
        if observation_linear is not None:
            weight[width + 1 :, 2 * d :], bias[2 * d :] = self._observation_weight_and_bias()
        return weight, bias

    def _observation_weight_and_bias(self) -> tuple[th.Tensor, th.Tensor]:
        """The observation part of the product (features x weight): W^T and b, or with standardisation
        (W / std)^T and b - (W / std) mean, so that the product equals W (x - mean) / std + b."""
        weight, bias = self.observation_linear.weight, self.observation_linear.bias
        encoder = self.observation_encoder
        if encoder.standardize:
            weight = weight / encoder.observation_std.flatten()
            bias = bias - weight @ encoder.observation_mean.flatten()
        return weight.t(), bias


def make_action_head(space: spaces.Space, d_model: int) -> nn.Module:
    if isinstance(space, spaces.Discrete):
        return CategoricalHead(d_model, int(space.n))
    return SquashedGaussianHead(d_model, int(np.prod(space.shape)))
