"""Offline-to-online on hopper-medium: RATE pretrained on the dataset then fine-tuned online, beside SAC from scratch
and SAC started from the same data, on the same env-step budget (Online DT's headline experiment).

    python benchmarks/mujoco_finetune.py             # 200,000 env steps each: many hours on 2 cores, resumable
    python benchmarks/mujoco_finetune.py --quick     # tiny datasets made on the fly, 2,000 env steps (minutes)

RATE is the entry ``rate_sb3/hopper-medium-v0`` of ``hyperparams/rate_finetune.yml`` (the zoo runs the same entry
with ``--conf-file``). SAC has the RL Zoo's MuJoCo hyperparameters; "from data" fills its replay buffer with the
dataset's transitions and starts learning at once. Each run learns in chunks of ``--chunk`` env steps and saves its
model and replay buffer after each, so a cut run resumes from its last chunk. Scores are D4RL-normalised means over
50 seeded episodes (``rate_sb3.evaluate.evaluate``, mean actions): RATE after pretraining and after fine-tuning,
SAC at the end; RATE's learning curve scores it on 10 episodes after every chunk. Writes
``benchmarks/results/mujoco_finetune.json``: ``{"pretrained", "finetuned", "env_steps", "sac_scratch",
"sac_from_data", "run_seconds", "rate_curve", ...}``; a call with
``--runs`` adds its runs to the results of earlier calls with the same setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch as th
from common import RESULTS, read_json, write_json, write_result
from mujoco_datasets import DATA, QUICK_MINARI_ROOT
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.d4rl import dataset_id
from rate_sb3.data import load_minari
from rate_sb3.evaluate import evaluate
from rate_sb3.zoo_checks import load_config

BENCHMARKS = Path(__file__).resolve().parent
CONFIG = BENCHMARKS.parent / "hyperparams" / "rate_finetune.yml"
ENV_ID, ENV, PAIR = "rate_sb3/hopper-medium-v0", "Hopper-v5", "hopper-medium"
ZOO_ONLY_KEYS = ("policy", "n_envs", "n_timesteps", "env_wrapper")  # the rest are RATE's constructor arguments
EVAL_EPISODES, CURVE_EPISODES = 50, 10  # the curve scores RATE after every chunk, on fewer episodes
PRETRAINED_SCORE, RUN_SECONDS, CURVE = "pretrained_score.json", "run_seconds.json", "curve.json"  # in a run's folder


def score(model, episodes: int, deterministic: bool = True) -> float:
    return evaluate(model, ENV, n_episodes=episodes, n_envs=10, deterministic=deterministic)["normalized_score"]


class Checkpointed:
    """A model that learns ``total`` env steps in chunks, saved with its replay buffer after each. A new run (no
    ``model.zip`` yet) first drops what an earlier run in the folder kept (its pretrained score, seconds, curve)."""

    def __init__(self, directory: Path, load, create) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "model.zip").is_file():
            self.model = load(directory / "model.zip")
            self.model.load_replay_buffer(directory / "replay.pkl")
        else:
            for name in (PRETRAINED_SCORE, RUN_SECONDS, CURVE):
                (directory / name).unlink(missing_ok=True)
            self.model = create()

    def learn(self, total: int, chunk: int, after_chunk=None) -> None:
        """Learn up to ``total`` env steps; ``after_chunk(model)`` runs after each chunk, before its checkpoint."""
        while self.model.num_timesteps < total:
            self.model.learn(min(chunk, total - self.model.num_timesteps), reset_num_timesteps=False)
            if after_chunk is not None:
                after_chunk(self.model)
            self.model.save(self.directory / "model.zip")
            self.model.save_replay_buffer(self.directory / "replay.pkl")
            print(f"{self.directory.name}: {self.model.num_timesteps} env steps", flush=True)


def rate_kwargs(quick: bool) -> dict:
    entry = {key: value for key, value in load_config(str(CONFIG))[ENV_ID].items() if key not in ZOO_ONLY_KEYS}
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # as rl_zoo3 reads it (our own config file)
    if quick:
        entry.update(n_pretrain_steps=20, train_freq=500, gradient_steps=5)
    return entry


def run_rate(directory: Path, steps: int, args: argparse.Namespace, result: dict) -> None:
    def create() -> RATE:
        model = RATE("RATEPolicy", ENV_ID, seed=args.seed, **rate_kwargs(args.quick))
        model.pretrain()  # learn() would too; scored first here
        model.save(directory / "pretrained.zip")
        return model

    env = make_vec_env(ENV_ID, wrapper_class=PrevRewardWrapper, seed=args.seed)
    run = Checkpointed(directory, lambda path: RATE.load(path, env=env), create)
    result["pretrained"] = pretrained_score(directory, args.episodes)
    curve_path = directory / CURVE
    curve = read_json(curve_path, {"curve": []})["curve"]

    def add_curve_point(model: RATE) -> None:
        curve[:] = [point for point in curve if point[0] < model.num_timesteps]  # a chunk redone after a cut
        curve.append([model.num_timesteps, score(model, min(CURVE_EPISODES, args.episodes))])
        write_json(curve_path, {"curve": curve})

    run.learn(steps, args.chunk, add_curve_point)
    result["finetuned"] = score(run.model, args.episodes)
    result["rate_curve"] = curve


def pretrained_score(directory: Path, episodes: int) -> float:
    """The score of the run's pretrained model, kept beside it: a resumed run is not scored again, and a results
    file of an earlier run never stands in for a new one's."""
    path = directory / PRETRAINED_SCORE
    if path.is_file():
        return read_json(path, {})["normalized_score"]
    pretrained = score(RATE.load(directory / "pretrained.zip"), episodes)
    write_json(path, {"normalized_score": pretrained})
    return pretrained


