"""Speed at image scale (issue 22): the paper's Atari configuration pretraining on this CPU, and ``predict`` on Atari
frames beside SB3's PPO CnnPolicy.

    python benchmarks/atari_speed.py            # 3 timed steps at the paper's batch, rollouts with 1 and 8 envs
    python benchmarks/atari_speed.py --quick    # batch 8, 1 timed step, short rollouts: a minute or two

* ``pretraining``: RATE with the architecture and batch size of ``hyperparams/rate_atari_paper.yml``'s
  PongNoFrameskip-v4 entry (6 layers, 8 heads, d_model 128, K = 30, 3 segments, 15 memory tokens, batch 128) on
  ``image_memory.py``'s synthetic Atari-like episodes (84x84, 4 stacked frames, uint8, read lazily from HDF5), in a
  child process of its own: seconds per gradient step after one warm-up step, and the child's peak RSS.
* ``rollouts``: env steps per second of ``predict`` then ``step`` on PongNoFrameskip-v4 (AtariWrapper, 4 stacked
  frames, channel-first) with 1 and 8 envs, for RATE at the paper's scale, RATE at the CPU scale of
  ``hyperparams/rate_atari_offline.yml``, SB3's PPO ``CnnPolicy`` (the RL Zoo's Atari policy) and random actions
  (the env alone). Weights are untrained: the cost of a step does not depend on them. Blocks of steps take turns
  in alternating order; the medians are reported, and ratios against PPO from the same run.

Writes ``benchmarks/results/atari_speed[_quick].json``. Needs ``pip install "rate_sb3[atari]"``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch as th
from common import RESULTS, machine_info, write_result
from image_memory import ImageEnv, build_dataset, peak_rss_gb
from stable_baselines3 import PPO
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecTransposeImage
from training_speed import Rollout, median_env_steps_per_second

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.envs import make_env
from rate_sb3.zoo_checks import load_config

REPO = Path(__file__).resolve().parent.parent
GAME = "PongNoFrameskip-v4"
ENTRIES = {
    "rate_paper": REPO / "hyperparams" / "rate_atari_paper.yml",
    "rate_cpu": REPO / "hyperparams" / "rate_atari_offline.yml",
}
ATARI_KWARGS = dict(terminal_on_life_loss=False, clip_reward=False)  # the entries' AtariWrapper settings
FRAMES = 20_000  # synthetic frames to sample windows from (20 episodes of 1,000)


def entry_kwargs(config: Path) -> dict:
    """The keyword arguments of RATE that the entry for ``GAME`` sets (its dataset and env aside)."""
    accepted = set(inspect.signature(RATE.__init__).parameters) - {"self", "policy", "env", "demonstrations"}
    return {key: value for key, value in load_config(str(config))[GAME].items() if key in accepted}


# ------------------------------------------------------------------------------------------- pretraining
def pretraining_child(dataset: Path, batch_size: int, steps: int) -> dict:
    kwargs = {**entry_kwargs(ENTRIES["rate_paper"]), "batch_size": batch_size}
    model = RATE("RATEPolicy", ImageEnv(), demonstrations=str(dataset), seed=0, device="cpu", **kwargs)
    model.pretrain(1, log_interval=1)  # warm-up: the dataset opens, the first batch allocates
    started = time.perf_counter()
    model.pretrain(steps, log_interval=steps)
    seconds = (time.perf_counter() - started) / steps
    windows = batch_size * kwargs["context_len"] * kwargs["n_segments"]
    return {
        "batch_size": batch_size,
        "timed_steps": steps,
        "seconds_per_step": round(seconds, 2),
        "trajectory_steps_per_second": round(windows / seconds, 1),
        "peak_rss_gb": round(peak_rss_gb(), 3),
    }


def pretraining(batch_size: int, steps: int) -> dict:
    dataset, build_seconds = build_dataset(FRAMES)
    command = [sys.executable, __file__, "--child", str(dataset), "--batch", str(batch_size), "--steps", str(steps)]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result.update(architecture=entry_kwargs(ENTRIES["rate_paper"]), dataset=str(dataset.relative_to(REPO)))
    result["dataset_build_seconds"] = round(build_seconds, 1)
    return result


# ---------------------------------------------------------------------------------------------- rollouts
class RandomActions:
    """The env alone: ``predict`` draws uniform actions."""

    def __init__(self, env: VecEnv, seed: int) -> None:
        self.action_space, self.rng = env.action_space, np.random.default_rng(seed)

    def predict(self, observations, state=None, episode_start=None, deterministic=False):
        return self.rng.integers(self.action_space.n, size=len(episode_start)), state


def atari_vec_env(n_envs: int, seed: int, previous_reward: bool) -> VecEnv:
    """Pong as the entries train on it (with RATE's previous reward) or as the RL Zoo's PPO does (without)."""

    def wrap(env):
        env = AtariWrapper(env, **ATARI_KWARGS)
        return PrevRewardWrapper(env) if previous_reward else env

    make = functools.partial(make_env, GAME)
    return VecTransposeImage(VecFrameStack(make_vec_env(make, n_envs=n_envs, seed=seed, wrapper_class=wrap), 4))


def rollout_runners(n_envs: int, seed: int) -> dict[str, Rollout]:
    runners = {}
    for name, config in ENTRIES.items():
        env = atari_vec_env(n_envs, seed, previous_reward=True)
        runners[name] = Rollout(RATE("RATEPolicy", env, seed=seed, device="cpu", **entry_kwargs(config)), env)
    ppo_env = atari_vec_env(n_envs, seed, previous_reward=False)
    runners["ppo_cnn"] = Rollout(PPO("CnnPolicy", ppo_env, seed=seed, device="cpu"), ppo_env)
    random_env = atari_vec_env(n_envs, seed, previous_reward=False)
    runners["random_actions"] = Rollout(RandomActions(random_env, seed), random_env)
    return runners


def rollouts(n_envs: int, block: int, rounds: int, seed: int) -> dict:
    medians = median_env_steps_per_second(rollout_runners(n_envs, seed), n_envs, block, rounds, warm_up=10)
    result: dict = {"env_steps_per_second": medians, "n_envs": n_envs, "steps_per_block": block, "rounds": rounds}
    result["over_ppo_cnn"] = {name: round(rate / medians["ppo_cnn"], 3) for name, rate in medians.items()}
    return result


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 1 timed step, short rollouts")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 8], help="env counts of the rollouts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.child:
        print(json.dumps(pretraining_child(args.child, args.batch, args.steps)))
        return
    paper_batch = entry_kwargs(ENTRIES["rate_paper"])["batch_size"]
    batch, steps, block, rounds = (8, 1, 20, 2) if args.quick else (paper_batch, 3, 200, 5)
    result = {"benchmark": "atari_speed", "quick": args.quick, "machine": machine_info(), "game": GAME}
    result["pretraining"] = pretraining(batch, steps)
    print(f"pretraining: {result['pretraining']}", flush=True)
    result["rollouts"] = {}
    for n_envs in args.envs:
        result["rollouts"][str(n_envs)] = rollouts(n_envs, block, rounds, args.seed)
        print(f"rollouts, {n_envs} env(s): {result['rollouts'][str(n_envs)]}", flush=True)
    write_result(result, RESULTS / f"atari_speed{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
