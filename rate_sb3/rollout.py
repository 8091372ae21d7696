"""Online data collection: one vectorised env step at a time, finished episodes into the trajectory buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rate_sb3.data import Episode
from rate_sb3.observations import env_row, map_observations, stack_observations
from rate_sb3.wrappers import env_observation

if TYPE_CHECKING:
    from rate_sb3.rate import RATE


class OnlineCollector:
    """Steps ``model.env`` with the stochastic policy and stores each finished episode in the replay buffer.

    The model keeps its collector, so that ``learn(reset_num_timesteps=False)`` continues the unfinished
    episodes (their memory and their records) instead of starting them anew.

    Exploration asks for ``online_target_return``; the policy's own target return (used by evaluation
    callbacks in between) is restored after every step.
    """

    def __init__(self, model: RATE) -> None:
        self.model = model
        self.observations = model._last_obs
        self.episode_starts = np.ones(model.n_envs, dtype=bool)
        self.state = None
        self.episodes = [_EpisodeRecord(self._inner(self.observations, i)) for i in range(model.n_envs)]

    def _inner(self, observations: dict, index: int) -> np.ndarray | dict[str, np.ndarray]:
        return env_row(env_observation(observations), index)

    def step(self, callback: BaseCallback) -> bool:
        """One env step in every env; returns False when a callback asks to stop."""
        model, policy = self.model, self.model.policy
        eval_target = policy.target_return
        if model.online_target_return is not None:
            policy.target_return = model.online_target_return
        try:
            actions, self.state = policy.predict(
                self.observations, self.state, self.episode_starts, deterministic=False
            )
        finally:
            policy.target_return = eval_target
        new_obs, rewards, dones, infos = model.env.step(actions)
        model.num_timesteps += model.n_envs
        model._update_info_buffer(infos, dones)
        for index, record in enumerate(self.episodes):
            record.add(actions[index], rewards[index])
            if dones[index]:
                final = map_observations(env_observation(infos[index]["terminal_observation"]), np.array)
                truncated = bool(infos[index].get("TimeLimit.truncated", False))
                model.replay_buffer.add(record.finish(final, truncated))
                self.episodes[index] = _EpisodeRecord(self._inner(new_obs, index))
            else:
                record.observations.append(self._inner(new_obs, index))
        self.observations, self.episode_starts = new_obs, dones
        model._last_obs, model._last_episode_starts = new_obs, dones
        callback.update_locals(locals())
        return callback.on_step()  # after the bookkeeping: a later learn() continues from this step


class _EpisodeRecord:
    def __init__(self, first_observation: np.ndarray) -> None:
        self.observations = [first_observation]
        self.actions: list = []
        self.rewards: list[float] = []

    def add(self, action, reward: float) -> None:
        self.actions.append(action)
        self.rewards.append(float(reward))

    def finish(self, final_observation: np.ndarray | dict[str, np.ndarray], truncated: bool) -> Episode:
        return Episode(
            observations=stack_observations([*self.observations, final_observation]),
            actions=np.array(self.actions),
            rewards=np.array(self.rewards, dtype=np.float32),
            terminated=not truncated,
            truncated=truncated,
        )