def add_seconds(directory: Path, seconds: float) -> float:
    """Add a finished call's wall time to its run's (kept in the run's folder); returns the run's total."""
    path = directory / RUN_SECONDS
    total = round(read_json(path, {"seconds": 0.0})["seconds"] + seconds, 1)
    write_json(path, {"seconds": total})
    return total


def prefilled_sac(seed: int) -> SAC:
    """SAC whose replay buffer holds the dataset's transitions, learning from the first env step."""
    model = SAC("MlpPolicy", ENV, learning_starts=0, seed=seed)
    for episode in load_minari(dataset_id("hopper", "medium")):
        for t in range(episode.length):
            last = t == episode.length - 1
            model.replay_buffer.add(
                episode.observations[t][None],
                episode.observations[t + 1][None],
                model.policy.scale_action(episode.actions[t][None]),
                episode.rewards[t : t + 1],
                np.array([last and (episode.terminated or episode.truncated)]),
                [{"TimeLimit.truncated": last and episode.truncated}],
            )
    return model


def run_sac(directory: Path, steps: int, args: argparse.Namespace, from_data: bool) -> float:
    learning_starts = 500 if args.quick else 10_000
    create = (
        (lambda: prefilled_sac(args.seed))
        if from_data
        else (lambda: SAC("MlpPolicy", ENV, learning_starts=learning_starts, seed=args.seed))
    )
    run = Checkpointed(directory, lambda path: SAC.load(path, env=make_vec_env(ENV, seed=args.seed)), create)
    run.learn(steps, args.chunk)
    return score(run.model, args.episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["rate", "sac_scratch", "sac_from_data"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=10_000, help="env steps between checkpoints")
    parser.add_argument("--quick", action="store_true", help="tiny datasets made on the fly, 2,000 env steps")
    args = parser.parse_args()
    th.set_num_threads(1)
    steps = 2_000 if args.quick else int(load_config(str(CONFIG))[ENV_ID]["n_timesteps"])
    args.episodes = 5 if args.quick else EVAL_EPISODES
    if args.quick:
        args.chunk = 1_000
        os.environ["MINARI_DATASETS_PATH"] = str(QUICK_MINARI_ROOT)
        if not (QUICK_MINARI_ROOT / dataset_id("hopper", "medium")).exists():
            subprocess.run(
                [sys.executable, str(BENCHMARKS / "mujoco_datasets.py"), "--env", "hopper", "--quick"], check=True
            )
    runs = DATA.parent / ("mujoco_finetune_quick" if args.quick else "mujoco_finetune") / f"seed{args.seed}"
    out = RESULTS / f"mujoco_finetune{'_quick' if args.quick else ''}.json"
    result: dict = {"env_steps": steps, "pair": PAIR, "seed": args.seed, "eval_episodes": args.episodes}
    if out.is_file() and all(json.loads(out.read_text()).get(key) == result[key] for key in result):
        result = json.loads(out.read_text())  # runs of the same setting done earlier (e.g. --runs rate) stay
    for name in ("rate", "sac_scratch", "sac_from_data"):
        if name not in args.runs:
            continue
        started = time.perf_counter()
        if name == "rate":
            run_rate(runs / name, steps, args, result)
        else:
            result[name] = run_sac(runs / name, steps, args, from_data=name == "sac_from_data")
        # of the calls that finished the run (a cut call's are lost)
        result.setdefault("run_seconds", {})[name] = add_seconds(runs / name, time.perf_counter() - started)
        write_result(result, out)


if __name__ == "__main__":
    main()
