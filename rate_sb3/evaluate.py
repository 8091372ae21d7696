"""Evaluate a saved RATE model: ``python -m rate_sb3.evaluate --model PATH.zip --env ID``.

Episode j is reset with seed ``S + j`` whatever the number of parallel envs, so results do not depend on
``--n-envs``; T-Maze maps even seeds to the upper goal, so N consecutive episodes split evenly over both
sides. The last stdout line is one JSON object with ``env``, ``episodes``, ``mean_return``, ``std_return``,
``success_rate`` (from ``info["is_success"]``, null when the env does not report it), ``mean_length``
and ``seconds``; for HalfCheetah, Hopper and Walker2d also ``normalized_score``, D4RL's (:mod:`rate_sb3.d4rl`).

Env wrappers (``--env-wrapper PATH``, repeatable, applied in order, like rl_zoo3's ``env_wrapper``) and the frame
stack (``--frame-stack N``, rl_zoo3's ``frame_stack``) come from the run folder's ``<env id>/config.yml`` when
``--model`` was trained by the zoo and neither flag is given.
Images are made channel-first, as Stable-Baselines3 does for training (VecTransposeImage), when the model
expects it; the previous reward is added to the observation when the model expects it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecTransposeImage
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from rate_sb3.d4rl import is_d4rl_env, normalized_score
from rate_sb3.envs import make_env
from rate_sb3.importing import import_callable
from rate_sb3.observations import env_row, map_observations
from rate_sb3.wrappers import PrevRewardWrapper, has_reward_feedback

EnvWrappers = str | dict[str, dict[str, Any]] | Sequence[str | dict[str, dict[str, Any]]] | None
"""rl_zoo3's ``env_wrapper`` value: a dotted class path, ``{path: kwargs}``, or a list of them (applied in order)."""


def evaluate(
    model: BaseAlgorithm,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    n_episodes: int = 100,
    n_envs: int = 1,
    seed: int = 0,
    deterministic: bool = True,
    env_wrappers: EnvWrappers = None,
    frame_stack: int | None = None,
) -> dict[str, Any]:
    """Run ``n_episodes`` episodes over ``n_envs`` envs stepped in one batch; returns the summary dict.

    :param env_wrappers: wrappers applied to each env, as rl_zoo3's ``env_wrapper`` (e.g.
        ``["minigrid.wrappers.ImgObsWrapper", "rate_sb3.wrappers.PrevRewardWrapper"]``)
    :param frame_stack: frames stacked as SB3's ``VecFrameStack`` (rl_zoo3's ``frame_stack``) stacked them in
        training, after the wrappers
    """
    if n_episodes < 1 or n_envs < 1:
        raise ValueError(f"episodes ({n_episodes}) and n_envs ({n_envs}) must be >= 1")
    start_time = time.perf_counter()
    wrappers = resolve_env_wrappers(env_wrappers)
    envs = [
        _make_eval_env(model, env_id, env_kwargs or {}, wrappers, frame_stack) for _ in range(min(n_envs, n_episodes))
    ]
    runner = _EpisodeRunner(envs, n_episodes, seed)
    state, starts = None, np.ones(len(envs), dtype=bool)
    while runner.active.any():
        actions, state = model.predict(runner.observations(), state, starts, deterministic=deterministic)
        starts = runner.step(actions)
    for env in envs:
        env.close()
    returns, lengths = np.array(runner.returns), np.array(runner.lengths)
    successes = [s for s in runner.successes if s is not None]
    result = {
        "env": env_id,
        "episodes": n_episodes,
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "success_rate": float(np.mean(successes)) if len(successes) == n_episodes else None,
        "mean_length": float(lengths.mean()),
        "seconds": round(time.perf_counter() - start_time, 3),
    }
    if is_d4rl_env(env_id):
        result["normalized_score"] = float(normalized_score(env_id, result["mean_return"]))
    return result


def _make_eval_env(
    model: BaseAlgorithm,
    env_id: str,
    env_kwargs: dict[str, Any],
    wrappers: list[tuple[str, Callable]],
    frame_stack: int | None,
) -> gym.Env:
    env = make_env(env_id, **env_kwargs)
    for name, wrapper in wrappers:
        try:
            env = wrapper(env)
        except Exception as error:  # any failure of a user's wrapper: name it
            raise ValueError(f"env wrapper {name}: cannot wrap {env_id}: {type(error).__name__}: {error}") from error
    if has_reward_feedback(model.observation_space) and not has_reward_feedback(env.observation_space):
        env = PrevRewardWrapper(env)
    if frame_stack:
        env = FrameStack(env, frame_stack)
    keys = _keys_to_transpose(model.observation_space, env.observation_space)
    env = _ChannelFirst(env, keys) if keys else env
    if _shapes(env.observation_space) != _shapes(model.observation_space):
        raise ValueError(
            f"{env_id} gives observations {env.observation_space}, the model expects {model.observation_space}: "
            "give the env wrappers and frame stack it was trained with (--env-wrapper PATH, --frame-stack N, or the "
            "zoo run's config.yml next to it)"
        )
    return env


def _shapes(space: spaces.Space) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _shapes(subspace) for key, subspace in space.spaces.items()}
    return space.shape


def resolve_env_wrappers(env_wrappers: EnvWrappers) -> list[tuple[str, Callable[[gym.Env], gym.Env]]]:
    """The wrappers of rl_zoo3's ``env_wrapper`` value, imported, as ``(name, callable)`` pairs in order.

    :raises ValueError: naming the wrapper that cannot be imported or is malformed
    """
    if env_wrappers is None:
        return []
    items = [env_wrappers] if isinstance(env_wrappers, (str, dict)) else list(env_wrappers)
    wrappers = []
    for item in items:
        kwargs: dict[str, Any] = {}
        if isinstance(item, dict):
            if len(item) != 1:
                raise ValueError(f"env wrapper {item!r}: expected one {{path: kwargs}} pair")
            ((item, kwargs),) = item.items()
            kwargs = dict(kwargs or {})
        wrapper = import_callable(item, "env wrapper", "minigrid.wrappers.ImgObsWrapper")
        wrappers.append((str(item), functools.partial(wrapper, **kwargs)))
    return wrappers


