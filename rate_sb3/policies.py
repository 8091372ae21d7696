"""RATEPolicy: token encoders around the memory transformer, and stateful step-by-step ``predict``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import Schedule

from rate_sb3.encoders import ActionEncoder, ObservationEncoder, check_spaces, make_action_head
from rate_sb3.model import KeyValueStore, RATEConfig, RATETransformer
from rate_sb3.wrappers import OBSERVATION_KEY, PREV_REWARD_KEY, WRAP_HINT, has_reward_feedback


class RATEState(NamedTuple):
    """Per-env inference state (numpy arrays, batch first), passed back to ``predict`` like an LSTM state."""

    memory: np.ndarray  # (n, m, d) memory of the current segment
    keys: np.ndarray  # (n, layers, heads, slots, d_head) keys of the cache and of the segment so far
    values: np.ndarray  # same shape as keys
    layer_inputs: np.ndarray  # (n, layers, 2m + 3K + 1, d) layer inputs, kept only when mem_len > 0
    cache: np.ndarray  # (n, layers, mem_len, d) hidden-state cache
    cache_valid: np.ndarray  # (n, mem_len) bool
    step: np.ndarray  # (n,) env steps taken in the current episode
    return_to_go: np.ndarray  # (n,) scaled return-to-go of the current step
    last_action: np.ndarray  # (n, action_dim) the action returned at the previous step


class RATEPolicy(BasePolicy):
    """The RATE policy: (return-to-go, observation, action) tokens through the memory transformer.

    The observation space must carry the previous reward (:class:`rate_sb3.wrappers.PrevRewardWrapper`),
    so that ``predict`` can lower the return-to-go by each reward.

    :param observation_space: Dict space ``{"observation": ..., "prev_reward": ...}``
    :param action_space: Discrete or bounded Box
    :param lr_schedule: learning rate schedule (the optimizer starts at ``lr_schedule(1)``)
    :param target_return: return the policy is conditioned on at the start of each episode (raw reward units)
    :param return_scale: factor applied to returns before they are embedded
    :param weight_decay: AdamW weight decay, applied to weight matrices only
    :param optimizer_class: optimizer class
    :param optimizer_kwargs: extra optimizer arguments
    :param normalize_images: divide image observations by 255
    :param transformer_kwargs: :class:`rate_sb3.model.RATEConfig` fields (d_model, n_layers, segment_len, ...)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        target_return: float = 1.0,
        return_scale: float = 1.0,
        weight_decay: float = 0.01,
        optimizer_class: type[th.optim.Optimizer] = th.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        **transformer_kwargs: Any,
    ) -> None:
        if not has_reward_feedback(observation_space):
            raise ValueError(f"RATEPolicy needs the previous reward in the observation; {WRAP_HINT}")
        check_spaces(observation_space[OBSERVATION_KEY], action_space)
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        self.target_return, self.return_scale, self.weight_decay = target_return, return_scale, weight_decay
        self.transformer_kwargs = transformer_kwargs
        self.config = RATEConfig(**transformer_kwargs)
        d = self.config.d_model
        self.inner_observation_space = observation_space[OBSERVATION_KEY]
        self.discrete_actions = isinstance(action_space, spaces.Discrete)
        self.action_dim = 1 if self.discrete_actions else int(np.prod(action_space.shape))
        self.observation_encoder = ObservationEncoder(self.inner_observation_space, d, normalize_images)
        self.action_encoder = ActionEncoder(action_space, d)
        self.return_encoder = th.nn.Linear(1, d)
        self.transformer = RATETransformer(self.config)
        self.action_head = make_action_head(action_space, d)
        self.optimizer = self.optimizer_class(self._parameter_groups(), lr=lr_schedule(1), **self.optimizer_kwargs)

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
            weight_decay=self.weight_decay,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            normalize_images=self.normalize_images,
            **self.transformer_kwargs,
        )
        return data

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
            return model_actions.astype(np.int64) + int(self.action_space.start)
        low, high = self.action_space.low, self.action_space.high
        env_actions = low + 0.5 * (model_actions.reshape(-1, *self.action_space.shape) + 1.0) * (high - low)
        return np.clip(env_actions, low, high).astype(self.action_space.dtype)

    # ----------------------------------------------------------- training
    def embed(self, observations: th.Tensor, model_actions: th.Tensor, returns_to_go: th.Tensor) -> th.Tensor:
        """Interleave [R_t, o_t, a_t] tokens: (B, W, ...) inputs to (B, 3W, d)."""
        batch, window = returns_to_go.shape
        obs_tokens = self.observation_encoder(observations.flatten(0, 1)).view(batch, window, -1)
        action_tokens = self.action_encoder(model_actions)
        return_tokens = self.return_encoder(returns_to_go[..., None].float())
        return th.stack([return_tokens, obs_tokens, action_tokens], dim=2).flatten(1, 2)

    def window_hidden(
        self,
        observations: th.Tensor,
        model_actions: th.Tensor,
        returns_to_go: th.Tensor,
        valid: th.Tensor,
        burn_in_segments: int = 0,
    ) -> th.Tensor:
        """Transformer outputs at the observation tokens (B, W, d) for segment-aligned windows.

        The first ``burn_in_segments`` segments only build memory and cache, without gradient.
        """
        tokens = self.embed(observations, model_actions, returns_to_go)
        token_valid = valid.repeat_interleave(3, dim=1)
        memory = cache = cache_valid = None
        split = 3 * burn_in_segments * self.config.segment_len
        if split:
            with th.no_grad():
                burn = self.transformer(tokens[:, :split], token_valid[:, :split])
            memory, cache, cache_valid = burn.memory, burn.cache, burn.cache_valid
        out = self.transformer(tokens[:, split:], token_valid[:, split:], memory, cache, cache_valid)
        return out.hidden.view(tokens.shape[0], -1, 3, self.config.d_model)[:, :, 1]

    # ---------------------------------------------------------- inference
    def initial_state(self, n_envs: int) -> RATEState:
        cfg, store_dtype = self.config, np.float32
        slots = cfg.mem_len + cfg.n_tokens + 1
        return RATEState(
            memory=np.zeros((n_envs, cfg.n_mem_tokens, cfg.d_model), store_dtype),
            keys=np.zeros((n_envs, cfg.n_layers, cfg.n_heads, slots, cfg.d_head), store_dtype),
            values=np.zeros((n_envs, cfg.n_layers, cfg.n_heads, slots, cfg.d_head), store_dtype),
            layer_inputs=np.zeros(
                (n_envs, cfg.n_layers, (cfg.n_tokens + 1) if cfg.mem_len else 0, cfg.d_model), store_dtype
            ),
            cache=np.zeros((n_envs, cfg.n_layers, cfg.mem_len, cfg.d_model), store_dtype),
            cache_valid=np.zeros((n_envs, cfg.mem_len), bool),
            step=np.zeros(n_envs, np.int64),
            return_to_go=np.zeros(n_envs, np.float32),
            last_action=np.zeros((n_envs, self.action_dim), np.float32),
        )

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, RATEState]:
        """Next action for each env, with the RecurrentPPO conventions.

        ``state=None`` starts every env; ``episode_start[i]`` restarts env i. The state arrays are updated
        in place (copy them to keep an older state).
        """
        self.set_training_mode(False)
        inner, prev_reward, vectorized = self._split_observation(observation)
        n_envs = len(prev_reward)
        if state is None:
            state, starts = self.initial_state(n_envs), np.ones(n_envs, dtype=bool)
        else:
            state = RATEState(*state)
            starts = np.zeros(n_envs, bool) if episode_start is None else np.array(episode_start, dtype=bool)
            starts = starts.reshape(n_envs)
            if state.step.shape[0] != n_envs:
                raise ValueError(f"state holds {state.step.shape[0]} envs but the observation has {n_envs}")
        with th.no_grad():
            model_actions = self._act(inner, prev_reward, state, starts, deterministic)
        actions = self.actions_to_env(model_actions)
        return (actions if vectorized else actions[0]), state

    def _predict(self, observation: Any, deterministic: bool = False) -> th.Tensor:
        """Stateless step (every observation starts an episode); use :meth:`predict` to carry memory."""
        raise NotImplementedError("RATEPolicy is stateful: call predict(obs, state, episode_start)")

    def _split_observation(self, observation: Any) -> tuple[th.Tensor, np.ndarray, bool]:
        if not isinstance(observation, dict) or set(observation) != {OBSERVATION_KEY, PREV_REWARD_KEY}:
            raise ValueError(f"RATEPolicy.predict needs observations with the previous reward; {WRAP_HINT}")
        prev_reward = np.asarray(observation[PREV_REWARD_KEY], dtype=np.float32)
        vectorized = prev_reward.ndim == 2
        inner = np.asarray(observation[OBSERVATION_KEY])
        if not vectorized:
            inner, prev_reward = inner[None], prev_reward[None]
        tensor = th.as_tensor(inner, device=self.device)
        return tensor, prev_reward.reshape(-1), vectorized

    def _act(
        self, observations: th.Tensor, prev_reward: np.ndarray, state: RATEState, starts: np.ndarray, deterministic
    ) -> np.ndarray:
        cfg, m = self.config, self.config.n_mem_tokens
        t = {name: th.as_tensor(value, device=self.device) for name, value in state._asdict().items()}
        starts_t = th.as_tensor(starts, device=self.device)
        self._restart(t, starts_t)
        t["return_to_go"] -= th.as_tensor(prev_reward, device=self.device) * self.return_scale * ~starts_t
        in_segment = t["step"] % cfg.segment_len
        new_segment = in_segment == 0
        finished = new_segment & (t["step"] > 0)
        if finished.any():
            self._finish_segments(t, finished.nonzero().flatten())
        if new_segment.any():
            self._begin_segments(t, new_segment.nonzero().flatten())
        tokens = self.embed(observations[:, None], self._last_action(t)[:, None], t["return_to_go"][:, None])
        token_idx = m + 3 * in_segment[:, None] + th.arange(-1, 2, device=self.device)
        token_idx[:, 0] = th.where(new_segment, cfg.n_tokens, token_idx[:, 0])  # no previous action: scratch slot
        hidden = self.transformer.step(self._store(t), tokens[:, [2, 0, 1]], token_idx)[:, 2]
        actions = self.action_head.act(hidden, deterministic)
        t["step"] += 1
        t["last_action"].copy_(actions.reshape(len(actions), -1))
        if self.device.type != "cpu":
            for name, value in t.items():
                getattr(state, name)[...] = value.cpu().numpy()
        return actions.cpu().numpy()

    def _last_action(self, t: dict[str, th.Tensor]) -> th.Tensor:
        """The previous model action per env: (n,) indices or (n, action_dim)."""
        return t["last_action"][:, 0] if self.discrete_actions else t["last_action"]

    def _restart(self, t: dict[str, th.Tensor], starts: th.Tensor) -> None:
        idx = starts.nonzero().flatten()
        if len(idx) == 0:
            return
        t["step"][idx] = 0
        t["return_to_go"][idx] = self.target_return * self.return_scale
        t["memory"][idx] = self.transformer.initial_memory.detach().to(t["memory"].dtype)
        t["cache_valid"][idx] = False
        t["last_action"][idx] = 0.0

    def _store(self, t: dict[str, th.Tensor], idx: th.Tensor | None = None) -> KeyValueStore:
        """The inference store as views of the state (or copies of rows ``idx``)."""
        pick = (lambda x: x) if idx is None else (lambda x: x[idx])
        cfg = self.config
        keys, values = pick(t["keys"]), pick(t["values"])
        key_idx = th.arange(-cfg.mem_len, cfg.n_tokens + 1, device=self.device)
        x_valid = th.ones(keys.shape[0], cfg.n_tokens + 1, dtype=th.bool, device=self.device)
        key_valid = th.cat([pick(t["cache_valid"]), x_valid], dim=1)
        layer_inputs = list(pick(t["layer_inputs"]).unbind(1)) if cfg.mem_len else None
        return KeyValueStore(list(keys.unbind(1)), list(values.unbind(1)), key_idx, key_valid, layer_inputs)

    def _finish_segments(self, t: dict[str, th.Tensor], idx: th.Tensor) -> None:
        """Add the segment's last action, then write memory and cache from all 3K tokens."""
        cfg = self.config
        store = self._store(t, idx)
        last_action = self.action_encoder(self._last_action(t)[idx])
        action_idx = th.full((len(idx), 1), cfg.n_mem_tokens + 3 * cfg.segment_len - 1, device=self.device)
        self.transformer.step(store, last_action[:, None], action_idx)
        memory, cache, cache_valid = self.transformer.end_segment(
            store, t["memory"][idx], t["cache"][idx], t["cache_valid"][idx]
        )
        if memory is not None:
            t["memory"][idx] = memory
        if cache is not None:
            t["cache"][idx], t["cache_valid"][idx] = cache, cache_valid

    def _begin_segments(self, t: dict[str, th.Tensor], idx: th.Tensor) -> None:
        store = self.transformer.empty_store(len(idx), t["keys"])
        self.transformer.begin_segment(store, t["memory"][idx], t["cache"][idx], t["cache_valid"][idx])
        t["keys"][idx] = th.stack(store.keys, dim=1)
        t["values"][idx] = th.stack(store.values, dim=1)
        if store.layer_inputs is not None:
            t["layer_inputs"][idx] = th.stack(store.layer_inputs, dim=1)
