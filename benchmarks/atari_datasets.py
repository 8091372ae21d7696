"""DQN-replay-style Atari datasets made here (issue 22): SB3's PPO learns a game, and the dataset is an equal slice of
the games it played in every stage of its learning. What the episodes hold (whole games, raw scores, the learner's
stacked frames) and why: ``rate_sb3/atari_replay.py``.

    python benchmarks/atari_datasets.py --game pong                           # learn (resumable), then the dataset
    python benchmarks/atari_datasets.py --game pong breakout qbert seaquest   # the four games, one after another
    python benchmarks/atari_datasets.py --game pong --quick                   # a tiny run (seconds), its files
                                                                              # under benchmarks/data/atari_quick/

The learner is SB3's PPO with the RL Zoo's Atari hyperparameters (rl_zoo3's ``hyperparams/ppo.yml``, entry
``atari``): 8 envs, 128 steps, 4 epochs, batches of 256, learning rate and clip range decaying linearly from 2.5e-4
and 0.1 over the whole run, vf_coef 0.5, ent_coef 0.01, NatureCNN on 4 stacked frames. PPO, not DQN: its state is
its weights, while a DQN checkpoint would carry a replay buffer of gigabytes. It learns ``--learner-steps`` env
steps in ``--stages`` equal chunks, each a stage of learning. During a chunk, every game its envs finish is written
to that stage's shard (``stages/stage_NNN.h5``); after the chunk the shard is closed, the learner saved
(``ppo_stage_NNN.zip``) and ``progress.json`` records the stage: its env steps, the checkpoint's SHA-256 and wall
time. A cut run resumes after its last finished stage (its envs restart: the games then in progress are lost).

The dataset, ``replay_<transitions>.h5``: the last k games of every stage, k the largest the budget
``--transitions`` allows, written atomically; its metadata (``rate_sb3.image_datasets.load_image_dataset_metadata``)
holds the stage boundaries in env steps, each stage's checkpoint SHA-256, the learner's settings and each stage's
slice. Another budget is sliced from the same shards without learning again. Files: ``benchmarks/data/atari/<game>/``.

Scale: the paper's data is 500k transitions from a DQN agent's 50M steps (50 stages). Here, by default, 200k
transitions from 2M steps of PPO in 20 stages of 100k. 2M steps: the learner runs at about 220 env steps per second
with one torch thread, recording included (measured on Pong on this project's busy 2-core machine), so a game takes 2.5
hours, and PPO is past random play in all four games by then (the zoo trains 10M). 200k transitions: CPU-scale RATE
entries train for a few thousand gradient steps of 8 windows of 30 steps, fewer than 200k steps in all, and the
stacked frames take roughly 0.3-1 kB a step on disk after compression.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import torch as th
from common import git_commit, read_json, sha256, write_json
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from rate_sb3.atari_replay import (
    ATARI_GAMES,
    ATARI_WRAPPER_KWARGS,
    DEFAULT_TRANSITIONS,
    FRAME_STACK,
    MAX_EPISODE_FRAMES,
    EpisodeRecorder,
    learner_env_wrapper,
    write_stage_slices,
)
from rate_sb3.envs import make_env
from rate_sb3.image_datasets import ImageDatasetWriter

DATA = Path(__file__).resolve().parent / "data"
# rl_zoo3's hyperparams/ppo.yml, entry atari (learning_rate lin_2.5e-4, clip_range lin_0.1)
N_ENVS = 8
PPO_KWARGS = dict(
    n_steps=128,
    n_epochs=4,
    batch_size=256,
    learning_rate=LinearSchedule(2.5e-4, 0.0, 1.0),
    clip_range=LinearSchedule(0.1, 0.0, 1.0),
    vf_coef=0.5,
    ent_coef=0.01,
)
DEFAULTS = dict(
    learner_steps=2_000_000,
    stages=20,
    transitions=DEFAULT_TRANSITIONS,
    n_envs=N_ENVS,
    max_episode_frames=MAX_EPISODE_FRAMES,
)
# --quick: 2 envs, games cut at 100 steps, 2 stages of 256 steps (a PPO update after every 128); flags given win
QUICK = dict(learner_steps=512, stages=2, transitions=300, n_envs=2, max_episode_frames=400)
QUICK_PPO = dict(n_steps=64, n_epochs=1, batch_size=64)


class StagedPPO(PPO):
    """PPO learning in chunks (``learn(..., reset_num_timesteps=False)``) whose schedules follow the whole run of
    ``learner_steps`` env steps: SB3 would restart them in every chunk."""

    learner_steps: int

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        super()._update_current_progress_remaining(num_timesteps, self.learner_steps)


def learner_env(game: str, args: argparse.Namespace, seed: int) -> VecEnv:
    """
    The learner's envs: ``args.n_envs`` copies of the game in :func:`~rate_sb3.atari_replay.learner_env_wrapper`,
    4 frames stacked.

    :param game: A key of :data:`~rate_sb3.atari_replay.ATARI_GAMES`.
    :param args: The builder's arguments (``n_envs``, ``max_episode_frames``).
    :param seed: The envs' seed (a resumed run takes a new one, not to replay the first games).
    """
    make = functools.partial(make_env, ATARI_GAMES[game], max_episode_steps=args.max_episode_frames)
    return VecFrameStack(make_vec_env(make, args.n_envs, seed=seed, wrapper_class=learner_env_wrapper), FRAME_STACK)


def ppo_kwargs(args: argparse.Namespace) -> dict:
    return {**PPO_KWARGS, **(QUICK_PPO if args.quick else {})}


def settings(game: str, args: argparse.Namespace) -> dict:
    """What a resumed run must share with the run it continues."""
    keys = ("learner_steps", "stages", "n_envs", "max_episode_frames", "seed", "quick")
    return {"game": game, "env_id": ATARI_GAMES[game], **{key: getattr(args, key) for key in keys}}


def load_progress(directory: Path, game: str, args: argparse.Namespace) -> dict:
    """The run's progress, new or read back; a run with other settings is refused (its stages would not chain)."""
    progress = read_json(directory / "progress.json", {"settings": settings(game, args), "stages": []})
    if progress["settings"] != settings(game, args):
        raise SystemExit(
            f"{directory / 'progress.json'} was written with {progress['settings']}, not {settings(game, args)}: "
            f"run with those settings, or remove {directory} to start over"
        )
    progress.setdefault("train_seconds", 0.0)
    return progress


