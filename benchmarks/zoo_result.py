"""Train one zoo entry and keep its score: ``python benchmarks/zoo_result.py --env ENV --algo rate|ppo_lstm --seed S``.

Runs ``zoo/train.py --algo ALGO --env ENV --seed S`` (the entry of ``hyperparams/ALGO.yml``, with its budget) in
a log folder under ``benchmarks/runs/`` (git-ignored), then scores the saved model over 100 deterministic, seeded
episodes (``--eval-episodes``) with ``rate_sb3.evaluate`` on the entry's ``env_kwargs`` (T-Maze also at T = 150,
900 and 9,600), and writes ``benchmarks/results/zoo_<env>_<algo>_seed<S>.json``: the command lines, the commit,
the budget, the evaluations, the zoo's own last evaluation (EvalCallback) and the wall times. ``--quick`` trains a
few steps (``..._quick.json``): a smoke run, not a result; ``--quick --max-episode-steps N`` also cuts every episode
(demonstrations, training env, evaluation) at N steps, for envs whose episodes are long (Memory Maze: 1,000).
``--conf-file`` trains another config's entry (its stem then joins the name, e.g.
``zoo_MiniGrid-MemoryS7-v0_rate_rate_pixels_seed0.json``), ``--mode dt`` runs a RATE entry as a Decision
Transformer on the same data and budget (``..._dt_seed0.json``), and ``--params KEY:VALUE ...`` changes other
hyperparameters of the entry (rl_zoo3's ``-params``; each joins the name, e.g. ``--params burn_in_segments:0``
writes ``..._burn_in_segments0_seed0.json``).

RATE models are scored by the ``python -m rate_sb3.evaluate`` command recorded in the JSON. RecurrentPPO models
cannot be loaded by that command (it loads RATE), so they are scored in this process by the same
``rate_sb3.evaluate.evaluate`` function, on observations normalised with the run's saved VecNormalize
statistics where the entry has ``normalize: true``.

A run that is cut (``--max-minutes``, a crash) writes no JSON; run the command again, which starts a fresh run
folder. rl_zoo3 can continue from a checkpoint (``zoo/train.py ... --save-freq N`` keeps
``rl_model_<steps>_steps.zip``; then ``-i THAT.zip -n REMAINING``), but learning-rate schedules restart and
RATE's replay buffer is not in the checkpoint, so a continued run is not the experiment of the entry and this
script does not do it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, NormalizedObservations, write_result

from rate_sb3.evaluate import zoo_env_name

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "runs"
ALGOS = ("rate", "ppo_lstm")
EVAL_EPISODES = 100
EVAL_ENVS = 10  # results do not depend on it (episode j is reset with seed j)
QUICK_TIMESTEPS, QUICK_PRETRAIN_STEPS, QUICK_DEMONSTRATIONS, QUICK_EPISODES = 64, 5, 20, 10
# Where the entry's own env_kwargs are a mixture, the lengths RESULTS.md reports are scored too.
EXTRA_EVALUATIONS = {"TMaze-v0": [{"corridor_length": 148}, {"corridor_length": 898}, {"corridor_length": 9598}]}


def config_path(args: argparse.Namespace) -> Path:
    """``--conf-file``, or the algorithm's own ``hyperparams/<algo>.yml``."""
    return (args.conf_file or REPO / "hyperparams" / f"{args.algo}.yml").resolve()


def load_entry(path: Path, env_id: str) -> dict[str, Any]:
    """The entry of the config file ``path`` for ``env_id``; an env without its own entry is an error."""
    from rate_sb3.zoo_checks import load_config

    config = load_config(str(path))
    if env_id not in config:
        entries = sorted(key for key in config if key != "default")
        raise SystemExit(f"error: {path} has no entry for --env {env_id}; entries: {', '.join(entries)}")
    return config[env_id]


