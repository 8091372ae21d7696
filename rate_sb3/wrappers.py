"""Reward feedback for return-to-go conditioning.

Stable-Baselines3 never passes rewards to ``predict``, yet a return-conditioned policy must lower its
return-to-go by each reward it receives. :class:`PrevRewardWrapper` puts the previous reward into the
observation, so every caller of ``predict`` (``evaluate_policy``, ``EvalCallback``, the zoo's enjoy) feeds
it back without knowing about it. It sits inside ``Monitor``'s view of rewards, which stay untouched.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

OBSERVATION_KEY = "observation"
PREV_REWARD_KEY = "prev_reward"

WRAP_HINT = (
    "wrap the env with rate_sb3.wrappers.PrevRewardWrapper (gym env), e.g. "
    "make_vec_env(env_id, wrapper_class=PrevRewardWrapper), or pass the env id to RATE, which wraps it"
)


def reward_observation_space(observation_space: spaces.Space) -> spaces.Dict:
    """The Dict space seen by RATE: the env's observation and the previous reward.

    A Dict observation gets the previous reward as one more key (SB3 refuses nested Dict spaces); any other
    observation becomes ``{"observation": obs, "prev_reward": [r]}``.
    """
    reward_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    if isinstance(observation_space, spaces.Dict):
        if PREV_REWARD_KEY in observation_space.spaces:
            raise ValueError(
                f"the env's Dict observation already has a key {PREV_REWARD_KEY!r} ({observation_space}): RATE puts "
                "the previous reward there; rename that key (a gymnasium.ObservationWrapper) or, if it is the "
                "previous reward, do not wrap the env twice with PrevRewardWrapper"
            )
        return spaces.Dict({**observation_space.spaces, PREV_REWARD_KEY: reward_space})
    return spaces.Dict({OBSERVATION_KEY: observation_space, PREV_REWARD_KEY: reward_space})


def has_reward_feedback(observation_space: spaces.Space) -> bool:
    return isinstance(observation_space, spaces.Dict) and PREV_REWARD_KEY in observation_space.spaces


def _wraps_plain_observation(keys) -> bool:
    return set(keys) == {OBSERVATION_KEY, PREV_REWARD_KEY}


def env_observation_space(observation_space: spaces.Dict) -> spaces.Space:
    """The env's own observation space inside RATE's (the inverse of :func:`reward_observation_space`)."""
    if _wraps_plain_observation(observation_space.spaces):
        return observation_space[OBSERVATION_KEY]
    return spaces.Dict({key: space for key, space in observation_space.spaces.items() if key != PREV_REWARD_KEY})


def env_observation(observation: dict[str, Any]) -> Any:
    """The env's own observation (an array, or a dict of arrays) inside one of RATE's, single or batched."""
    if _wraps_plain_observation(observation):
        return observation[OBSERVATION_KEY]
    return {key: value for key, value in observation.items() if key != PREV_REWARD_KEY}


def newest_reward(prev_reward: np.ndarray) -> np.ndarray:
    """The previous reward of each env (n,) from ``prev_reward`` (n, k): with SB3's ``VecFrameStack`` the last
    k rewards are stacked, the newest last."""
    return prev_reward[:, -1]


class PrevRewardWrapper(gym.ObservationWrapper):
    """Observation ``{"observation": obs, "prev_reward": [r_{t-1}]}``, with 0 after a reset.

    A Dict observation gets the previous reward as one more key instead: ``{**obs, "prev_reward": [r_{t-1}]}``.

    :param env: the env to wrap (a Dict observation must not have a ``"prev_reward"`` key)
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = reward_observation_space(env.observation_space)
        self._prev_reward = 0.0

    def reset(self, **kwargs) -> tuple[dict[str, Any], dict]:
        self._prev_reward = 0.0
        return super().reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._prev_reward = float(reward)
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation: Any) -> dict[str, Any]:
        prev_reward = np.array([self._prev_reward], dtype=np.float32)
        if isinstance(observation, dict):
            return {**observation, PREV_REWARD_KEY: prev_reward}
        return {OBSERVATION_KEY: observation, PREV_REWARD_KEY: prev_reward}


def with_reward_feedback(env: gym.Env | VecEnv | str | None) -> gym.Env | VecEnv | None:
    """The env with the previous reward in its observations: an env id, or a gym env that does not carry
    :class:`PrevRewardWrapper` yet, is wrapped in it; a VecEnv must carry it already.

    :param env: env id, gym env, VecEnv or None
    :raises ValueError: for a VecEnv without the previous reward, saying how to wrap it
    """
    if isinstance(env, str) or (isinstance(env, gym.Env) and not _reward_wrapped(env)):
        return PrevRewardWrapper(gym.make(env) if isinstance(env, str) else env)
    if isinstance(env, VecEnv) and not has_reward_feedback(env.observation_space):
        raise ValueError(f"RATE needs the previous reward in the observation; {WRAP_HINT}")
    return env


def _reward_wrapped(env: gym.Env) -> bool:
    """The env carries PrevRewardWrapper (an env's own Dict key named "prev_reward" is no previous reward)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, PrevRewardWrapper):
            return True
        env = env.env
    return False


class SuccessFromReward(gym.Wrapper):
    """Sets ``info["is_success"]`` at the end of every episode to "some reward was positive", for envs that pay
    only for success and do not report it (MiniGrid), so that evaluations report a success rate."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._succeeded = False

    def reset(self, **kwargs):
        self._succeeded = False
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._succeeded = self._succeeded or float(reward) > 0
        if terminated or truncated:
            info = {**info, "is_success": self._succeeded}
        return obs, reward, terminated, truncated, info


class VecObservationOnly(VecEnvWrapper):
    """Hides the previous reward again: a VecEnv of the original observations, used to record demonstrations
    on the training env itself (same wrappers and env kwargs)."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv, observation_space=env_observation_space(venv.observation_space))

    def reset(self) -> Any:
        return env_observation(self.venv.reset())

    def step_wait(self):
        observations, rewards, dones, infos = self.venv.step_wait()
        infos = [_strip_terminal_observation(info) for info in infos]
        return env_observation(observations), rewards, dones, infos


def _strip_terminal_observation(info: dict) -> dict:
    if "terminal_observation" not in info:
        return info
    return dict(info, terminal_observation=env_observation(info["terminal_observation"]))
