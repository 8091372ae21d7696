"""Tests for rate_sb3.image_datasets: compressed HDF5 episode files written in chunks and read lazily."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from gymnasium import spaces

from rate_sb3 import RATE, Episode, image_datasets, load_demonstrations, save_episodes
from rate_sb3.buffers import TrajectoryBuffer
from rate_sb3.data import LAZY_CHECKED_STEPS, validate_episodes
from rate_sb3.demonstrations import resolve_demonstrations
from rate_sb3.image_datasets import ImageDatasetWriter, LazyFrames

FRAME_SHAPE = (4, 12, 12)
IMAGE_SPACE = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
ACTION_SPACE = spaces.Discrete(3)


def image_episodes(lengths=(5, 40, 17), seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            observations=rng.integers(0, 256, (n + 1, *FRAME_SHAPE), dtype=np.uint8),
            actions=rng.integers(0, 3, n),
            rewards=rng.random(n),
            terminated=i % 2 == 0,
            truncated=i % 2 == 1,
        )
        for i, n in enumerate(lengths)
    ]


def assert_same_episodes(loaded: list[Episode], expected: list[Episode]) -> None:
    assert len(loaded) == len(expected)
    for got, want in zip(loaded, expected):
        assert isinstance(got.observations, LazyFrames)
        np.testing.assert_array_equal(np.asarray(got.observations), want.observations)
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_array_equal(got.rewards, want.rewards)
        assert (got.terminated, got.truncated) == (want.terminated, want.truncated)


@pytest.fixture
def frames_read(monkeypatch) -> list[int]:
    """Counts the frames read from disk by every LazyFrames."""
    counts: list[int] = []
    read_range, read_points = LazyFrames._read_range, LazyFrames._read_points

    def counted_range(self, first, stop, stride):
        frames = read_range(self, first, stop, stride)
        counts.append(len(frames))
        return frames

    def counted_points(self, steps):
        counts.append(len(steps))
        return read_points(self, steps)

    monkeypatch.setattr(LazyFrames, "_read_range", counted_range)
    monkeypatch.setattr(LazyFrames, "_read_points", counted_points)
    return counts


def test_round_trip_reads_lazily_equal_arrays(tmp_path):
    episodes = image_episodes()
    path = tmp_path / "demos.h5"
    save_episodes(episodes, path)
    assert_same_episodes(load_demonstrations(path), episodes)
    assert_same_episodes(load_demonstrations(str(path)), episodes)


@pytest.mark.parametrize(
    "index",
    [
        3,
        -1,
        slice(2, 9),
        slice(None, None, 3),
        slice(30, 4, -4),
        slice(7, 7),
        np.array([5, 1, 1, -2]),
        (slice(1, 4), 2),
    ],
)
def test_lazy_frames_index_like_numpy(tmp_path, index):
    episodes = image_episodes()
    save_episodes(episodes, tmp_path / "demos.h5")
    lazy = load_demonstrations(tmp_path / "demos.h5")[1].observations
    expected = episodes[1].observations
    assert (lazy.shape, lazy.dtype, len(lazy), lazy.ndim, lazy.size) == (
        expected.shape,
        expected.dtype,
        len(expected),
        expected.ndim,
        expected.size,
    )
    np.testing.assert_array_equal(lazy[index], expected[index])
    with pytest.raises(IndexError):
        lazy[len(expected)]


def test_lazy_frames_pickle_as_a_reference_to_the_file(tmp_path):
    save_episodes(image_episodes(), tmp_path / "demos.h5")
    lazy = load_demonstrations(tmp_path / "demos.h5")[2].observations
    copy = pickle.loads(pickle.dumps(lazy))
    assert isinstance(copy, LazyFrames) and len(pickle.dumps(lazy)) < 1000
    np.testing.assert_array_equal(copy[:], lazy[:])


def test_loading_and_validating_read_a_sample_not_every_frame(tmp_path, frames_read):
    save_episodes(image_episodes(lengths=(200, 300)), tmp_path / "demos.h5")
    episodes = load_demonstrations(tmp_path / "demos.h5")
    assert sum(frames_read) == 0
    validate_episodes(episodes, IMAGE_SPACE, ACTION_SPACE)
    assert LAZY_CHECKED_STEPS == 16 and 0 < sum(frames_read) <= 2 * 16  # of 501 frames


def test_validation_finds_a_bad_frame_in_the_sample(tmp_path):
    episodes = image_episodes(lengths=(64,))
    float_space = spaces.Box(0.0, 1.0, FRAME_SHAPE, np.float32)
    observations = np.zeros((65, *FRAME_SHAPE), np.float32)
    observations[15] = np.nan  # 16 checked steps of 65: a stride of 5, so step 15 is checked
    save_episodes([Episode(observations, episodes[0].actions, episodes[0].rewards, True, False)], tmp_path / "f.h5")
    with pytest.raises(ValueError, match=r"f\.h5.*episode 0 field 'observations' holds NaN or inf at step 15"):
        resolve_demonstrations(tmp_path / "f.h5", None, float_space, ACTION_SPACE)


def test_a_trajectory_buffer_reads_only_its_windows(tmp_path, frames_read):
    episodes = image_episodes(lengths=(300, 250, 280))
    save_episodes(episodes, tmp_path / "demos.h5")
    lazy_buffer = TrajectoryBuffer(segment_len=10, start_at_zero=0.0, seed=3)
    lazy_buffer.add_demonstrations(load_demonstrations(tmp_path / "demos.h5"))
    memory_buffer = TrajectoryBuffer(segment_len=10, start_at_zero=0.0, seed=3)
    memory_buffer.add_demonstrations(episodes)
    for _ in range(3):
        lazy_batch, memory_batch = lazy_buffer.sample(4, n_segments=2), memory_buffer.sample(4, n_segments=2)
        assert lazy_batch.observations.dtype == memory_batch.observations.dtype
        assert lazy_batch.observations.equal(memory_batch.observations)
    assert sum(frames_read) <= 3 * 4 * lazy_batch.observations.shape[1]


def test_writer_copies_block_by_block_and_from_lazy_episodes(tmp_path, monkeypatch):
    monkeypatch.setattr(image_datasets, "WRITE_BLOCK_FRAMES", 3)
    episodes = image_episodes()
    save_episodes(episodes, tmp_path / "first.hdf5")
    with ImageDatasetWriter(tmp_path / "second.h5") as writer:
        writer.add_all(load_demonstrations(tmp_path / "first.hdf5"))
    assert_same_episodes(load_demonstrations(tmp_path / "second.h5"), episodes)


def test_an_interrupted_write_leaves_nothing_at_the_path(tmp_path):
    path = tmp_path / "demos.h5"
    with pytest.raises(RuntimeError, match="interrupted"), ImageDatasetWriter(path) as writer:
        writer.add(image_episodes()[0])
        assert not path.exists()
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_path_at_once_both_finish(tmp_path):
    """Runs of one zoo entry started together record the same demonstrations cache at the same time."""
    episodes = image_episodes()
    path = tmp_path / "demos.h5"
    first, second = ImageDatasetWriter(path), ImageDatasetWriter(path)
    first.add_all(episodes)
    second.add_all(episodes)
    first.close()
    second.close()
    assert_same_episodes(load_demonstrations(path), episodes)
    assert [child.name for child in tmp_path.iterdir()] == ["demos.h5"]


def test_resume_keeps_complete_episodes_and_drops_a_half_written_one(tmp_path):
    episodes = image_episodes(lengths=(5, 40, 17, 9))
    path = tmp_path / "demos.h5"
    writer = ImageDatasetWriter(path, resume=True)
    writer.add_all(episodes[:2])
    writer._file.close()  # the process dies after two complete episodes...
    with h5py.File(writer.partial_path, "r+") as partial:  # ...in the middle of writing the third
        partial["observations"].resize(len(partial["observations"]) + 7, axis=0)
        partial["actions"].resize(len(partial["actions"]) + 3, axis=0)
    resumed = ImageDatasetWriter(path, resume=True)
    assert resumed.n_episodes == 2
    resumed.add_all(episodes[2:])
    resumed.close()
    assert_same_episodes(load_demonstrations(path), episodes)
    assert not writer.partial_path.exists()


def test_writer_refuses_episodes_of_another_shape(tmp_path):
    other = Episode(np.zeros((3, 12, 12, 4), np.uint8), np.zeros(2, np.int64), np.zeros(2), True, False)
    shapes = r"episode 1 has observations of per-step shape \(12, 12, 4\).*\(4, 12, 12\)"
    with pytest.raises(ValueError, match=shapes), ImageDatasetWriter(tmp_path / "demos.h5") as writer:
        writer.add(image_episodes()[0])
        writer.add(other)


def test_missing_and_corrupt_files_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match=r"missing\.h5 does not exist.*save_episodes"):
        load_demonstrations(missing)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(ValueError, match=r"garbage\.h5 is not a readable HDF5 file.*Rewrite it with"):
        load_demonstrations(garbage)
    truncated = tmp_path / "truncated.h5"
    save_episodes(image_episodes(), truncated)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.h5.*Rewrite it with"):
        [np.asarray(episode.observations) for episode in load_demonstrations(truncated)]
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as file:
        file["observations"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"foreign\.h5 is an HDF5 file but not a rate_sb3 episode file"):
        load_demonstrations(foreign)


def test_frames_of_another_shape_than_the_env_name_both_shapes(tmp_path):
    save_episodes(image_episodes(), tmp_path / "demos.h5")
    channels_last = spaces.Box(0, 255, (12, 12, 4), np.uint8)
    with pytest.raises(ValueError, match=r"demos\.h5: episode 0 .*per-step shape \(4, 12, 12\).*expects \(12, 12, 4\)"):
        resolve_demonstrations(tmp_path / "demos.h5", None, channels_last, ACTION_SPACE)


class SmallImageEnv(gym.Env):
    observation_space = IMAGE_SPACE
    action_space = ACTION_SPACE

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(FRAME_SHAPE, np.uint8), {}

    def step(self, action):
        return np.zeros(FRAME_SHAPE, np.uint8), 0.0, True, False, {}


def test_rate_pretrains_from_an_image_dataset_path(tmp_path: Path):
    save_episodes(image_episodes(lengths=(30, 25)), tmp_path / "demos.h5")
    model = RATE(
        "RATEPolicy",
        SmallImageEnv(),
        demonstrations=str(tmp_path / "demos.h5"),
        context_len=5,
        n_segments=2,
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_mem_tokens=2,
        batch_size=4,
        seed=0,
        device="cpu",
    )
    model.pretrain(2, log_interval=2)
    assert isinstance(model.replay_buffer.demonstrations[0].observations, LazyFrames)


def test_lazy_frames_refuse_an_index_numpy_would_not_read_on_the_time_axis(tmp_path):
    save_episodes(image_episodes(), tmp_path / "demos.h5")
    lazy = load_demonstrations(tmp_path / "demos.h5")[0].observations
    with pytest.raises(TypeError, match="index the time axis of LazyFrames by an int, a slice or a 1-D int array"):
        lazy[np.array([0.5, 1.5])]