def load_or_create_learner(directory: Path, game: str, progress: dict, args: argparse.Namespace) -> StagedPPO:
    done = progress["stages"]
    env = learner_env(game, args, seed=args.seed + 1000 * len(done))
    if not done:
        model = StagedPPO("CnnPolicy", env, seed=args.seed, verbose=0, **ppo_kwargs(args))
        model.learner_steps = args.learner_steps
        return model
    model = StagedPPO.load(directory / done[-1]["checkpoint"], env=env)
    if model.num_timesteps != done[-1]["env_steps"][1]:
        raise SystemExit(
            f"{done[-1]['checkpoint']} is at {model.num_timesteps} env steps, progress.json says "
            f"{done[-1]['env_steps'][1]}: remove {directory} to start over"
        )
    return model


def learn_stage(
    model: StagedPPO, recorder: EpisodeRecorder, directory: Path, stage: int, args: argparse.Namespace
) -> dict:
    """
    Learn stage ``stage``, its finished games written to its shard, then save the learner.

    :return: The stage's record for ``progress.json``.
    """
    first_step, started = model.num_timesteps, time.perf_counter()
    target = round((stage + 1) * args.learner_steps / args.stages)
    recorder.writer = ImageDatasetWriter(directory / "stages" / f"stage_{stage:03d}.h5")
    with recorder.writer:  # a cut run leaves no shard, only its .partial file
        model.learn(target - model.num_timesteps, callback=recorder, reset_num_timesteps=False)
        n_episodes = recorder.writer.n_episodes
        if n_episodes == 0:
            raise SystemExit(
                f"stage {stage} finished no game in {model.num_timesteps - first_step} env steps: learn in fewer, "
                "longer stages (--stages)"
            )
    checkpoint = directory / f"ppo_stage_{stage:03d}.zip"
    model.save(checkpoint)
    return {
        "stage": stage,
        "env_steps": [first_step, model.num_timesteps],
        "episodes": n_episodes,
        "checkpoint": checkpoint.name,
        "sha256": sha256(checkpoint),
        "seconds": time.perf_counter() - started,
    }