def train_command(args: argparse.Namespace, entry: dict[str, Any], log_folder: Path) -> list[str]:
    command = [sys.executable, "zoo/train.py", "--algo", args.algo, "--env", args.env, "--seed", str(args.seed)]
    command += ["-f", shown(log_folder), "--num-threads", "1", "--eval-episodes", "50"]
    command += ["--conf-file", shown(config_path(args))]
    if args.quick:
        command += ["-n", str(QUICK_TIMESTEPS), "--eval-freq", "-1"]
    return command + hyperparams(args, entry)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``--params KEY:VALUE ...`` as a dict of Python literals whose keys and values can join a file name."""
    params = {}
    for item in items:
        key, _, text = item.partition(":")
        try:
            value = ast.literal_eval(text)
            valid = re.fullmatch(r"[a-z_]+", key) and re.fullmatch(r"[\w.+-]+", str(value))
        except (ValueError, SyntaxError):
            valid = False
        if not valid:
            raise SystemExit(f"error: --params {item!r}: expected KEY:VALUE with a number, True/False or a quoted word")
        if key == "mode":
            raise SystemExit("error: --params mode:... is --mode; pass --mode instead")
        params[key] = value
    return params


def hyperparams(args: argparse.Namespace, entry: dict[str, Any]) -> list[str]:
    """One ``-params`` flag (rl_zoo3 keeps the last): ``--params``, ``--mode``, and for a smoke run a few
    pretraining steps and demonstrations, which are not cached."""
    from rate_sb3.zoo import store_dict_items

    params = dict(args.params)
    if args.mode:
        params["mode"] = args.mode
    if not args.quick:
        return ["-params", *store_dict_items(params, "--params and --mode", "-params")] if params else []
    if args.max_episode_steps:
        params["env_kwargs"] = env_kwargs(args, entry)
    if "n_pretrain_steps" in entry:
        params["n_pretrain_steps"] = QUICK_PRETRAIN_STEPS
    if isinstance(entry.get("demonstrations"), dict):
        spec = {k: v for k, v in entry["demonstrations"].items() if k != "cache"}
        params["demonstrations"] = {**spec, "n_episodes": QUICK_DEMONSTRATIONS}
    return ["-params", *store_dict_items(params, "--quick", "-params")] if params else []


def budget(args: argparse.Namespace, entry: dict[str, Any]) -> dict[str, Any]:
    """What the run trained for: the entry's ``n_timesteps``, ``online`` and ``n_pretrain_steps`` under
    ``--params``, or a smoke run's."""
    trained = {**entry, **args.params}
    quick_pretraining = args.quick and "n_pretrain_steps" in entry
    return {
        "n_timesteps": QUICK_TIMESTEPS if args.quick else int(trained["n_timesteps"]),
        "online": trained.get("online", True),
        "n_pretrain_steps": QUICK_PRETRAIN_STEPS if quick_pretraining else trained.get("n_pretrain_steps"),
    }


def result_name(args: argparse.Namespace) -> str:
    """``zoo_<env>_<algo>[_<config>][_<mode>][_<key><value>...]_seed<S>[_quick]``: the config named where it is
    not the algo's own, one part per ``--params`` item."""
    config = config_path(args).stem
    parts = [
        "zoo",
        zoo_env_name(args.env),
        args.algo,
        *([config] if config != args.algo else []),
        *filter(None, [args.mode]),
        *(f"{key}{value}" for key, value in args.params.items()),
    ]
    return "_".join(parts) + f"_seed{args.seed}" + ("_quick" if args.quick else "")


def rate_run_file(env: str, conf_file: Path, mode: str | None, seed: int, quick: bool) -> Path:
    """The JSON this script writes for a run of RATE's entry of ``conf_file`` (``mode`` ``"rate"`` or None: the
    entry's own mode)."""
    own_mode = mode in (None, "rate")
    run = argparse.Namespace(env=env, algo="rate", conf_file=conf_file, mode=None if own_mode else mode, seed=seed)
    run.quick, run.params = quick, {}
    return RESULTS / f"{result_name(run)}.json"


