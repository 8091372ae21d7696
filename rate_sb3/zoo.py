"""RATE in the RL Zoo (rl_zoo3): registration, the Optuna search space, and checks that run before training.

``register()`` adds RATE to rl_zoo3 (``--algo rate``, ``-optimize``, ``--trial-id``). ``prepare_train_argv``
is what ``zoo/train.py`` runs before ``rl_zoo3.train.train()``: it points ``--conf-file`` at this repo's
``hyperparams/<algo>.yml``, catches bad input (unknown env id, YAML key the algorithm does not accept,
missing or mismatched demonstrations) with a message naming the key or path, and works around rl_zoo3
building its evaluation env without the YAML ``env_kwargs``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any

import gymnasium as gym
import optuna
import yaml
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecTransposeImage

from rate_sb3.data import load_demonstrations, validate_episodes
from rate_sb3.demonstrations import EXPERT_SPEC_KEYS
from rate_sb3.envs import make_expert
from rate_sb3.rate import RATE
from rate_sb3.wrappers import OBSERVATION_KEY, has_reward_feedback

ALGO_NAME = "rate"
CONFIGURED_ALGOS = ("rate", "ppo_lstm")
"""Algorithms with a config in this repo's ``hyperparams/`` folder (used when ``--conf-file`` is not given)."""

_CONSUMED = ("n_envs", "n_timesteps", "normalize", "monitor_kwargs", "env_kwargs", "frame_stack", "callback")
ZOO_KEYS = frozenset((*_CONSUMED, "env_wrapper", "vec_env_wrapper"))
"""YAML keys that rl_zoo3 consumes itself; every other key goes to the algorithm's constructor."""

ZOO_SET_KEYS = frozenset({"env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"})
"""Constructor arguments that rl_zoo3 passes from the command line: not allowed in a YAML entry."""

# ---------------------------------------------------------------------------------------------- search space
LEARNING_RATE_RANGE = (1e-5, 1e-3)
SEARCH_SPACE: dict[str, list[Any]] = {
    "batch_size": [16, 32, 64, 128],
    "context_len": [10, 20, 30, 50],
    "n_mem_tokens": [2, 4, 8, 16],
    "n_layers": [1, 2, 3, 4],
    "n_heads": [1, 2, 4, 8],
    # multiples of 32: divisible by every n_heads choice and by n_heads_mrv (2 by default, up to 32)
    "d_model": [32, 64, 128],
    "dropout": [0.0, 0.05, 0.1, 0.2],
    "demo_fraction": [0.0, 0.1, 0.25, 0.5],
    "gradient_steps": [10, 25, 50, 100],
}
TARGET_ENTROPY_SCALES = (0.25, 0.5, 1.0, 2.0)
DISCRETE_ENTROPY_UNIT = 0.1
"""Nats per step that scale 1 stands for with Discrete actions (the zoo passes ``n_actions=0`` for them, so
the sampler cannot use RATE's own default ``0.1 * log(n)``: 0.1 nats is that default for n of about 3)."""
SAMPLED_KEYS = ("learning_rate", *SEARCH_SPACE, "target_entropy")


def register() -> None:
    """Add RATE to rl_zoo3 (idempotent): ``ALGOS``, ``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``."""
    import rl_zoo3
    from rl_zoo3 import hyperparams_opt

    rl_zoo3.ALGOS[ALGO_NAME] = RATE  # the dict shared by rl_zoo3.train, .enjoy and .exp_manager
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_rate_params
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_rate_params


def target_entropy_choices(n_actions: int) -> list[float]:
    """Target entropies the sampler chooses from: ``-scale * n_actions`` (Box), ``scale * 0.1`` nats (Discrete).

    :param n_actions: action dimension for Box action spaces, 0 for Discrete ones (what rl_zoo3 passes)
    """
    unit = -float(n_actions) if n_actions > 0 else DISCRETE_ENTROPY_UNIT
    return [scale * unit for scale in TARGET_ENTROPY_SCALES]


