"""The unfinished episodes of online collection: each env's steps so far, made an :class:`Episode` when it ends."""

from __future__ import annotations

from typing import Any

import numpy as np

from rate_sb3.episode import Episode
from rate_sb3.observations import env_row, leading_length, map_observations, stack_observations
from rate_sb3.wrappers import env_observation


class OpenEpisodes:
    """The episode each env of a VecEnv is in, recorded step by step, and the policy state that holds its memory.

    :meth:`rate_sb3.RATE.collect_rollouts` keeps it between calls, so that ``learn(reset_num_timesteps=False)``
    continues the unfinished episodes (their memory and their records) instead of starting them anew.

    :param observations: the VecEnv's observations the episodes start from (a Dict with the previous reward)
    """

    def __init__(self, observations: dict[str, np.ndarray]) -> None:
        self.observations = observations
        self.policy_state: Any = None
        n_envs = leading_length(env_observation(observations))
        self._records = [_EpisodeRecord(_inner(observations, i)) for i in range(n_envs)]

    def add_step(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        new_observations: dict[str, np.ndarray],
        dones: np.ndarray,
        infos: list[dict],
    ) -> list[Episode]:
        """Record one step of every env (``VecEnv.step``'s results); return the episodes it ended, in env order."""
        ended = []
        for index, record in enumerate(self._records):
            record.add(actions[index], rewards[index])
            if dones[index]:
                final = map_observations(env_observation(infos[index]["terminal_observation"]), np.array)
                truncated = bool(infos[index].get("TimeLimit.truncated", False))
                ended.append(record.finish(final, truncated))
                self._records[index] = _EpisodeRecord(_inner(new_observations, index))
            else:
                record.observations.append(_inner(new_observations, index))
        self.observations = new_observations
        return ended


def _inner(observations: dict[str, np.ndarray], index: int) -> np.ndarray | dict[str, np.ndarray]:
    return env_row(env_observation(observations), index)


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
