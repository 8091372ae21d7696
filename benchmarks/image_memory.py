"""Memory at image scale: peak RSS and seconds per gradient step of RATE pretraining from a lazily read image dataset.

    python benchmarks/image_memory.py                    # 200k frames, 10 gradient steps
    python benchmarks/image_memory.py --quick            # 5k frames, 3 gradient steps
    python benchmarks/image_memory.py --compare-formats  # the measurements behind the file format's settings

* Dataset: synthetic Atari-like episodes (stated, not real frames): 84x84 grey frames, a constant background of
  bands and walls with a brick texture, three moving sprites and a score bar, stacked 4 deep as (4, 84, 84) uint8;
  999 steps (1,000 frames) per episode, random actions of Discrete(6), sparse rewards. Written once with
  ``save_episodes``'s HDF5 format (gzip, chunks of a few frames) under ``benchmarks/data/`` (git-ignored); an
  interrupted build resumes where it stopped.
* ``rate``: ``RATE.pretrain`` on that file (K = 30, 3 segments, batch 32, the Nature CNN, a small transformer),
  in a child process of its own, so its peak RSS (``ru_maxrss``) is its own: the frames stay uint8 on disk
  until a window is read.
* ``naive``: the same gradient steps (the same windows) in another child, each batch's observations copied to
  float32 first.
* ``rate_no_burn_in``: as ``rate``, with every window starting at the episode start (no burn-in segments), which
  shows what the 3 segments that get gradients cost alone.

Writes ``benchmarks/results/image_memory[_quick].json`` and prints the JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import RESULTS, machine_info, write_result
from gymnasium import spaces

from rate_sb3 import Episode
from rate_sb3.image_datasets import ImageDatasetWriter

DATA = Path(__file__).resolve().parent / "data" / "image_memory"
FRAME_SIZE, STACK, EPISODE_STEPS, N_ACTIONS = 84, 4, 999, 6
OBSERVATION_SPACE = spaces.Box(0, 255, (STACK, FRAME_SIZE, FRAME_SIZE), np.uint8)
ARCHITECTURE = dict(context_len=30, n_segments=3, d_model=64, n_layers=2, n_heads=4, n_mem_tokens=8, batch_size=32)
TARGET_PEAK_RSS_GB = 3.0


# ------------------------------------------------------------------------------------------------ frames
def _background() -> np.ndarray:
    background = np.full((FRAME_SIZE, FRAME_SIZE), 30, np.uint8)
    background[:10], background[10:12], background[-12:-10] = 60, 180, 180
    background[:, :2] = background[:, -2:] = 120
    rows, cols = np.mgrid[: FRAME_SIZE - 24, :FRAME_SIZE]
    bricks = ((rows % 6 == 0) | ((cols + 4 * (rows // 6 % 2)) % 8 == 0)).astype(np.uint8)
    background[12:-12] += 25 * bricks  # a textured play field, as in Breakout's walls
    return background


def grey_frames(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """``n_frames`` consecutive 84x84 frames: a constant background, 3 bouncing sprites, a score bar."""
    background = _background()
    position, velocity = rng.uniform(16, 64, (3, 2)), rng.uniform(-2.5, 2.5, (3, 2))
    frames, score = np.empty((n_frames, FRAME_SIZE, FRAME_SIZE), np.uint8), 0
    for t in range(n_frames):
        frame = background.copy()
        position += velocity
        bounced = (position < 15) | (position > 65)
        velocity[bounced] *= -1
        np.clip(position, 15, 65, out=position)
        for sprite, (y, x) in enumerate(position.astype(int)):
            frame[y - 2 : y + 3, x - 3 : x + 3] = 200 + 20 * sprite
        score += rng.random() < 0.02
        frame[2:8, 4 : 4 + 3 * (score % 25)] = 255
        frames[t] = frame
    return frames


def synthetic_episode(index: int, n_steps: int = EPISODE_STEPS) -> Episode:
    """Episode ``index`` of the dataset (the same every time): stacks of 4 consecutive frames."""
    rng = np.random.default_rng(index)
    grey = grey_frames(rng, n_steps + STACK)
    stacks = np.stack([grey[offset : offset + n_steps + 1] for offset in range(STACK)], axis=1)
    rewards = (rng.random(n_steps) < 0.02).astype(np.float32)
    return Episode(stacks, rng.integers(0, N_ACTIONS, n_steps), rewards, terminated=True, truncated=False)


def build_dataset(n_frames: int) -> tuple[Path, float]:
    """The cached dataset of ``n_frames`` frames (built, or resumed, if needed) and the seconds spent building."""
    n_episodes = -(-n_frames // (EPISODE_STEPS + 1))
    path = DATA / f"frames_{n_episodes * (EPISODE_STEPS + 1)}.h5"
    if path.is_file():
        return path, 0.0
    started = time.perf_counter()
    with ImageDatasetWriter(path, resume=True) as writer:
        for index in range(writer.n_episodes, n_episodes):
            writer.add(synthetic_episode(index))
            print(f"dataset: episode {index + 1}/{n_episodes} written", file=sys.stderr, flush=True)
    return path, time.perf_counter() - started


# ------------------------------------------------------------------------------------------ measurement
class ImageEnv(gym.Env):
    """Only its spaces matter: pretraining never steps it."""

    observation_space, action_space = OBSERVATION_SPACE, spaces.Discrete(N_ACTIONS)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(OBSERVATION_SPACE.shape, np.uint8), {}

    def step(self, action):
        return np.zeros(OBSERVATION_SPACE.shape, np.uint8), 0.0, True, False, {}


def peak_rss_gb() -> float:
    """Peak resident memory of this process and of its largest child (ru_maxrss is in KiB on Linux)."""
    peaks = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return max(peaks) / 2**20


def measure(kind: str, dataset: Path, steps: int, seed: int) -> dict:
    """Run in a child process: a warm-up step, then ``steps`` timed pretraining steps; the batches' observations
    as uint8 (``rate``, ``rate_no_burn_in``) or copied to float32 (``naive``)."""
    from rate_sb3 import RATE
    from rate_sb3.buffers import TrajectoryBuffer

    batch_bytes, window_frames, sample = [], [], TrajectoryBuffer.sample

    def recorded_sample(buffer, *args, **kwargs):
        if kind == "rate_no_burn_in":
            buffer.start_at_zero = 1.0  # windows of exactly n_segments segments from the episode start
        batch = sample(buffer, *args, **kwargs)
        if kind == "naive":
            batch.observations = batch.observations.float()
        batch_bytes.append(batch.observations.element_size() * batch.observations.nelement())
        window_frames.append(batch.observations.shape[1])
        return batch

    TrajectoryBuffer.sample = recorded_sample
    model = RATE("RATEPolicy", ImageEnv(), demonstrations=str(dataset), seed=seed, device="cpu", **ARCHITECTURE)
    model.demonstration_episodes()  # opens and validates the dataset
    rss_loaded = peak_rss_gb()
    model.pretrain(1, log_interval=1)
    started = time.perf_counter()
    model.pretrain(steps, log_interval=steps)
    seconds = (time.perf_counter() - started) / steps
    return {
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "seconds_per_step": round(seconds, 3),
        "peak_rss_gb_after_loading_dataset": round(rss_loaded, 3),
        "observation_dtype": "float32" if kind == "naive" else "uint8",
        "batch_observation_gb_max": round(max(batch_bytes) / 2**30, 3),
        "window_frames_max": max(window_frames),
        "window_frames_mean": round(float(np.mean(window_frames)), 1),
        "steps": steps,
    }


def run_child(kind: str, dataset: Path, steps: int, seed: int) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--dataset", str(dataset), "--steps", str(steps)]
    output = subprocess.run([*command, "--seed", str(seed)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- formats
def compare_formats(n_episodes: int, n_windows: int) -> dict:
    """Write speed, compression ratio and read time of a 90-frame window, for HDF5 settings and per-episode npz."""
    import h5py

    episodes = [synthetic_episode(index).observations for index in range(n_episodes)]
    raw_bytes, rng, window = sum(e.nbytes for e in episodes), np.random.default_rng(0), 3 * 30
    results, folder = {}, DATA / "formats"
    folder.mkdir(parents=True, exist_ok=True)
    for compression, level in (("gzip", 1), ("gzip", 4), ("lzf", None)):
        for chunk in (1, 4, 16):
            path, started = folder / f"{compression}{level or ''}_{chunk}.h5", time.perf_counter()
            with h5py.File(path, "w") as file:
                for index, frames in enumerate(episodes):
                    chunks = (chunk, *frames.shape[1:])
                    file.create_dataset(str(index), data=frames, chunks=chunks, compression=compression,
                                        compression_opts=level)  # fmt: skip
            written = time.perf_counter() - started
            with h5py.File(path, "r") as file:
                started = time.perf_counter()
                for _ in range(n_windows):
                    frames = file[str(rng.integers(n_episodes))]
                    start = rng.integers(0, len(frames) - window)
                    frames[start : start + window]
                read = (time.perf_counter() - started) / n_windows
            results[f"hdf5 {compression}{level or ''} chunk {chunk}"] = _format_row(raw_bytes, path, written, read)
    started = time.perf_counter()
    for index, frames in enumerate(episodes):
        np.savez_compressed(folder / f"episode_{index}.npz", observations=frames)
    written, started = time.perf_counter() - started, time.perf_counter()
    for _ in range(n_windows):  # the whole episode is decompressed to read a window
        np.load(folder / f"episode_{rng.integers(n_episodes)}.npz")["observations"][:window]
    read = (time.perf_counter() - started) / n_windows
    npz_bytes = sum((folder / f"episode_{index}.npz").stat().st_size for index in range(n_episodes))
    results["npz per episode"] = _format_row(raw_bytes, npz_bytes, written, read)
    return {"frames": sum(len(e) for e in episodes), "raw_mb": round(raw_bytes / 1e6, 1), "formats": results}


def _format_row(raw_bytes: int, path_or_size: Path | int, written: float, read: float) -> dict:
    size = path_or_size if isinstance(path_or_size, int) else path_or_size.stat().st_size
    return {
        "compression_ratio": round(raw_bytes / size, 1),
        "write_mb_per_s": round(raw_bytes / written / 1e6),
        "read_window_ms": round(read * 1e3, 2),
    }


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5k frames, 3 steps")
    parser.add_argument("--frames", type=int, default=None, help="dataset size in frames (default 200,000)")
    parser.add_argument("--steps", type=int, default=None, help="timed gradient steps per child (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-formats", action="store_true", help="measure file formats instead")
    parser.add_argument("--child", choices=("rate", "naive", "rate_no_burn_in"), help=argparse.SUPPRESS)
    parser.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.dataset, args.steps, args.seed)))
        return
    if args.compare_formats:
        result = dict(compare_formats(n_episodes=5, n_windows=64), machine=machine_info())
        write_result(result, args.out or RESULTS / "image_formats.json")
        return
    frames = args.frames or (5_000 if args.quick else 200_000)
    steps = args.steps or (3 if args.quick else 10)
    machine = machine_info()
    dataset, build_seconds = build_dataset(frames)
    n_frames = frames_in(dataset)
    rate = run_child("rate", dataset, steps, args.seed)
    naive = run_child("naive", dataset, steps, args.seed)
    no_burn_in = run_child("rate_no_burn_in", dataset, steps, args.seed)
    result = {
        "peak_rss_gb": rate["peak_rss_gb"],
        "seconds_per_step": rate["seconds_per_step"],
        "target_peak_rss_gb": TARGET_PEAK_RSS_GB,
        "meets_target": rate["peak_rss_gb"] <= TARGET_PEAK_RSS_GB,
        "dataset": {
            "frames": n_frames,
            "frame_shape": list(OBSERVATION_SPACE.shape),
            "uint8_gb_if_loaded_whole": round(n_frames * int(np.prod(OBSERVATION_SPACE.shape)) / 2**30, 3),
            "file_gb": round(dataset.stat().st_size / 2**30, 3),
            "build_seconds_this_run": round(build_seconds, 1),
        },
        "architecture": ARCHITECTURE,
        "rate": rate,
        "naive_float32_batch": naive,
        "rate_without_burn_in_segments": no_burn_in,
        "machine": machine,
    }
    write_result(result, args.out or RESULTS / f"image_memory{'_quick' if args.quick else ''}.json")


def frames_in(dataset: Path) -> int:
    from rate_sb3.image_datasets import load_image_dataset

    return sum(len(episode.observations) for episode in load_image_dataset(dataset))


if __name__ == "__main__":
    main()