def sample_rate_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """Optuna search space of RATE: top-level constructor arguments only.

    Never ``policy_kwargs``: rl_zoo3 applies the sample with ``dict.update``, which would replace the YAML's
    ``policy_kwargs`` instead of merging. Every combination is valid (``d_model`` is a multiple of every
    ``n_heads`` choice and of ``n_heads_mrv``).

    :param trial: the Optuna trial
    :param n_actions: action dimension (Box), 0 for Discrete action spaces
    :param n_envs: number of training envs (unused)
    :param additional_args: rl_zoo3's HER information (unused)
    :return: constructor arguments, applied over the YAML entry
    """
    sampled: dict[str, Any] = {"learning_rate": trial.suggest_float("learning_rate", *LEARNING_RATE_RANGE, log=True)}
    for name, choices in SEARCH_SPACE.items():
        sampled[name] = trial.suggest_categorical(name, choices)
    sampled["target_entropy"] = trial.suggest_categorical("target_entropy", target_entropy_choices(n_actions))
    return convert_rate_params(sampled)


def convert_rate_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """RATE's constructor arguments from a trial's ``params`` (used by ``--trial-id``): the sampler's dict.

    :param sampled_params: ``trial.params`` of a trial sampled by :func:`sample_rate_params`
    """
    unknown = sorted(set(sampled_params) - set(SAMPLED_KEYS))
    if unknown:
        raise ValueError(f"trial params {unknown} were not sampled by rate_sb3.zoo.sample_rate_params")
    return {key: sampled_params[key] for key in SAMPLED_KEYS if key in sampled_params}


# ------------------------------------------------------------------------------------ checks before training
class ZooConfigError(ValueError):
    """Bad command line or hyperparameter entry, found before rl_zoo3 builds anything."""


def prepare_train_argv(argv: list[str], config_dir: str | Path) -> list[str]:
    """The command line to give ``rl_zoo3.train.train()``, after checking it and its YAML entry.

    For ``--algo rate`` / ``--algo ppo_lstm``: adds ``--conf-file <config_dir>/<algo>.yml`` when no config is
    given; checks the env id, the entry's keys against the constructor and RATE's demonstrations; adds
    ``--eval-env-kwargs`` with the entry's ``env_kwargs`` when neither ``--env-kwargs`` nor
    ``--eval-env-kwargs`` is given (rl_zoo3 would build the evaluation env without them); turns
    ``--trial-id 0``, which rl_zoo3 ignores, into ``-params`` with that trial's values. Other algorithms and
    ``--help`` pass through unchanged.

    :param argv: ``sys.argv``
    :param config_dir: folder holding ``rate.yml`` and ``ppo_lstm.yml``
    :raises ZooConfigError: on bad input, with a message naming the flag, key or path
    """
    if {"-h", "--help"} & set(argv):
        return list(argv)
    args = _parse_args(argv[1:])
    if args.algo not in CONFIGURED_ALGOS:
        return list(argv)
    argv = list(argv)
    if args.conf_file is None:
        args.conf_file = str(Path(config_dir).resolve() / f"{args.algo}.yml")
        argv += ["--conf-file", args.conf_file]
    env_id = check_env_id(args.env, args.gym_packages)
    name, entry = select_entry(load_config(args.conf_file), env_id, args.conf_file)
    trial_params = _trial_zero_argv(args)
    argv += trial_params
    entry = {**entry, **(args.hyperparams or {})}
    where = f"{args.conf_file} entry {name!r}"
    check_hyperparams(_algo_class(args.algo), entry, where, n_timesteps_given=args.n_timesteps > 0)
    if args.algo == ALGO_NAME:
        check_rate_entry(entry, env_id, where, args.vec_env)
    if entry.get("env_kwargs") and args.env_kwargs is None and args.eval_env_kwargs is None:
        argv += [
            "--eval-env-kwargs",
            *store_dict_items(entry["env_kwargs"], f"{where}: env_kwargs", "--eval-env-kwargs"),
        ]
    return argv


