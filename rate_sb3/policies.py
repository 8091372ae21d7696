"""RATEPolicy: token encoders around the memory transformer, and stateful step-by-step ``predict``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import Schedule

from rate_sb3.critic import HistoryCritic
from rate_sb3.encoders import ActionEncoder, ObservationEncoder, StepEncoder, check_spaces, make_action_head
from rate_sb3.inference import IncrementalInference
from rate_sb3.model import RATEConfig, RATETransformer
from rate_sb3.observations import window_steps
from rate_sb3.predict_inputs import PredictInput
from rate_sb3.stepping import RATEState, SegmentStepper
from rate_sb3.wrappers import (
    OBSERVATION_KEY,
    PREV_REWARD_KEY,
    WRAP_HINT,
    env_observation_space,
    has_reward_feedback,
    newest_reward,
)


class RATEPolicy(BasePolicy):
    """The RATE policy: (return-to-go, observation, action) tokens through the memory transformer.

    The observation space must carry the previous reward (:class:`rate_sb3.wrappers.PrevRewardWrapper`),
    so that ``predict`` can lower the return-to-go by each reward.

    :param observation_space: Dict space ``{"observation": ..., "prev_reward": ...}``, or the env's Dict space with
        a ``"prev_reward"`` key
    :param action_space: Discrete or bounded Box
    :param lr_schedule: learning rate schedule (the optimizer starts at ``lr_schedule(1)``)
    :param target_return: return the policy is conditioned on at the start of each episode (raw reward units)
    :param return_scale: factor applied to returns before they are embedded
    :param return_to_go_cap: the return-to-go the policy conditions on never rises above this (raw reward units;
        ``None``: no cap)
    :param reset_return_to_go_per_segment: at inference, set the return-to-go back to ``target_return`` at the first
        step of every segment (the paper's MuJoCo evaluation, its appendix E.6), instead of lowering it by each reward
        over the whole episode
    :param weight_decay: AdamW weight decay, applied to weight matrices only
    :param critic: also learn a value function of the history (:class:`rate_sb3.critic.HistoryCritic`), for
        advantage-weighted training
    :param optimizer_class: optimizer class
    :param optimizer_kwargs: extra optimizer arguments
    :param normalize_images: divide image observations by 255
    :param features_extractor_class: SB3 features extractor of the observations, followed by a linear layer to
        ``d_model`` (default: NatureCNN for images, a small CNN for images under 36 pixels, a per-key combination
        for Dict observations, flattening for vectors)
    :param features_extractor_kwargs: its keyword arguments
    :param standardize_observations: standardise vector observations with the mean and standard deviation of the
        demonstrations (set when offline training first starts, then kept, as Decision Transformer does on D4RL)
    :param transformer_kwargs: :class:`rate_sb3.model.RATEConfig` fields (d_model, n_layers, segment_len, ...)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        target_return: float = 1.0,
        return_scale: float = 1.0,
        return_to_go_cap: float | None = None,
        reset_return_to_go_per_segment: bool = False,
        weight_decay: float = 0.01,
        critic: bool = False,
        optimizer_class: type[th.optim.Optimizer] = th.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        standardize_observations: bool = False,
        **transformer_kwargs: Any,
    ) -> None:
        if not has_reward_feedback(observation_space):
            raise ValueError(f"RATEPolicy needs the previous reward in the observation; {WRAP_HINT}")
        inner_space = env_observation_space(observation_space)
        check_spaces(inner_space, action_space)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class=features_extractor_class or FlattenExtractor,  # SB3 wants a class here
            features_extractor_kwargs=features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        self.features_extractor_class = features_extractor_class  # None: the defaults of the observation's space
        self.target_return, self.return_scale, self.weight_decay = target_return, return_scale, weight_decay
        self.return_to_go_cap = return_to_go_cap
        self.reset_return_to_go_per_segment = reset_return_to_go_per_segment
        self.standardize_observations = standardize_observations
        self.transformer_kwargs = transformer_kwargs
        self.config = RATEConfig(**transformer_kwargs)
        d = self.config.d_model
        self.inner_observation_space = inner_space
        self._observation_keys = frozenset(observation_space.spaces)
        named = inner_space.spaces.items() if isinstance(inner_space, spaces.Dict) else [(OBSERVATION_KEY, inner_space)]
        self._inputs = tuple(PredictInput.of(key, space) for key, space in named)
        self.discrete_actions = isinstance(action_space, spaces.Discrete)
        self.action_dim = 1 if self.discrete_actions else int(np.prod(action_space.shape))
        self.observation_encoder = self._make_observation_encoder()
        self.action_encoder = ActionEncoder(action_space, d)
        self.return_encoder = th.nn.Linear(1, d)
        self.transformer = RATETransformer(self.config)
        self.stepper = SegmentStepper(IncrementalInference(self.transformer))
        self.step_encoder = StepEncoder(self.action_encoder, self.return_encoder, self.observation_encoder)
        self.action_head = make_action_head(action_space, d)
        self.critic = HistoryCritic(self._make_observation_encoder(), action_space, self.config) if critic else None
        self.optimizer = self.optimizer_class(self._parameter_groups(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _make_observation_encoder(self) -> ObservationEncoder:
        return ObservationEncoder(
            self.inner_observation_space,
            self.config.d_model,
            self.normalize_images,
            self.features_extractor_class,
            self.features_extractor_kwargs,
            self.standardize_observations,
        )

    def observation_encoders(self) -> list[ObservationEncoder]:
        return [self.observation_encoder] + ([self.critic.observation_encoder] if self.critic else [])

    @property
    def observation_statistics_set(self) -> bool:
        return self.standardize_observations and bool(self.observation_encoder.statistics_set)

    def set_observation_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """The mean and standard deviation (per observation dimension) that observations are standardised with."""
        if not self.standardize_observations:
            raise ValueError("this RATEPolicy was built without standardize_observations=True")
        for encoder in self.observation_encoders():
            encoder.set_statistics(mean, std)

    def _parameter_groups(self) -> list[dict[str, Any]]:
        no_decay = ("initial_memory", "content_bias", "position_bias")
        decay, plain = [], []
        for name, param in self.named_parameters():
            (decay if param.dim() >= 2 and not name.endswith(no_decay) else plain).append(param)
        return [{"params": decay, "weight_decay": self.weight_decay}, {"params": plain, "weight_decay": 0.0}]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            target_return=self.target_return,
            return_scale=self.return_scale,
            return_to_go_cap=self.return_to_go_cap,
            reset_return_to_go_per_segment=self.reset_return_to_go_per_segment,
            weight_decay=self.weight_decay,
            critic=self.critic is not None,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            normalize_images=self.normalize_images,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
            standardize_observations=self.standardize_observations,
            **self.transformer_kwargs,
        )
        return data

    @property
    def device(self) -> th.device:
        """The parameters' device (SB3's property walks all modules to find it)."""
        return self.transformer.initial_memory.device

    # ------------------------------------------------------------ actions
    def actions_to_model(self, actions: th.Tensor) -> th.Tensor:
        """Env actions to model actions: Discrete indices from 0, Box scaled to [-1, 1]."""
        if self.discrete_actions:
            indices = actions.long()
            return (indices.squeeze(-1) if indices.dim() == 3 else indices) - int(self.action_space.start)
        low = th.as_tensor(self.action_space.low, device=actions.device, dtype=th.float32)
        high = th.as_tensor(self.action_space.high, device=actions.device, dtype=th.float32)
        scaled = 2.0 * (actions.float().reshape(*actions.shape[:2], -1) - low.flatten()) / (high - low).flatten() - 1
        return scaled.clamp(-1.0, 1.0)

    def actions_to_env(self, model_actions: np.ndarray) -> np.ndarray:
        if self.discrete_actions:
            start = int(self.action_space.start)
            return model_actions + start if start else model_actions
        low, high = self.action_space.low, self.action_space.high
        env_actions = low + 0.5 * (model_actions.reshape(-1, *self.action_space.shape) + 1.0) * (high - low)
        return np.clip(env_actions, low, high).astype(self.action_space.dtype)

    # ----------------------------------------------------------- training
    def encode(
        self,
        observations: th.Tensor,
        model_actions: th.Tensor,
        returns_to_go: th.Tensor,
        valid: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Return, observation and action tokens (B, W, d) of (B, W, ...) inputs; ``valid`` (B, W): the steps
        that are not padding (image padding is not encoded)."""
        obs_tokens = self.observation_encoder.steps(observations, valid)
        action_tokens = self.action_encoder(model_actions)
        return_tokens = self.return_encoder(returns_to_go[..., None].float())
        return return_tokens, obs_tokens, action_tokens

    def embed(self, observations: th.Tensor, model_actions: th.Tensor, returns_to_go: th.Tensor) -> th.Tensor:
        """Interleave [R_t, o_t, a_t] tokens: (B, W, ...) inputs to (B, 3W, d)."""
        return th.stack(self.encode(observations, model_actions, returns_to_go), dim=2).flatten(1, 2)

    def window_hidden(
        self,
        observations: th.Tensor,
        model_actions: th.Tensor,
        returns_to_go: th.Tensor,
        valid: th.Tensor,
        burn_in_segments: int = 0,
    ) -> th.Tensor:
        """Transformer outputs at the observation tokens (B, W', d) for segment-aligned windows (B, W).

        The first ``burn_in_segments`` segments are encoded and run without gradient: they only build memory and
        cache, and W' excludes them.
        """

        def step_tokens(steps: slice) -> th.Tensor:
            observations_there = window_steps(observations, steps)
            tokens = self.encode(observations_there, model_actions[:, steps], returns_to_go[:, steps], valid[:, steps])
            return th.stack(tokens, 2)

        return self.transformer.window_outputs(step_tokens, valid, burn_in_segments)

    # ---------------------------------------------------------- inference
    def initial_state(self, n_envs: int) -> RATEState:
        """A state of ``n_envs`` envs for :meth:`predict`, each to be started by its first call."""
        return self.stepper.initial_state(n_envs, self.action_dim)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, RATEState]:
        """Next action for each env, with the RecurrentPPO conventions.

        ``state=None`` starts every env; ``episode_start[i]`` restarts env i. The state is updated in place
        (:meth:`RATEState.repeat` copies it).
        """
        if self.training:  # set_training_mode walks every module
            self.set_training_mode(False)
        inner, prev_reward, vectorized = self._split_observation(observation)
        n_envs = len(prev_reward)
        with th.inference_mode():
            if state is None:
                state, starts = self.initial_state(n_envs), np.ones(n_envs, dtype=bool)
            else:
                state = state if isinstance(state, RATEState) else RATEState(*state)
                starts = np.zeros(n_envs, bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
                if starts.shape != (n_envs,):
                    starts = starts.reshape(n_envs)
                if state.step.shape[0] != n_envs:
                    raise ValueError(f"state holds {state.step.shape[0]} envs but the observation has {n_envs}")
            model_actions = self._act(inner, prev_reward, state, starts, deterministic)
        actions = self.actions_to_env(model_actions)
        return (actions if vectorized else actions[0]), state

    def _predict(self, observation: Any, deterministic: bool = False) -> th.Tensor:
        """Stateless step (every observation starts an episode); use :meth:`predict` to carry memory."""
        raise NotImplementedError("RATEPolicy is stateful: call predict(obs, state, episode_start)")

    def _split_observation(self, observation: Any) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray, bool]:
        """The env's observations (n, *shape), or a dict of them, the previous rewards (n,), and whether the
        observation was batched."""
        if not isinstance(observation, dict) or observation.keys() != self._observation_keys:
            raise ValueError(
                f"RATEPolicy.predict needs observations with the keys {sorted(self._observation_keys)}, got "
                f"{sorted(observation) if isinstance(observation, dict) else type(observation).__name__}; {WRAP_HINT}"
            )
        prev_reward = np.asarray(observation[PREV_REWARD_KEY], dtype=np.float32)
        vectorized = prev_reward.ndim == 2
        if not vectorized:
            prev_reward = prev_reward[None]
        if len(self._inputs) == 1 and self._inputs[0].key == OBSERVATION_KEY:  # no dict to build
            inner = self._inputs[0].check(observation[OBSERVATION_KEY], vectorized)
        else:
            inner = {spec.key: spec.check(observation[spec.key], vectorized) for spec in self._inputs}
        return inner, newest_reward(prev_reward), vectorized

    def _act(
        self, observations: np.ndarray, prev_reward: np.ndarray, state: RATEState, starts: np.ndarray, deterministic
    ) -> np.ndarray:
        return_to_go = state.return_to_go  # a name for the in-place updates
        return_to_go -= prev_reward if self.return_scale == 1 else prev_reward * self.return_scale
        if np.count_nonzero(starts):  # restarted envs get the target return here
            self._restart(state, starts)
        if self.reset_return_to_go_per_segment:
            return_to_go[state.step % self.config.segment_len == 0] = self.target_return * self.return_scale
        if self.return_to_go_cap is not None:
            np.minimum(return_to_go, self.return_to_go_cap * self.return_scale, out=return_to_go)
        tokens = self.step_encoder(state.last_action, return_to_go, observations, state.memory)  # its dtype, device
        hidden = self.stepper.advance(state, tokens)
        actions = self.action_head.act(hidden, deterministic).numpy(force=True)
        if self.discrete_actions:
            state.last_action[:, 0] = actions
        else:
            state.last_action[:] = actions
        return actions

    def _restart(self, state: RATEState, starts: np.ndarray) -> None:
        self.stepper.restart(state, starts)
        state.return_to_go[starts] = self.target_return * self.return_scale
        state.last_action[starts] = 0.0
