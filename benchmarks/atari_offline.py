"""Atari offline, DQN-replay-style (issue 22): RATE, DT and BC on the same datasets and gradient-step budget, raw and
human-normalised scores beside the paper's.

    python benchmarks/atari_offline.py                          # 4 games x 3 models x 3 seeds, Pong and Breakout first
    python benchmarks/atari_offline.py --games pong --seeds 0   # one game, one seed
    python benchmarks/atari_offline.py --quick                  # Pong's --quick dataset, made on the fly (minutes)
    python benchmarks/atari_offline.py --summary-only --table   # the summary of the runs done so far

The datasets are ``benchmarks/atari_datasets.py``'s (build them first: a missing one stops the run and names the
command). RATE and DT are the CPU-scale zoo entries of ``hyperparams/rate_atari_offline.yml``, trained and scored by
``benchmarks/zoo_result.py`` (DT: ``--mode dt``, the same entry as one long segment without memory), asked for the
paper's target returns. BC is d3rlpy's ``DiscreteBC`` (``pip install "rate_sb3[mujoco]"``; d3rlpy's defaults, its
Nature-DQN pixel encoder) on the same games: each step's newest frame, stacked again into the same 4 frames by
d3rlpy's ``FrameStackTransitionPicker`` (a quarter of the memory of the stacks), for the entry's number of gradient
steps, each on a batch of as many steps as one of RATE's batches trains on (windows x segments x context length;
d3rlpy samples every step but a truncated game's last, which has no next observation); it plays its argmax action.
The protocol is the paper's: every model plays the same 10 seeded games per seed (game j starts from seed j), raw
game scores, mean +- sem over 3 seeds. Every run keeps its own JSON in ``benchmarks/results/`` and is not run again,
so a cut benchmark resumes where it stopped.

Writes ``benchmarks/results/atari_offline.json``: ``{"games": {"Pong": {"rate": mean raw score, "dt": ..., "bc": ...,
"n_seeds": seeds that every model ran, "transitions": the dataset's, "sem": ..., "human_normalized": ..., "paper":
...}, ...}, "rate_at_least_dt": ...}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from common import RESULTS, D3rlpyAgent, d3rlpy_dataset, format_score, sem, write_result
from gymnasium import spaces
from zoo_result import EVAL_ENVS, load_entry, rate_run_file, run_rate_once, shown

from rate_sb3.atari_replay import ATARI_GAMES, FRAME_STACK, build_command
from rate_sb3.evaluate import evaluate
from rate_sb3.image_datasets import load_image_dataset, load_image_dataset_metadata

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
CONFIG = REPO / "hyperparams" / "rate_atari_offline.yml"
GAMES = ("pong", "breakout", "qbert", "seaquest")  # in the order they run: Pong and Breakout first
TITLES = {"pong": "Pong", "breakout": "Breakout", "qbert": "Qbert", "seaquest": "Seaquest"}
MODELS = ("rate", "dt", "bc")
EVAL_EPISODES = 10
# The usual human-normalised score, 100 * (score - random) / (human - random), with the random and human scores of
# Mnih et al. (2015)
RANDOM_AND_HUMAN = {
    "pong": (-20.7, 14.6),
    "breakout": (1.7, 30.5),
    "qbert": (163.9, 13455.0),
    "seaquest": (68.4, 42054.7),
}
# The paper's Table 4 (RATE, DT): raw scores from 500k DQN-replay transitions
PAPER = {"pong": (18.8, 17.1), "breakout": (111.0, 76.9), "qbert": (12486.9, 2215.8), "seaquest": (1037.9, 1129.3)}
QUICK_EPISODE_FRAMES = 400  # --quick cuts games at 100 steps
QUICK_STEPS = 64  # zoo_result.py's --quick budget, BC's too
PREV_REWARD_WRAPPER = "rate_sb3.wrappers.PrevRewardWrapper"  # RATE's input, not BC's


def human_normalized(game: str, score: float) -> float:
    random, human = RANDOM_AND_HUMAN[game]
    return 100.0 * (score - random) / (human - random)


def dataset_path(config: Path, game: str) -> Path:
    """The dataset of the game's entry (its ``demonstrations``, relative to the repository root)."""
    return REPO / load_entry(config, ATARI_GAMES[game])["demonstrations"]