def _trial_zero_argv(args: argparse.Namespace) -> list[str]:
    """``-params`` with the values of trial 0 for ``--trial-id 0``, which rl_zoo3 skips (it tests the id's truth).

    Also sets ``args.hyperparams`` to them, as rl_zoo3 will see them.
    """
    if args.trial_id != 0 or not (args.storage and args.study_name):
        return []
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER

    storage: Any = args.storage
    if storage.endswith(".log"):
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    try:
        params = optuna.load_study(study_name=args.study_name, storage=storage).trials[0].params
    except (KeyError, IndexError) as error:
        raise ZooConfigError(f"--trial-id 0: study {args.study_name!r} in {args.storage} has no trial 0") from error
    converter = convert_rate_params if args.algo == ALGO_NAME else HYPERPARAMS_CONVERTER[args.algo]
    values = converter(params)
    items = store_dict_items(values, "--trial-id 0", "-params")
    if args.hyperparams is not None:
        raise ZooConfigError(
            "--trial-id 0 is ignored by rl_zoo3 and cannot be combined with -params here: drop --trial-id and add "
            f"its values to your -params: {' '.join(items)}"
        )
    args.hyperparams = values
    return ["-params", *items]


def _parse_args(argv: list[str]) -> argparse.Namespace:
    """The few rl_zoo3 training flags the checks need (everything else is left to rl_zoo3)."""
    from rl_zoo3.utils import StoreDict

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-conf", "--conf-file", default=None)
    parser.add_argument("-params", "--hyperparams", nargs="+", action=StoreDict)
    parser.add_argument("--env-kwargs", nargs="+", action=StoreDict)
    parser.add_argument("--eval-env-kwargs", nargs="+", action=StoreDict)
    parser.add_argument("--gym-packages", nargs="+", default=[])
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--study-name", default=None)
    parser.add_argument("--trial-id", type=int, default=None)
    parser.add_argument("--vec-env", default="dummy")
    try:
        return parser.parse_known_args(argv)[0]
    except Exception as error:  # StoreDict evaluates values as Python: any error is a bad value
        raise ZooConfigError(f"cannot parse the command line: {error}") from error


def _algo_class(algo: str) -> type:
    from rl_zoo3 import ALGOS

    return RATE if algo == ALGO_NAME else ALGOS[algo]


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
    """The observation space RATE's demonstrations must match (after the entry's wrappers and rl_zoo3's
    ``VecTransposeImage``, without the previous reward) and the action space.

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
    observation_space = observation_space[OBSERVATION_KEY]
    if is_image_space(observation_space) and not is_image_space_channels_first(observation_space):
        observation_space = VecTransposeImage.transpose_space(observation_space)
    return observation_space, action_space


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
        raise ZooConfigError(f"{where}: '{key}': {error}{hint}") from error
    except (ValueError, TypeError, ImportError) as error:
        raise ZooConfigError(f"{where}: '{key}': cannot load {source}: {error}") from error
    try:
        validate_episodes(episodes, observation_space, action_space, source=str(source))
    except ValueError as error:
        raise ZooConfigError(f"{where}: '{key}' does not match the env: {error}") from error


def store_dict_items(kwargs: dict[str, Any], what: str, flag: str) -> list[str]:
    """``KEY:VALUE`` command-line items that rl_zoo3's ``StoreDict`` turns back into ``kwargs``.

    :param kwargs: keyword arguments made of Python literals
    :param what: what they are, for messages
    :param flag: the flag they are meant for, for messages
    """
    items = []
    for key, value in kwargs.items():
        text = repr(value)
        try:
            round_trips = ast.literal_eval(text) == value
        except (ValueError, SyntaxError):
            round_trips = False
        if ":" in str(key) or not round_trips:
            raise ZooConfigError(
                f"{what}: {key}={value!r} cannot be passed as {flag} automatically; pass {flag} yourself"
            )
        items.append(f"{key}:{text}")
    return items