def run_rate_once(
    env: str, conf_file: Path, mode: str | None, seed: int, quick: bool, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Train and score RATE's entry with this script, in a subprocess, unless its JSON exists (so a benchmark made of
    such runs resumes where it stopped); returns the JSON. ``extra``: more flags of this script.

    A JSON kept for the entry's file name must have trained for the entry's budget as it is now (one kept from
    before the entry changed is refused, not reused or overwritten)."""
    path = rate_run_file(env, conf_file, mode, seed, quick)
    if not path.is_file():
        command = [sys.executable, str(Path(__file__).resolve()), "--conf-file", str(conf_file), "--env", env]
        command += ["--algo", "rate", "--seed", str(seed), "--out", str(path), *extra]
        command += ([] if mode in (None, "rate") else ["--mode", mode]) + (["--quick"] if quick else [])
        subprocess.run(command, check=True)
    kept = json.loads(path.read_text())
    entry_budget = budget(argparse.Namespace(quick=quick, params={}), load_entry(conf_file, env))
    kept_budget = {key: kept.get(key) for key in entry_budget}
    if kept_budget != entry_budget:
        raise SystemExit(
            f"error: {path} trained for {kept_budget}, but the entry {env} of {conf_file} now trains for "
            f"{entry_budget}: move the file aside (keep it under a name of its own) and run again to train the entry"
        )
    return kept


def repo_env() -> dict[str, str]:
    """The environment of the subprocesses: this checkout's ``rate_sb3`` first on the path."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def run_bounded(command: list[str], max_minutes: float) -> float:
    """Run ``command`` from the repo root; kill its process group after ``max_minutes``. Returns the wall time."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=repo_env(), start_new_session=True)
    try:
        returncode = process.wait(timeout=max_minutes * 60)
    except subprocess.TimeoutExpired as timeout:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        message = f"error: {' '.join(command)} ran past --max-minutes {max_minutes}; no result written"
        raise SystemExit(message) from timeout
    if returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} exited with {returncode}; no result written")
    return round(time.perf_counter() - started, 1)


def shown(path: Path) -> str:
    """``path`` relative to the repository root where it is inside it (commands then run from any checkout)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def latest_run(log_folder: Path, algo: str, env_id: str) -> Path:
    """The run folder rl_zoo3 made last: ``<log folder>/<algo>/<env id>_<highest id>``."""
    runs = [p for p in (log_folder / algo).glob(f"{zoo_env_name(env_id)}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    if not runs:
        raise SystemExit(f"error: no run folder {env_id}_N under {log_folder / algo}")
    return max(runs, key=lambda p: int(p.name.rsplit("_", 1)[1]))


def env_kwargs(args: argparse.Namespace, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's ``env_kwargs``, with ``max_episode_steps`` where ``--max-episode-steps`` cuts a smoke run."""
    kwargs = dict(entry.get("env_kwargs", {}))
    if args.max_episode_steps:
        kwargs["max_episode_steps"] = args.max_episode_steps
    return kwargs


def evaluation_settings(args: argparse.Namespace, entry: dict[str, Any]) -> list[dict[str, Any]]:
    settings = [env_kwargs(args, entry)]
    if not args.quick:
        settings += EXTRA_EVALUATIONS.get(args.env, [])
    return settings


def evaluate_rate(
    model_path: Path, env_id: str, env_kwargs: dict[str, Any], episodes: int, stochastic: bool = False
) -> dict[str, Any]:
    """Score with the ``python -m rate_sb3.evaluate`` command (``--stochastic``: sampled actions); returns its JSON
    with the command line."""
    command = [sys.executable, "-m", "rate_sb3.evaluate", "--model", shown(model_path), "--env"]
    command += [env_id, "--episodes", str(episodes), "--n-envs", str(min(EVAL_ENVS, episodes))]
    command += ["--stochastic"] if stochastic else []
    if env_kwargs:
        command += ["--env-kwargs", *(f"{key}:{value!r}" for key, value in env_kwargs.items())]
    completed = subprocess.run(command, cwd=REPO, env=repo_env(), capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"env_kwargs": env_kwargs, "command": shlex.join(["python", *command[1:]]), "result": result}


def evaluate_recurrent_ppo(run: Path, env_id: str, env_kwargs: dict[str, Any], episodes: int) -> dict[str, Any]:
    """Score a RecurrentPPO zoo run with ``rate_sb3.evaluate.evaluate``, through its VecNormalize statistics."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rate_sb3.envs import make_env
    from rate_sb3.evaluate import evaluate, resolve_env_wrappers, zoo_config

    constants = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    model = RecurrentPPO.load(run / f"{zoo_env_name(env_id)}.zip", device="cpu", custom_objects=constants)
    wrappers = zoo_config(run / f"{zoo_env_name(env_id)}.zip", env_id).get("env_wrapper")
    agent: Any = model
    statistics = run / zoo_env_name(env_id) / "vecnormalize.pkl"
    if statistics.is_file():

        def wrapped_env():
            env = make_env(env_id, **env_kwargs)
            for _, wrapper in resolve_env_wrappers(wrappers):
                env = wrapper(env)
            return env

        normalizer = VecNormalize.load(str(statistics), DummyVecEnv([wrapped_env]))
        normalizer.training = False
        agent = NormalizedObservations(model, normalizer)
    result = evaluate(agent, env_id, env_kwargs, episodes, min(EVAL_ENVS, episodes), env_wrappers=wrappers)
    call = f"rate_sb3.evaluate.evaluate(RecurrentPPO.load(run), {env_id!r}, {env_kwargs!r}, {episodes})"
    return {"env_kwargs": env_kwargs, "call": call, "normalized": statistics.is_file(), "result": result}


def zoo_evaluation(run: Path) -> dict[str, Any] | None:
    """The last evaluation of the zoo's EvalCallback (``evaluations.npz``), if it ran."""
    path = run / "evaluations.npz"
    if not path.is_file():
        return None
    data = np.load(path)
    last: dict[str, Any] = {
        "timesteps": int(data["timesteps"][-1]),
        "episodes": int(data["results"].shape[1]),
        "mean_return": float(data["results"][-1].mean()),
        "std_return": float(data["results"][-1].std()),
        "n_evaluations": len(data["timesteps"]),
    }
    if "successes" in data and data["successes"].size:
        last["success_rate"] = float(data["successes"][-1].mean())
    return last


def commit() -> dict[str, Any]:
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"hash": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="env id with an entry in hyperparams/ALGO.yml")
    parser.add_argument("--algo", required=True, choices=ALGOS)
    parser.add_argument("--conf-file", type=Path, default=None, help="default: hyperparams/ALGO.yml")
    parser.add_argument("--mode", default=None, help="RATE's mode for this run (e.g. dt), over the entry's")
    parser.add_argument("--params", nargs="+", default=[], metavar="KEY:VALUE", help="over the entry's (-params)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES, help="episodes of the final score")
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps, 10 evaluation episodes")
    parser.add_argument("--max-episode-steps", type=int, default=None, help="with --quick: cut episodes at N steps")
    parser.add_argument("--max-minutes", type=float, default=240.0, help="stop training after this; no JSON")
    parser.add_argument("--log-folder", type=Path, default=None, help="default: benchmarks/runs/<name>")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.params = parse_params(args.params)
    if args.mode and args.algo != "rate":
        parser.error("--mode is RATE's (rate, dt, rmt, trxl): use it with --algo rate")
    if args.max_episode_steps is not None and (not args.quick or args.max_episode_steps < 1):
        parser.error("--max-episode-steps N (N >= 1) cuts the episodes of a smoke run: use it with --quick")
    entry = load_entry(config_path(args), args.env)
    name = result_name(args)
    log_folder = (args.log_folder or RUNS / name).resolve()
    started_at = commit()
    command = train_command(args, entry, log_folder)
    train_seconds = run_bounded(command, args.max_minutes)
    run = latest_run(log_folder, args.algo, args.env)
    episodes = min(QUICK_EPISODES, args.eval_episodes) if args.quick else args.eval_episodes
    started = time.perf_counter()
    score = evaluate_rate if args.algo == "rate" else evaluate_recurrent_ppo
    model = run / f"{zoo_env_name(args.env)}.zip" if args.algo == "rate" else run
    evaluations = [score(model, args.env, kwargs, episodes) for kwargs in evaluation_settings(args, entry)]
    result = {
        "env": args.env,
        "algo": args.algo,
        "seed": args.seed,
        "quick": args.quick,
        "commit": started_at,
        "train_command": shlex.join(["python", *command[1:]]),
        "run_folder": shown(run),
        **budget(args, entry),
        "conf_file": shown(config_path(args)),
        "mode": args.mode or entry.get("mode", "rate"),
        "params": args.params,
        "evaluations": evaluations,
        "zoo_evaluation": zoo_evaluation(run),
        "train_seconds": train_seconds,
        "eval_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(result, args.out or RESULTS / f"{name}.json")


if __name__ == "__main__":
    main()
