"""MiniGrid-Memory: success rate against grid size, pretrained on the oracle's demonstrations of one size.

    python benchmarks/minigrid_memory.py                 # train on MemoryS7, evaluate up to S17Random (~15 min)
    python benchmarks/minigrid_memory.py --quick         # a smoke run (about 1 min)

The oracle looks at the cue in the start room before it heads for the end of the hallway (it starts facing away
from it), and takes a random action 10% of the time. RATE pretrains offline on its episodes from one grid size,
then runs deterministic episodes on that size and on larger ones, where the hallway between the cue and the
choice is longer than any seen in training. Writes ``benchmarks/results/minigrid_memory_seed<seed>.json`` and
``.png``; the last stdout line is the JSON object.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib
import minigrid  # noqa: F401  (registers the MiniGrid envs)
import numpy as np
import torch as th
from common import RESULTS, machine_info, write_result
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.collect import collect_episodes
from rate_sb3.envs import make_expert
from rate_sb3.evaluate import evaluate, resolve_env_wrappers
from rate_sb3.extractors import CategoricalImageCNN
from rate_sb3.wrappers import VecObservationOnly

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GRIDS = ["S7", "S9", "S11", "S13", "S13Random", "S17Random"]  # Random: the hallway length varies
# The symbolic 7x7 view, one-hot and flattened, as in hyperparams/rate.yml; --raw-indices: the (object, colour,
# state) indices as a 3-channel image, each index embedded by CategoricalImageCNN (read as magnitudes by a plain
# CNN, they left RATE at chance: 0.47 on S7)
WRAPPERS = {
    "one_hot": [
        "minigrid.wrappers.OneHotPartialObsWrapper",
        "minigrid.wrappers.ImgObsWrapper",
        "gymnasium.wrappers.FlattenObservation",
        "rate_sb3.wrappers.SuccessFromReward",
    ],
    "raw_indices": ["minigrid.wrappers.ImgObsWrapper", "rate_sb3.wrappers.SuccessFromReward"],
}
RAW_INDICES_POLICY = dict(
    normalize_images=False,  # indices, not pixels
    features_extractor_class=CategoricalImageCNN,
    features_extractor_kwargs={"n_categories": (11, 6, 3)},  # MiniGrid's objects, colours and states
)
ARCHITECTURE = dict(context_len=16, n_segments=3, d_model=64, n_layers=2, n_heads=4, n_mem_tokens=4, dropout=0.1)


def env_id(grid: str) -> str:
    return f"MiniGrid-Memory{grid}-v0"


def training_env(args: argparse.Namespace) -> VecEnv:
    def wrap(env):
        for _, wrapper in resolve_env_wrappers(WRAPPERS[args.view]):
            env = wrapper(env)
        return PrevRewardWrapper(env)

    env = make_vec_env(env_id(args.train_grid), n_envs=4, wrapper_class=wrap, seed=args.seed)
    return VecTransposeImage(env) if args.view == "raw_indices" else env  # RATE's CNN takes channel-first images


def run(args: argparse.Namespace) -> dict:
    th.manual_seed(args.seed)
    started = time.perf_counter()
    train_id = env_id(args.train_grid)
    env = training_env(args)
    expert = make_expert(train_id, error_rate=args.error_rate, seed=args.seed)
    demos = collect_episodes(expert, VecObservationOnly(env), args.demos, seed=args.seed)
    model = RATE(
        "RATEPolicy",
        env,
        demonstrations=demos,
        learning_rate=args.lr,
        batch_size=32,
        warmup_steps=100,
        lr_end_factor=1.0,
        target_return=1.0,
        policy_kwargs=RAW_INDICES_POLICY if args.view == "raw_indices" else None,
        seed=args.seed,
        **ARCHITECTURE,
    )
    pretrain_started = time.perf_counter()
    model.pretrain(args.steps, log_interval=args.steps // 5 or 1)
    pretrain_seconds = time.perf_counter() - pretrain_started
    success, lengths, wrappers = {}, {}, WRAPPERS[args.view]
    for grid in args.grids:
        result = evaluate(model, env_id(grid), n_episodes=args.episodes, n_envs=25, seed=10_000, env_wrappers=wrappers)
        success[grid], lengths[grid] = result["success_rate"], result["mean_length"]
        print(f"{grid}: success {result['success_rate']:.2f}, {result['mean_length']:.1f} steps", flush=True)
    return {
        "benchmark": "minigrid_memory",
        "train_env": train_id,
        "view": args.view,
        "seed": args.seed,
        "demonstrations": args.demos,
        "expert_error_rate": args.error_rate,
        "demo_success": float(np.mean([episode.rewards.sum() > 0 for episode in demos])),
        "demo_mean_length": float(np.mean([len(episode.actions) for episode in demos])),
        "pretrain_steps": args.steps,
        "learning_rate": args.lr,
        "architecture": ARCHITECTURE,
        "success": success,
        "mean_length": lengths,
        "episodes_per_grid": args.episodes,
        "pretrain_seconds": round(pretrain_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
    }


def plot(result: dict, path: Path) -> None:
    grids = list(result["success"])
    fig, axis = plt.subplots(figsize=(6, 4))
    label = f"RATE ({result['view'].replace('_', ' ')} view), trained on {result['train_env']}"
    axis.plot(grids, list(result["success"].values()), "o-", label=label)
    axis.axhline(0.5, color="grey", ls="--", lw=0.8, label="chance")
    axis.set(xlabel="grid", ylabel="success rate", ylim=(0, 1.05))
    axis.set_title("MiniGrid-Memory: success against grid size")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-grid", default="S7", choices=GRIDS)
    parser.add_argument("--grids", nargs="+", default=GRIDS, choices=GRIDS, help="evaluation grids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2500, help="pretraining gradient steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--demos", type=int, default=500)
    parser.add_argument("--error-rate", type=float, default=0.1, help="the oracle's share of random actions")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per size")
    parser.add_argument("--raw-indices", dest="view", action="store_const", const="raw_indices", default="one_hot")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 steps, 20 episodes, S7 and S9")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.episodes, args.demos, args.grids = 50, 20, 100, ["S7", "S9"]
    result = run(args)
    name = "minigrid_memory" + ("_raw_indices" if args.view == "raw_indices" else "")
    out = args.out or RESULTS / f"{name}_seed{args.seed}{'_quick' if args.quick else ''}.json"
    plot(result, out.with_suffix(".png"))
    write_result(result, out)


if __name__ == "__main__":
    main()