def learn_stages(directory: Path, game: str, args: argparse.Namespace) -> dict:
    """Learn the stages not finished yet; after each, ``progress.json`` says it is done (then the previous
    checkpoint is removed). :return: the progress."""
    progress = load_progress(directory, game, args)
    if len(progress["stages"]) == args.stages:
        return progress
    model, recorder = load_or_create_learner(directory, game, progress, args), EpisodeRecorder(FRAME_STACK)
    while len(progress["stages"]) < args.stages:
        record = learn_stage(model, recorder, directory, len(progress["stages"]), args)
        previous = progress["stages"][-1]["checkpoint"] if progress["stages"] else None
        progress["stages"].append(record)
        progress["train_seconds"] += record["seconds"]
        progress["env_steps_per_second"] = model.num_timesteps / progress["train_seconds"]
        write_json(directory / "progress.json", progress)
        if previous is not None:
            (directory / previous).unlink(missing_ok=True)
        print(
            f"{game}: stage {record['stage'] + 1}/{args.stages}, {model.num_timesteps} env steps, "
            f"{record['episodes']} games recorded ({progress['train_seconds']:.0f} s)"
        )
    model.env.close()
    return progress


def write_dataset(directory: Path, game: str, progress: dict, args: argparse.Namespace) -> Path:
    """Write ``replay_<transitions>.h5`` from the stages' shards unless it exists. :return: its path."""
    path = directory / f"replay_{args.transitions}.h5"
    if path.exists():
        print(f"{path}: exists")
        return path
    started = time.perf_counter()
    metadata = {
        "recipe": "DQN-replay's, made here by rate_sb3's benchmarks/atari_datasets.py (see rate_sb3/atari_replay.py)",
        "code": f"benchmarks/atari_datasets.py at commit {git_commit()}",
        "env": {"atari_wrapper": ATARI_WRAPPER_KWARGS, "frame_stack": FRAME_STACK, **progress["settings"]},
        "rewards": "raw game scores per step; DQN-replay's clipped rewards are np.sign(rewards)",
        "learner": {"algorithm": "SB3 PPO, RL Zoo Atari hyperparameters", **_printable(ppo_kwargs(args))},
        "budget": args.transitions,
        "learning_stages": [
            {key: stage[key] for key in ("env_steps", "checkpoint", "sha256")} for stage in progress["stages"]
        ],
        "checkpoint_sha256": progress["stages"][-1]["sha256"],
    }
    shards = [directory / "stages" / f"stage_{stage['stage']:03d}.h5" for stage in progress["stages"]]
    summary = write_stage_slices(shards, args.transitions, path, metadata)
    progress.setdefault("datasets", {})[path.name] = {**summary, "seconds": time.perf_counter() - started}
    write_json(directory / "progress.json", progress)
    print(f"{path}: {summary['transitions']} transitions, {summary['episodes_per_stage']} games from each stage")
    return path


def _printable(kwargs: dict) -> dict:
    """Hyperparameters as JSON: a linear schedule by its start (the zoo's ``lin_X``)."""
    return {key: f"lin_{value.start}" if isinstance(value, LinearSchedule) else value for key, value in kwargs.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", nargs="+", required=True, choices=list(ATARI_GAMES))
    parser.add_argument("--learner-steps", type=int, help=f"PPO's env steps (default {DEFAULTS['learner_steps']})")
    parser.add_argument("--stages", type=int, help=f"stages (chunks) of learning (default {DEFAULTS['stages']})")
    parser.add_argument("--transitions", type=int, help=f"the dataset's budget (default {DEFAULTS['transitions']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DATA, help="holds atari/<game>/ (atari_quick/ with --quick)")
    parser.add_argument("--quick", action="store_true", help="a tiny run: " + str(QUICK))
    args = parser.parse_args(argv)
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> list[Path]:
    """Build the datasets of ``--game``: learn (or resume), then slice. :return: the datasets' paths."""
    args = parse_args(argv)
    th.set_num_threads(1)
    paths = []
    for game in args.game:
        directory = args.data_dir / ("atari_quick" if args.quick else "atari") / game
        (directory / "stages").mkdir(parents=True, exist_ok=True)
        progress = learn_stages(directory, game, args)
        paths.append(write_dataset(directory, game, progress, args))
    return paths


if __name__ == "__main__":
    main()