def require_dataset(config: Path, game: str) -> Path:
    path = dataset_path(config, game)
    if not path.is_file():
        raise SystemExit(
            f"error: {game}'s dataset {path} does not exist: build it first with `{build_command(path)}` "
            f"(hours; it resumes), or leave {game} out of --games"
        )
    return path


def quick_config(dataset: Path) -> Path:
    """Pong's entry with the --quick dataset as its demonstrations, in a config file of its own beside the dataset."""
    env_id = ATARI_GAMES["pong"]
    entry = json.loads(json.dumps(load_entry(CONFIG, env_id)))  # plain dicts and lists, for yaml.safe_dump
    path = dataset.parent / CONFIG.name
    path.write_text(yaml.safe_dump({env_id: {**entry, "demonstrations": str(dataset)}}, sort_keys=False))
    return path


def zoo_run(config: Path, game: str, model: str, seed: int, quick: bool) -> dict:
    """RATE or DT through ``zoo_result.py``; returns its JSON."""
    extra = ["--eval-episodes", str(EVAL_EPISODES), "--max-minutes", "600"]
    extra += ["--max-episode-steps", str(QUICK_EPISODE_FRAMES)] if quick else []
    return run_rate_once(ATARI_GAMES[game], config, model, seed, quick, extra)


def bc_run_file(game: str, seed: int, quick: bool) -> Path:
    return RESULTS / f"atari_{game}_bc_seed{seed}{'_quick' if quick else ''}.json"


def newest_frames(episodes: list) -> np.ndarray:
    """Each step's newest frame (n, 1, H, W), in episode order, without the episodes' final observations."""
    return np.concatenate([episode.observations[:-1][:, -1:] for episode in episodes])


def bc_run(config: Path, game: str, seed: int, quick: bool) -> dict:
    """d3rlpy's DiscreteBC on the entry's dataset and budget, scored on the same games; returns its JSON."""
    import d3rlpy

    path = bc_run_file(game, seed, quick)
    if path.is_file():
        return json.loads(path.read_text())
    env_id = ATARI_GAMES[game]
    entry = load_entry(config, env_id)
    steps = QUICK_STEPS if quick else int(entry["n_timesteps"])
    batch_size = int(entry["batch_size"]) * int(entry["n_segments"]) * int(entry["context_len"])
    source = dataset_path(config, game)
    episodes = load_image_dataset(source)
    picker = d3rlpy.dataset.FrameStackTransitionPicker(n_frames=FRAME_STACK)
    dataset = d3rlpy_dataset(episodes, newest_frames(episodes), transition_picker=picker)
    d3rlpy.seed(seed)
    scaler = d3rlpy.preprocessing.PixelObservationScaler()
    bc = d3rlpy.algos.DiscreteBCConfig(batch_size=batch_size, observation_scaler=scaler).create(device="cpu:0")
    started = time.perf_counter()
    logger = d3rlpy.logging.NoopAdapterFactory()
    bc.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, logger_adapter=logger)
    train_seconds = time.perf_counter() - started
    env_kwargs = {**entry.get("env_kwargs", {}), **({"max_episode_steps": QUICK_EPISODE_FRAMES} if quick else {})}
    frames = spaces.Box(0, 255, episodes[0].observations[:1].shape[1:], np.uint8)
    evaluation = evaluate(
        D3rlpyAgent(bc, frames),
        env_id,
        env_kwargs,
        n_episodes=EVAL_EPISODES,
        n_envs=EVAL_ENVS,
        env_wrappers=[wrapper for wrapper in entry["env_wrapper"] if wrapper != PREV_REWARD_WRAPPER],
        frame_stack=entry["frame_stack"],
    )
    result = {
        "game": game,
        "algo": f"d3rlpy DiscreteBC {d3rlpy.__version__}",
        "seed": seed,
        "dataset": shown(source),
        "gradient_steps": steps,
        "batch_size": batch_size,
        "evaluation": evaluation,
        "train_seconds": round(train_seconds, 1),
    }
    write_result(result, path)
    return result