class FrameStack(gym.Wrapper):
    """SB3's ``VecFrameStack`` for one gym env: the same layout, from SB3's own ``StackedObservations``.

    :param env: the env
    :param n_stack: frames stacked
    """

    def __init__(self, env: gym.Env, n_stack: int) -> None:
        super().__init__(env)
        self.stacked = StackedObservations(1, n_stack, env.observation_space)
        self.observation_space = self.stacked.stacked_observation_space

    def reset(self, **kwargs) -> tuple[Any, dict]:
        observation, info = self.env.reset(**kwargs)
        return self._one(self.stacked.reset(map_observations(observation, _batch_of_one))), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        stacked, _ = self.stacked.update(map_observations(observation, _batch_of_one), np.zeros(1, bool), [{}])
        return self._one(stacked), reward, terminated, truncated, info

    @staticmethod
    def _one(stacked: Any) -> Any:
        return env_row(stacked, 0)  # a copy: the stack's buffer changes at the next step


def _batch_of_one(values: Any) -> np.ndarray:
    return np.asarray(values)[None]


def _keys_to_transpose(model_space: spaces.Space, env_space: spaces.Space) -> list[str | None]:
    """Observation keys (None: the whole observation) that are channel-last images the model wants channel-first."""
    if isinstance(model_space, spaces.Dict) and isinstance(env_space, spaces.Dict):
        pairs = [(key, model_space[key], env_space[key]) for key in model_space.spaces if key in env_space.spaces]
    else:
        pairs = [(None, model_space, env_space)]
    return [
        key
        for key, wanted, given in pairs
        if is_image_space(given)
        and not is_image_space_channels_first(given)
        and VecTransposeImage.transpose_space(given).shape == wanted.shape != given.shape
    ]


class _ChannelFirst(gym.ObservationWrapper):
    """Channel-last images to channel-first, the transposition of SB3's VecTransposeImage for one env."""

    def __init__(self, env: gym.Env, keys: list[str | None]) -> None:
        super().__init__(env)
        self.keys = keys
        space = copy.deepcopy(env.observation_space)
        for key in keys:
            if key is None:
                space = VecTransposeImage.transpose_space(space)
            else:
                space[key] = VecTransposeImage.transpose_space(space[key], key)
        self.observation_space = space

    def observation(self, observation: Any) -> Any:
        if None in self.keys:
            return VecTransposeImage.transpose_image(observation)
        observation = dict(observation)
        for key in self.keys:
            observation[key] = VecTransposeImage.transpose_image(observation[key])
        return observation


def zoo_env_name(env_id: str) -> str:
    """The name rl_zoo3 gives files and folders of an env id (huggingface_sb3's ``EnvironmentName``): slashes
    become dashes and a ``module:`` prefix is dropped."""
    return env_id.replace("/", "-").split(":")[-1]


def zoo_config(model_path: str | Path, env_id: str) -> dict[str, Any]:
    """The entry of the rl_zoo3 run holding ``model_path`` (``<run>/<env name>/config.yml``), else ``{}``.

    rl_zoo3 writes that file with ``yaml.dump`` of an OrderedDict (a list of ``[key, value]`` pairs under a
    Python tag); it is read here without running arbitrary Python tags.
    """
    config_path = Path(model_path).parent / zoo_env_name(env_id) / "config.yml"
    if not config_path.is_file():
        return {}
    try:
        config = yaml.load(config_path.read_text(), Loader=_ZooConfigLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"cannot read the zoo config {config_path}: {error}") from error
    return config if isinstance(config, dict) else {}


class _ZooConfigLoader(yaml.SafeLoader):
    """SafeLoader that reads rl_zoo3's OrderedDict as a dict and other Python tags as plain data."""


def _construct_ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    arguments = loader.construct_sequence(node, deep=True)
    return dict(arguments[0]) if arguments else {}


def _construct_plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


_ZooConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _construct_ordered_dict
)
_ZooConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_plain)


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
    parser.add_argument(
        "--env-wrapper",
        action="append",
        metavar="PATH",
        help="gym wrapper class (dotted path), repeatable, applied in order; default: the zoo run's config.yml",
    )
    parser.add_argument(
        "--frame-stack", type=int, metavar="N", help="frames stacked in training; default: the zoo run's config.yml"
    )
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--reset-return-to-go-per-segment",
        action="store_true",
        help="condition every segment on the target return (the paper's MuJoCo evaluation)",
    )
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, args.device)
        if args.reset_return_to_go_per_segment:
            model.policy.reset_return_to_go_per_segment = True
        env_wrappers, frame_stack = args.env_wrapper, args.frame_stack
        if env_wrappers is None and frame_stack is None:  # the flags, or else the zoo run's config.yml
            config = zoo_config(args.model, args.env)
            env_wrappers, frame_stack = config.get("env_wrapper"), config.get("frame_stack")
            if env_wrappers is not None or frame_stack is not None:
                print(
                    f"from the zoo run's config.yml: env wrappers {env_wrappers}, frame stack {frame_stack}",
                    file=sys.stderr,
                )
        result = evaluate(
            model,
            args.env,
            parse_env_kwargs(args.env_kwargs),
            args.episodes,
            args.n_envs,
            args.seed,
            deterministic=not args.stochastic,
            env_wrappers=env_wrappers,
            frame_stack=frame_stack,
        )
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
