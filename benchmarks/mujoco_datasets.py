"""D4RL-style MuJoCo datasets made here: SAC trained per env, then medium, medium-replay, expert and medium-expert
written as local Minari datasets (``rate_sb3/<env>/<kind>-v0``).

    python benchmarks/mujoco_datasets.py --env hopper      # train SAC (resumable), then write the four datasets
    python benchmarks/mujoco_datasets.py --env hopper --quick   # a few thousand steps, tiny datasets (minutes),
                                                                # under benchmarks/data/mujoco_quick/minari

The recipe is D4RL's (``rate_sb3.d4rl``): SB3's SAC with the RL Zoo's MuJoCo hyperparameters learns the env with one
env; every ``--eval-every`` steps it is evaluated (5 episodes, sampled actions) and checkpointed with its replay
buffer, so an interrupted run resumes from its last checkpoint. The first checkpoint whose return reaches a third of
D4RL's expert reference return is the "medium" agent; "medium-replay" is the replay buffer up to that step. Both
are written then, before training goes on to ``--expert-steps`` (D4RL: 1M; the last checkpoint is the "expert"
agent) and expert and medium-expert are written. Recorded datasets hold ``--transitions`` steps of sampled actions
each (D4RL: 1M). Each dataset's metadata names its generating checkpoint and that file's SHA-256. Datasets that
exist are not written again. State and wall time are in ``benchmarks/data/mujoco/<env>/progress.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch as th
from common import git_commit, read_json, sha256, write_json
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from rate_sb3.d4rl import (
    D4RL_REFERENCE_SCORES,
    DATASET_KINDS,
    MEDIUM_FRACTION,
    MUJOCO_ENV_IDS,
    dataset_id,
    record_transitions,
    replay_buffer_episodes,
)
from rate_sb3.data import load_minari, save_minari
from rate_sb3.minari_format import minari_datasets_root

DATA = Path(__file__).resolve().parent / "data" / "mujoco"
QUICK_MINARI_ROOT = DATA.parent / "mujoco_quick" / "minari"  # --quick's datasets, under the usual ids
# RL Zoo's hyperparameters for SAC on HalfCheetah, Hopper and Walker2d (the same for the three): SB3's defaults
# with 10,000 random steps first.
SAC_KWARGS = dict(learning_starts=10_000, buffer_size=1_000_000)
MEDIUM_KINDS = ("medium", "medium-replay")
QUICK = dict(expert_steps=3_000, eval_every=1_000, transitions=2_000, learning_starts=500)


def load_progress(directory: Path) -> dict:
    return read_json(directory / "progress.json", {"evaluations": [], "train_seconds": 0.0})


def save_progress(directory: Path, progress: dict) -> None:
    write_json(directory / "progress.json", progress)


def load_or_create_agent(directory: Path, env_id: str, args: argparse.Namespace) -> SAC:
    checkpoint = directory / "sac_latest.zip"
    if checkpoint.is_file():
        model = SAC.load(checkpoint, env=make_vec_env(env_id, seed=args.seed + 1))
        model.load_replay_buffer(directory / "sac_latest_replay.pkl")
        return model
    learning_starts = QUICK["learning_starts"] if args.quick else SAC_KWARGS["learning_starts"]
    buffer_size = max(SAC_KWARGS["buffer_size"], args.expert_steps + 1)
    return SAC("MlpPolicy", env_id, learning_starts=learning_starts, buffer_size=buffer_size, seed=args.seed)


def train(directory: Path, env_id: str, name: str, args: argparse.Namespace, until_medium: bool) -> dict:
    """Train SAC to ``--expert-steps`` (or, ``until_medium``, to the medium checkpoint), checkpointing and
    evaluating every ``--eval-every`` steps."""
    progress = load_progress(directory)
    # --quick has no time to reach it: its first checkpoint stands in for the medium agent
    medium_return = -np.inf if args.quick else MEDIUM_FRACTION * D4RL_REFERENCE_SCORES[name].expert
    model = load_or_create_agent(directory, env_id, args)
    eval_env = make_vec_env(env_id, seed=10_000 + args.seed)  # its own env: evaluating must not reset training's
    while model.num_timesteps < args.expert_steps and not (until_medium and "medium_steps" in progress):
        started = time.perf_counter()
        chunk = min(args.eval_every, args.expert_steps - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False)
        mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=False)
        model.save(directory / "sac_latest.zip")
        model.save_replay_buffer(directory / "sac_latest_replay.pkl")
        progress["train_seconds"] += time.perf_counter() - started
        progress["evaluations"].append({"steps": model.num_timesteps, "mean_return": float(mean_return)})
        if "medium_steps" not in progress and mean_return >= medium_return:
            model.save(directory / "sac_medium.zip")
            progress.update(medium_steps=model.num_timesteps, medium_return=float(mean_return))
        save_progress(directory, progress)
        print(f"{name}: {model.num_timesteps} steps, return {mean_return:.0f} ({progress['train_seconds']:.0f} s)")
    if "medium_steps" not in progress:
        raise SystemExit(
            f"{name}: SAC never reached the medium return {medium_return:.0f} in {args.expert_steps} steps "
            f"(best {max(e['mean_return'] for e in progress['evaluations']):.0f}); raise --expert-steps"
        )
    return progress


def describe(checkpoint: Path, steps: int, mean_return: float) -> str:
    return (
        f"Made by rate_sb3's benchmarks/mujoco_datasets.py with D4RL's recipe. Generating policy: SB3 SAC checkpoint "
        f"{checkpoint.name} (sha256 {sha256(checkpoint)}) after {steps} env steps, evaluation return {mean_return:.1f}."
    )


def write_datasets(
    directory: Path, env_id: str, name: str, progress: dict, args: argparse.Namespace, kinds: list[str]
) -> None:
    scores = D4RL_REFERENCE_SCORES[name]
    medium_agent, expert_agent = directory / "sac_medium.zip", directory / "sac_latest.zip"
    final_return = progress["evaluations"][-1]["mean_return"]
    medium_text = describe(medium_agent, progress["medium_steps"], progress["medium_return"])
    expert_text = describe(expert_agent, progress["evaluations"][-1]["steps"], final_return)
    recorded: dict[str, list] = {}

    def episodes(kind: str) -> list:
        """The episodes of a dataset: read back when written already (medium-expert joins the written medium and
        expert datasets, not new recordings), else recorded."""
        if kind not in recorded:
            if (minari_datasets_root() / dataset_id(name, kind)).exists():
                recorded[kind] = load_minari(dataset_id(name, kind))
            elif kind == "medium-replay":
                model = SAC.load(expert_agent)
                model.load_replay_buffer(directory / "sac_latest_replay.pkl")
                recorded[kind] = replay_buffer_episodes(model.replay_buffer, progress["medium_steps"], model)
            else:
                agent = medium_agent if kind == "medium" else expert_agent
                seed = 10_000 if kind == "medium" else 20_000
                recorded[kind] = record_transitions(SAC.load(agent), env_id, args.transitions, seed)
        return recorded[kind]

    texts = {
        "medium": medium_text,
        "medium-replay": f"The replay buffer of the training run up to the medium checkpoint. {medium_text}",
        "expert": expert_text,
        "medium-expert": f"medium then expert. Medium: {medium_text} Expert: {expert_text}",
    }
    for kind in kinds:
        identifier = dataset_id(name, kind)
        if (minari_datasets_root() / identifier).exists():
            print(f"{identifier}: exists")
            continue
        started = time.perf_counter()
        data = episodes("medium") + episodes("expert") if kind == "medium-expert" else episodes(kind)
        save_minari(
            data,
            identifier,
            env_id,
            algorithm_name="SB3 SAC (RL Zoo hyperparameters)",
            author="rate_sb3 benchmarks",
            code_permalink=f"rate_sb3 benchmarks/mujoco_datasets.py at commit {git_commit()}",
            description=texts[kind],
            ref_min_score=scores.random,
            ref_max_score=scores.expert,
        )
        returns = np.array([episode.episode_return for episode in data])
        progress.setdefault("datasets", {})[identifier] = {
            "episodes": len(data),
            "transitions": int(sum(episode.length for episode in data)),
            "mean_return": float(returns.mean()),
            "seconds": time.perf_counter() - started,
        }
        save_progress(directory, progress)
        print(f"{identifier}: {progress['datasets'][identifier]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=list(MUJOCO_ENV_IDS))
    parser.add_argument("--expert-steps", type=int, default=300_000, help="SAC's env steps (D4RL: 1M)")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--transitions", type=int, default=100_000, help="steps per recorded dataset (D4RL: 1M)")
    parser.add_argument("--kinds", nargs="+", default=list(DATASET_KINDS), choices=DATASET_KINDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny run, its datasets under " + str(QUICK_MINARI_ROOT))
    args = parser.parse_args()
    if args.quick:
        args.expert_steps, args.eval_every, args.transitions = (
            QUICK[k] for k in ("expert_steps", "eval_every", "transitions")
        )
    if args.quick:
        os.environ["MINARI_DATASETS_PATH"] = str(QUICK_MINARI_ROOT)
    th.set_num_threads(1)
    directory = (DATA.parent / "mujoco_quick" if args.quick else DATA) / args.env
    directory.mkdir(parents=True, exist_ok=True)
    env_id = MUJOCO_ENV_IDS[args.env]
    # the medium datasets need only the medium checkpoint: they are written before training goes on
    medium_kinds = [kind for kind in args.kinds if kind in MEDIUM_KINDS]
    if medium_kinds:
        progress = train(directory, env_id, args.env, args, until_medium=True)
        write_datasets(directory, env_id, args.env, progress, args, medium_kinds)
    expert_kinds = [kind for kind in args.kinds if kind not in MEDIUM_KINDS]
    if expert_kinds:
        progress = train(directory, env_id, args.env, args, until_medium=False)
        write_datasets(directory, env_id, args.env, progress, args, expert_kinds)


if __name__ == "__main__":
    main()