def run_score(config: Path, game: str, model: str, seed: int, quick: bool) -> float:
    """A run's mean raw score, running it first unless its JSON exists."""
    if model == "bc":
        return bc_run(config, game, seed, quick)["evaluation"]["mean_return"]
    return zoo_run(config, game, model, seed, quick)["evaluations"][0]["result"]["mean_return"]


def has_run(config: Path, game: str, model: str, seed: int, quick: bool) -> bool:
    if model == "bc":
        return bc_run_file(game, seed, quick).is_file()
    return rate_run_file(ATARI_GAMES[game], config, model, seed, quick).is_file()


def summarise(scores: dict[str, dict[str, list[float]]], transitions: dict[str, int]) -> dict:
    """Per game, each model's mean raw score over the seeds it ran, their sem and human-normalised means, the
    dataset's size and the paper's scores; and on how many games RATE is at or above DT."""
    games = {}
    for game, by_model in scores.items():
        ran = {model: values for model, values in by_model.items() if values}
        if not ran:
            continue
        entry: dict = {model: float(np.mean(values)) for model, values in ran.items()}
        entry["n_seeds"] = min(len(values) for values in ran.values())
        entry["transitions"] = transitions[game]
        entry["sem"] = {model: sem(values) for model, values in ran.items()}
        entry["human_normalized"] = {model: human_normalized(game, entry[model]) for model in ran}
        entry["paper"] = dict(zip(("rate", "dt"), PAPER[game]))
        games[TITLES[game]] = entry
    both = [entry for entry in games.values() if "rate" in entry and "dt" in entry]
    return {"games": games, "rate_at_least_dt": {"games": sum(e["rate"] >= e["dt"] for e in both), "of": len(both)}}


def markdown_table(summary: dict) -> str:
    """The summary as RESULTS shows it: raw mean (+- sem where several seeds ran), human-normalised, the paper's."""
    lines = [
        "| game | RATE | DT | BC | human-normalised RATE / DT / BC | seeds | transitions | paper RATE / DT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for title, entry in summary["games"].items():
        raw = [format_score(entry.get(model), entry["sem"].get(model)) for model in MODELS]
        normalized = " / ".join(format_score(entry["human_normalized"].get(model), None) for model in MODELS)
        paper = " / ".join(str(score) for score in entry["paper"].values())
        lines.append(
            f"| {title} | {' | '.join(raw)} | {normalized} | {entry['n_seeds']} | {entry['transitions']:,} | {paper} |"
        )
    return "\n".join(lines)


def quick_setup() -> Path:
    """Pong's --quick dataset (made unless it exists) and the config whose entry reads it."""
    from atari_datasets import main as build_datasets

    (dataset,) = build_datasets(["--game", "pong", "--quick"])
    return quick_config(dataset)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="Pong's --quick dataset, 1 seed, 100-step games")
    parser.add_argument("--summary-only", action="store_true", help="summarise the runs done, run nothing")
    parser.add_argument("--table", action="store_true", help="print the summary as a markdown table too")
    args = parser.parse_args(argv)
    config = CONFIG
    if args.quick:
        args.games, args.seeds = ["pong"], [0]
        config = quick_setup()
    scores: dict[str, dict[str, list[float]]] = {}
    transitions: dict[str, int] = {}
    for game in args.games:
        scores[game] = {model: [] for model in args.models}
        if args.summary_only and not dataset_path(config, game).is_file():
            continue
        transitions[game] = load_image_dataset_metadata(require_dataset(config, game))["transitions"]
        for seed in args.seeds:
            for model in args.models:
                if args.summary_only and not has_run(config, game, model, seed, args.quick):
                    continue
                score = run_score(config, game, model, seed, args.quick)
                scores[game][model].append(score)
                print(f"{game} {model} seed {seed}: {score:.1f}", flush=True)
    summary = summarise(scores, transitions)
    if not summary["games"]:  # only --summary-only gets here with nothing run: no file saying nothing
        raise SystemExit(f"error: no run of {', '.join(args.games)} exists yet; run without --summary-only")
    if args.table:
        print(markdown_table(summary))
    write_result(summary, RESULTS / f"atari_offline{'_quick' if args.quick else ''}.json")
    return summary


if __name__ == "__main__":
    main()
