"""Evaluate a saved RATE model: ``python -m rate_sb3.evaluate --model PATH.zip --env ID``.

Episode j is reset with seed ``S + j`` whatever the number of parallel envs, so results do not depend on
``--n-envs``; T-Maze maps even seeds to the upper goal, so N consecutive episodes split evenly over both
sides. The last stdout line is one JSON object with ``env``, ``episodes``, ``mean_return``, ``std_return``,
``success_rate`` (from ``info["is_success"]``, null when the env does not report it), ``mean_length``
and ``seconds``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from rate_sb3.envs import make_env
from rate_sb3.wrappers import PrevRewardWrapper, has_reward_feedback


def evaluate(
    model: BaseAlgorithm,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    n_episodes: int = 100,
    n_envs: int = 1,
    seed: int = 0,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Run ``n_episodes`` episodes over ``n_envs`` envs stepped in one batch; returns the summary dict."""
    if n_episodes < 1 or n_envs < 1:
        raise ValueError(f"episodes ({n_episodes}) and n_envs ({n_envs}) must be >= 1")
    start_time = time.perf_counter()
    envs = [_make_eval_env(model, env_id, env_kwargs or {}) for _ in range(min(n_envs, n_episodes))]
    runner = _EpisodeRunner(envs, n_episodes, seed)
    state, starts = None, np.ones(len(envs), dtype=bool)
    while runner.active.any():
        actions, state = model.predict(runner.observations(), state, starts, deterministic=deterministic)
        starts = runner.step(actions)
    for env in envs:
        env.close()
    returns, lengths = np.array(runner.returns), np.array(runner.lengths)
    successes = [s for s in runner.successes if s is not None]
    return {
        "env": env_id,
        "episodes": n_episodes,
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "success_rate": float(np.mean(successes)) if len(successes) == n_episodes else None,
        "mean_length": float(lengths.mean()),
        "seconds": round(time.perf_counter() - start_time, 3),
    }


def _make_eval_env(model: BaseAlgorithm, env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    env = make_env(env_id, **env_kwargs)
    if has_reward_feedback(model.observation_space) and not has_reward_feedback(env.observation_space):
        env = PrevRewardWrapper(env)
    return env


class _EpisodeRunner:
    """Steps a list of envs, handing out seeded episodes until ``n_episodes`` have finished."""

    def __init__(self, envs: list[gym.Env], n_episodes: int, seed: int) -> None:
        self.envs, self.n_episodes, self.seed = envs, n_episodes, seed
        self.next_episode = 0
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.successes: list[bool | None] = []
        self.active = np.ones(len(envs), dtype=bool)
        self.current_return = np.zeros(len(envs))
        self.current_length = np.zeros(len(envs), dtype=int)
        self.last_obs = [self._reset(env) for env in envs]

    def _reset(self, env: gym.Env) -> Any:
        obs, _ = env.reset(seed=self.seed + self.next_episode)
        self.next_episode += 1
        return obs

    def observations(self) -> Any:
        if isinstance(self.last_obs[0], dict):
            return {key: np.stack([obs[key] for obs in self.last_obs]) for key in self.last_obs[0]}
        return np.stack(self.last_obs)

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Step every active env; returns the episode-start flags for the next predict call."""
        starts = np.zeros(len(self.envs), dtype=bool)
        for i in np.flatnonzero(self.active):
            obs, reward, terminated, truncated, info = self.envs[i].step(actions[i])
            self.current_return[i] += reward
            self.current_length[i] += 1
            self.last_obs[i] = obs
            if terminated or truncated:
                self._finish(i, info)
                starts[i] = True
        return starts

    def _finish(self, i: int, info: dict) -> None:
        self.returns.append(float(self.current_return[i]))
        self.lengths.append(int(self.current_length[i]))
        self.successes.append(bool(info["is_success"]) if "is_success" in info else None)
        self.current_return[i], self.current_length[i] = 0.0, 0
        if self.next_episode < self.n_episodes:
            self.last_obs[i] = self._reset(self.envs[i])
        else:
            self.active[i] = False


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    """``["corridor_length:898", "name:'x'"]`` to ``{"corridor_length": 898, "name": "x"}``."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ValueError(f"--env-kwargs item {item!r} is not KEY:VALUE")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def load_model(path: str, device: str = "auto") -> BaseAlgorithm:
    """Load a RATE zip without needing demonstrations or rl_zoo3 (zoo zips pickle its schedule classes)."""
    from rate_sb3.rate import RATE

    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return RATE.load(path, device=device, custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path to a RATE .zip")
    parser.add_argument("--env", required=True, help="gymnasium env id")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY:VALUE")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, args.device)
        result = evaluate(
            model,
            args.env,
            parse_env_kwargs(args.env_kwargs),
            args.episodes,
            args.n_envs,
            args.seed,
            deterministic=not args.stochastic,
        )
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
