"""Why RATE's fine-tuning on hopper-medium loses its pretrained score: the pretrained model of
``mujoco_finetune.py``'s RATE run, scored at the returns it is asked for, then after a few gradient steps on batches
of its demonstrations alone, of a tenth or a half of the run's earliest online episodes (the rest demonstrations),
and of the half-and-half mix with a learning rate of zero (the control: everything but the weight change).

    python benchmarks/mujoco_finetune.py --runs rate      # first: the run whose models and episodes are read
    python benchmarks/mujoco_finetune_diagnosis.py        # about 5 min (284 s beside three other jobs)

Scores are D4RL-normalised means over ``--episodes`` seeded episodes (``mujoco_finetune.score``); the updates are
seeded too. Writes ``benchmarks/results/mujoco_finetune_diagnosis.json``.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import torch as th
from common import RESULTS, write_result
from mujoco_datasets import DATA
from mujoco_finetune import BENCHMARKS, CONFIG, ENV_ID
from mujoco_finetune import score as finetune_score
from stable_baselines3.common.utils import set_random_seed

from rate_sb3 import RATE
from rate_sb3.zoo_checks import load_config

RUN = DATA.parent / "mujoco_finetune" / "seed0" / "rate"
ONLINE_EPISODES = 200  # the run's earliest, collected by the policy nearest the pretrained one


def score(model: RATE, target_return: float, episodes: int, deterministic: bool = True) -> float:
    model.policy.target_return = target_return
    return round(finetune_score(model, episodes, deterministic), 1)


def scores_by_target(targets: list[float], episodes: int) -> dict:
    """The pretrained model at each asked return, with mean actions and with sampled ones (as it explores)."""
    model = RATE.load(RUN / "pretrained.zip")
    return {
        str(int(target)): {
            "mean_actions": score(model, target, episodes),
            "sampled": score(model, target, episodes, False),
        }
        for target in targets
    }


def after_updates(demo_fraction: float, learning_rate: float, steps: int, target: float, episodes: int) -> float:
    """The pretrained model after ``steps`` gradient steps (constant learning rate, no entropy bonus) on batches
    that draw ``demo_fraction`` of their windows from the demonstrations and the rest from the online episodes."""
    set_random_seed(0)  # dropout; the buffer's sampling generator is restored with it
    model = RATE.load(RUN / "pretrained.zip", learning_rate=learning_rate, warmup_steps=0, lr_end_factor=1.0)
    model.load_replay_buffer(RUN / "replay.pkl")
    buffer = model.replay_buffer
    buffer.online = deque(list(buffer.online)[:ONLINE_EPISODES], maxlen=buffer.capacity)
    buffer.demo_fraction = demo_fraction
    model.pretrain(steps, log_interval=steps)
    return score(model, target, episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="gradient steps of each variant")
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="a tenth of the entry's")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    th.set_num_threads(1)
    started = time.perf_counter()
    for name in ("pretrained.zip", "replay.pkl"):
        if not (RUN / name).is_file():
            raise SystemExit(f"{RUN / name} is missing: run `python benchmarks/mujoco_finetune.py --runs rate` first")
    entry = load_config(str(CONFIG))[ENV_ID]
    target, explore = float(entry["target_return"]), float(entry["online_target_return"])
    result = {"run": str(RUN.relative_to(BENCHMARKS.parent)), "episodes": args.episodes}
    result["pretrained_by_target"] = scores_by_target([target / 2, target, explore], args.episodes)
    result["updates"] = {"steps": args.steps, "learning_rate": args.learning_rate, "target_return": target}
    variants = {"demonstrations": (1.0, args.learning_rate), "tenth_online": (0.9, args.learning_rate)}
    variants["half_online"] = (0.5, args.learning_rate)
    variants["half_online_zero_learning_rate"] = (0.5, 0.0)
    for name, (demo_fraction, learning_rate) in variants.items():
        result["updates"][name] = after_updates(demo_fraction, learning_rate, args.steps, target, args.episodes)
        print(name, result["updates"][name], flush=True)
    result["seconds"] = round(time.perf_counter() - started)
    write_result(result, RESULTS / "mujoco_finetune_diagnosis.json")


if __name__ == "__main__":
    main()
