"""Checks that run before rl_zoo3 builds anything: env id, YAML keys, RATE's wrapper and demonstrations.

Each raises :class:`ZooConfigError` with a message naming the flag, key or path. ``rate_sb3.zoo.prepare_train_argv``
runs them on the command line and YAML entry of ``zoo/train.py``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecTransposeImage
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from rate_sb3.atari_replay import build_command
from rate_sb3.data import load_demonstrations, validate_episodes
from rate_sb3.demonstrations import EXPERT_SPEC_KEYS
from rate_sb3.encoders import check_spaces
from rate_sb3.envs import make_expert, register_env_id
from rate_sb3.wrappers import env_observation_space, has_reward_feedback

_CONSUMED = ("n_envs", "n_timesteps", "normalize", "monitor_kwargs", "env_kwargs", "frame_stack", "callback")
ZOO_KEYS = frozenset((*_CONSUMED, "env_wrapper", "vec_env_wrapper"))
"""YAML keys that rl_zoo3 consumes itself; every other key goes to the algorithm's constructor."""

ZOO_SET_KEYS = frozenset({"env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"})
"""Constructor arguments that rl_zoo3 passes from the command line: not allowed in a YAML entry."""


class ZooConfigError(ValueError):
    """Bad command line or hyperparameter entry, found before rl_zoo3 builds anything."""


def check_env_id(env_id: str, gym_packages: list[str]) -> str:
    """Import the env packages (ours, rl_zoo3's, ``--gym-packages``) and check that ``env_id`` is registered.

    :param env_id: the ``--env`` value
    :param gym_packages: the ``--gym-packages`` modules
    """
    import rl_zoo3.import_envs  # noqa: F401  (the NoVel envs, MiniGrid)

    import rate_sb3.envs  # noqa: F401  (TMaze-v0)

    for module in gym_packages:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ZooConfigError(f"--gym-packages {module}: cannot import it ({error})") from error
    try:
        register_env_id(env_id)  # rl_zoo3 imports ale-py only where it is installed: say how to install it
    except ValueError as error:
        raise ZooConfigError(f"--env {env_id}: {error}") from error
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ZooConfigError(
            f"unknown env id {env_id!r} (--env): it is not in the gymnasium registry; {hint}"
            "an env from another package needs --gym-packages PACKAGE"
        )
    return env_id


def load_config(path: str) -> dict[str, Any]:
    """Read a zoo config the way rl_zoo3 does: a YAML file, a ``.py`` file or a module defining ``hyperparams``.

    :param path: the ``--conf-file`` value
    """
    try:
        if path.endswith((".yml", ".yaml")):
            config = yaml.safe_load(Path(path).read_text())
        elif path.endswith(".py"):
            namespace: dict[str, Any] = {}
            exec(Path(path).read_text(), namespace)
            config = namespace["hyperparams"]
        else:
            config = importlib.import_module(path).hyperparams
    except FileNotFoundError as error:
        raise ZooConfigError(f"--conf-file {path}: no such file") from error
    except (yaml.YAMLError, ImportError, KeyError, AttributeError, SyntaxError) as error:
        raise ZooConfigError(f"--conf-file {path}: cannot read it ({type(error).__name__}: {error})") from error
    if not isinstance(config, dict):
        raise ZooConfigError(f"--conf-file {path}: expected a mapping of env ids to entries, got {type(config)}")
    return config


def select_entry(config: dict[str, Any], env_id: str, path: str) -> tuple[str, dict[str, Any]]:
    """The entry rl_zoo3 uses for ``env_id``: its own, ``atari`` for Atari envs, else ``default``.

    :return: the entry's name and a copy of it
    """
    from rl_zoo3.exp_manager import ExperimentManager

    if env_id in config:
        name = env_id
    elif "atari" in config and ExperimentManager.is_atari(env_id):
        name = "atari"
    elif "default" in config:
        name = "default"
    else:
        raise ZooConfigError(f"{path} has no entry {env_id!r} and no 'default' entry; entries: {sorted(config)}")
    if not isinstance(config[name], dict):
        raise ZooConfigError(f"{path} entry {name!r} must be a mapping of hyperparameters, got {config[name]!r}")
    return name, dict(config[name])


def check_hyperparams(
    algo_class: type, hyperparams: dict[str, Any], where: str, n_timesteps_given: bool = False
) -> None:
    """Check an entry's keys against ``algo_class.__init__`` (rl_zoo3 would raise a bare ``TypeError``).

    :param algo_class: the algorithm class (``ALGOS[algo]``)
    :param hyperparams: the entry, with the ``-params`` overrides applied
    :param where: the config file and entry, for messages
    :param n_timesteps_given: ``-n`` was given (then ``n_timesteps`` may be missing)
    """
    parameters = inspect.signature(algo_class.__init__).parameters
    named = {name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    accepted = named - {"self"} - ZOO_SET_KEYS
    reserved = sorted(set(hyperparams) & ZOO_SET_KEYS)
    if reserved:
        raise ZooConfigError(
            f"{where}: key(s) {reserved} are set by rl_zoo3 from the command line (--seed, --device, --verbose, "
            "-tb): remove them from the entry"
        )
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(hyperparams) - accepted - ZOO_KEYS)
    if unknown and not takes_any:
        raise ZooConfigError(
            f"{where}: unknown key(s) {unknown}: {algo_class.__name__} does not accept them. Accepted: "
            f"{sorted(accepted)}, and the zoo's own keys {sorted(ZOO_KEYS)}"
        )
    if "policy" not in hyperparams:
        raise ZooConfigError(f"{where}: the key 'policy' is missing (rl_zoo3 needs it, e.g. policy: RATEPolicy)")
    if "n_timesteps" not in hyperparams and not n_timesteps_given:
        raise ZooConfigError(f"{where}: the key 'n_timesteps' is missing (or pass -n N)")


