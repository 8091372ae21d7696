"""RATE in the RL Zoo (rl_zoo3): registration, the Optuna search space, and the command line of ``zoo/train.py``.

``register()`` adds RATE to rl_zoo3 (``--algo rate``, ``-optimize``, ``--trial-id``). ``prepare_train_argv``
is what ``zoo/train.py`` runs before ``rl_zoo3.train.train()``: it points ``--conf-file`` at this repo's
``hyperparams/<algo>.yml``, runs the checks of :mod:`rate_sb3.zoo_checks` (unknown env id, YAML key the
algorithm does not accept, missing or mismatched demonstrations: a message naming the key or path), and works
around rl_zoo3 building its evaluation env without the YAML ``env_kwargs``.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

import optuna

from rate_sb3.rate import RATE
from rate_sb3.zoo_checks import (
    ZooConfigError,
    check_env_id,
    check_hyperparams,
    check_rate_entry,
    load_config,
    select_entry,
)
from rate_sb3.zoo_sweeps import PretrainingTrialEvalCallback, is_database_url

ALGO_NAME = "rate"
CONFIGURED_ALGOS = ("rate", "ppo_lstm")
"""Algorithms with a config in this repo's ``hyperparams/`` folder (used when ``--conf-file`` is not given)."""

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
    # offline steps before acting online (entries with online: false ignore it); trials report during pretraining
    "n_pretrain_steps": [250, 500, 1000, 2000],
}
TARGET_ENTROPY_SCALES = (0.25, 0.5, 1.0, 2.0)
DISCRETE_ENTROPY_UNIT = 0.1
"""Nats per step that scale 1 stands for with Discrete actions (the zoo passes ``n_actions=0`` for them, so
the sampler cannot use RATE's own default ``0.1 * log(n)``: 0.1 nats is that default for n of about 3)."""
SAMPLED_KEYS = ("learning_rate", *SEARCH_SPACE, "target_entropy")


def register(held_fixed: Collection[str] = ()) -> None:
    """Add RATE to rl_zoo3 (idempotent): ``ALGOS``, ``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``.

    Also makes rl_zoo3's sweeps build :class:`~rate_sb3.zoo_sweeps.PretrainingTrialEvalCallback` for their trials
    (a subclass of the ``TrialEvalCallback`` they build, which differs only while RATE pretrains).

    :param held_fixed: keys the sampler leaves alone (``zoo/train.py``: the keys given with ``-params``, which
        rl_zoo3 would otherwise overwrite with sampled values)
    """
    import rl_zoo3
    from rl_zoo3 import exp_manager, hyperparams_opt

    rl_zoo3.ALGOS[ALGO_NAME] = RATE  # the dict shared by rl_zoo3.train, .enjoy and .exp_manager
    sampler = partial(sample_rate_params, held_fixed=frozenset(held_fixed)) if held_fixed else sample_rate_params
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sampler
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_rate_params
    exp_manager.TrialEvalCallback = PretrainingTrialEvalCallback  # the name ExperimentManager.objective calls


def target_entropy_choices(n_actions: int) -> list[float]:
    """Target entropies the sampler chooses from: ``-scale * n_actions`` (Box), ``scale * 0.1`` nats (Discrete).

    :param n_actions: action dimension for Box action spaces, 0 for Discrete ones (what rl_zoo3 passes)
    """
    unit = -float(n_actions) if n_actions > 0 else DISCRETE_ENTROPY_UNIT
    return [scale * unit for scale in TARGET_ENTROPY_SCALES]


def sample_rate_params(
    trial: optuna.Trial,
    n_actions: int,
    n_envs: int,
    additional_args: dict[str, Any],
    held_fixed: Collection[str] = (),
) -> dict[str, Any]:
    """Optuna search space of RATE: top-level constructor arguments only.

    Never ``policy_kwargs``: rl_zoo3 applies the sample with ``dict.update``, which would replace the YAML's
    ``policy_kwargs`` instead of merging. Every combination is valid (``d_model`` is a multiple of every
    ``n_heads`` choice and of ``n_heads_mrv``).

    :param trial: the Optuna trial
    :param n_actions: action dimension (Box), 0 for Discrete action spaces
    :param n_envs: number of training envs (unused)
    :param additional_args: rl_zoo3's HER information (unused)
    :param held_fixed: keys not to sample (the YAML entry's or ``-params`` value stays)
    :return: constructor arguments, applied over the YAML entry
    """
    sampled: dict[str, Any] = {}
    if "learning_rate" not in held_fixed:
        sampled["learning_rate"] = trial.suggest_float("learning_rate", *LEARNING_RATE_RANGE, log=True)
    for name, choices in SEARCH_SPACE.items():
        if name not in held_fixed:
            sampled[name] = trial.suggest_categorical(name, choices)
    if "target_entropy" not in held_fixed:
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


# ------------------------------------------------------------------------------------ command line of train.py
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
    _check_storage(args.storage)
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


def command_line_hyperparams(argv: list[str]) -> dict[str, Any]:
    """The hyperparameters given with ``-params`` on a ``zoo/train.py`` command line (after :func:`prepare_train_argv`).

    :param argv: ``sys.argv``
    """
    return _parse_args(argv[1:]).hyperparams or {}


def _check_storage(storage: str | None) -> None:
    """A database storage needs its driver (SQLAlchemy's, for the URL's scheme): say so before anything is built."""
    if not is_database_url(storage):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme = storage.split("://")[0]
    try:
        make_url(storage).get_dialect().import_dbapi()
    except (ImportError, ArgumentError) as error:
        raise ZooConfigError(
            f"--storage {scheme}://...: cannot open this database ({error}). A journal file needs the .log suffix; "
            "PostgreSQL (postgresql://user:password@host:port/database) needs pip install 'psycopg[binary]'"
        ) from error


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