def check_rate_entry(entry: dict[str, Any], env_id: str, where: str, vec_env: str = "dummy") -> None:
    """Check RATE's wrapper and demonstrations (path, expert spec, cache) against the env of the entry.

    :param entry: the entry, with the ``-params`` overrides applied
    :param env_id: the env id
    :param where: the config file and entry, for messages
    :param vec_env: the ``--vec-env`` value (an expert reads the hidden state of in-process envs only)
    """
    observation_space, action_space = rate_spaces(env_id, entry, where)
    source = entry.get("demonstrations")
    if source is None:
        if entry.get("online", True) is False:
            raise ZooConfigError(f"{where}: 'online: false' trains on demonstrations only: set 'demonstrations'")
        return
    if isinstance(source, dict):
        _check_expert_spec(source, env_id, where)
        cache = source.get("cache")
        if cache is None or not Path(cache).exists():
            if vec_env != "dummy" and "env_id" not in source:
                raise ZooConfigError(
                    f"{where}: 'demonstrations' records with the privileged expert on the training env, which needs "
                    f"--vec-env dummy (got {vec_env}): record the cache {cache} with one dummy run first"
                )
            return
        source, key = cache, "demonstrations.cache"
    elif isinstance(source, str):
        key = "demonstrations"
    else:
        raise ZooConfigError(
            f"{where}: 'demonstrations' must be a path, a Minari id or an expert spec mapping, got {source!r}"
        )
    _check_demonstration_file(source, key, observation_space, action_space, where)


def rate_spaces(env_id: str, entry: dict[str, Any], where: str) -> tuple[spaces.Space, spaces.Space]:
    """The observation space RATE's demonstrations must match (after the entry's wrappers, rl_zoo3's
    ``VecFrameStack`` and ``VecTransposeImage``, without the previous reward) and the action space.

    :raises ZooConfigError: when the env cannot be built or lacks :class:`~rate_sb3.wrappers.PrevRewardWrapper`
    """
    from rl_zoo3.utils import get_wrapper_class

    try:
        env = gym.make(env_id, **entry.get("env_kwargs", {}))
    except Exception as error:
        kwargs = entry.get("env_kwargs")
        raise ZooConfigError(f"{where}: cannot make {env_id} with env_kwargs {kwargs}: {error}") from error
    try:
        wrapper = get_wrapper_class(entry)
        env = wrapper(env) if wrapper is not None else env
    except Exception as error:
        raise ZooConfigError(f"{where}: 'env_wrapper' {entry.get('env_wrapper')!r}: {error}") from error
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not has_reward_feedback(observation_space):
        raise ZooConfigError(
            f"{where}: RATE needs the previous reward in the observation: add rate_sb3.wrappers.PrevRewardWrapper "
            "(last) to 'env_wrapper'"
        )
    if entry.get("frame_stack"):  # rl_zoo3's VecFrameStack, before its VecTransposeImage
        observation_space = StackedObservations(
            1, int(entry["frame_stack"]), observation_space
        ).stacked_observation_space
    observation_space = _channel_first(env_observation_space(observation_space))
    try:
        check_spaces(observation_space, action_space)
    except ValueError as error:
        raise ZooConfigError(f"{where}: {error}") from error
    return observation_space, action_space


def _channel_first(space: spaces.Space) -> spaces.Space:
    """The space after rl_zoo3's VecTransposeImage: channel-last images (alone or in a Dict) made channel-first."""
    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: _channel_first(subspace) for key, subspace in space.spaces.items()})
    if is_image_space(space) and not is_image_space_channels_first(space):
        return VecTransposeImage.transpose_space(space)
    return space


def _check_expert_spec(spec: dict[str, Any], env_id: str, where: str) -> None:
    unknown = sorted(set(spec) - EXPERT_SPEC_KEYS)
    if unknown:
        raise ZooConfigError(
            f"{where}: unknown key(s) {unknown} in 'demonstrations'; accepted: {sorted(EXPERT_SPEC_KEYS)}"
        )
    n_episodes = spec.get("n_episodes")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ZooConfigError(f"{where}: 'demonstrations.n_episodes' must be a positive integer, got {n_episodes!r}")
    try:
        make_expert(spec.get("env_id", env_id), **spec.get("expert_kwargs", {}))
    except (ValueError, TypeError) as error:
        raise ZooConfigError(f"{where}: 'demonstrations.expert_kwargs': {error}") from error


def _check_demonstration_file(
    source: str, key: str, observation_space: spaces.Space, action_space: spaces.Space, where: str
) -> None:
    try:
        episodes = load_demonstrations(source)
    except FileNotFoundError as error:
        hint = "" if Path(source).is_absolute() else f" (relative paths start from the current directory {Path.cwd()})"
        command = build_command(source)
        if command is not None:
            hint += f"; build the dataset with `{command}` (from the repo root)"
        raise ZooConfigError(f"{where}: '{key}': {error}{hint}") from error
    except (ValueError, TypeError, ImportError) as error:
        raise ZooConfigError(f"{where}: '{key}': cannot load {source}: {error}") from error
    try:
        validate_episodes(episodes, observation_space, action_space, source=str(source))
    except ValueError as error:
        raise ZooConfigError(f"{where}: '{key}' does not match the env: {error}") from error
