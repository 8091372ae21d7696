"""Episode files for image demonstrations: compressed HDF5 written in chunks and read lazily.

A dataset of images does not fit in RAM (200k Atari frames are 5.6 GB as uint8), so observations are
written in gzip-compressed chunks of a few frames and read back only when sliced: an :class:`Episode`
loaded from such a file holds :class:`LazyFrames`, which behave like a read-only numpy array for
``len()``, ``.shape``, ``.dtype`` and indexing along the time axis, and read (and decompress) just the
frames asked for. Actions, rewards and episode ends are small and are read into memory.

The layout mirrors our ``.npz`` format: ``observations`` (all episodes' T + 1 frames concatenated),
``actions``, ``rewards``, ``episode_lengths``, ``terminated``, ``truncated``, and the root attributes
``rate_sb3_format`` and ``format_version``, and optionally ``metadata`` (a JSON object: who made the dataset, how).
h5py comes with ``pip install "rate_sb3[images]"``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rate_sb3.episode import Episode
from rate_sb3.episode_files import check_flat_episode_arrays, new_file_mode
from rate_sb3.lazy_frames import REWRITE_HINT, LazyFrames, import_h5py, open_for_reading

IMAGE_DATASET_SUFFIXES = (".h5", ".hdf5")
FORMAT_NAME = "rate_sb3 episodes"
FORMAT_VERSION = 1
# Measured by benchmarks/image_memory.py --compare-formats (see benchmarks/RESULTS.md): chunks of a few frames
# read a 90-frame window as fast as larger ones and compress almost as well; gzip level 4 is ~1.3x smaller
# than level 1 at the same read speed; lzf is 2x larger and slower to read.
CHUNK_FRAMES = 4
COMPRESSION_LEVEL = 4
# Frames copied to the file per write, so an episode that is itself read lazily is never in memory whole.
WRITE_BLOCK_FRAMES = 256


def is_image_dataset_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an HDF5 episode file (by its suffix)."""
    return Path(path).suffix.lower() in IMAGE_DATASET_SUFFIXES


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


def load_image_dataset(path: str | os.PathLike) -> list[Episode]:
    """
    Open an episode file written by :class:`ImageDatasetWriter`; observations stay on disk (:class:`LazyFrames`).

    :param path: The ``.h5`` / ``.hdf5`` file.
    :return: The episodes, in the order they were written.
    """
    path = Path(path)
    file = open_for_reading(path)
    if file.attrs.get("rate_sb3_format") != FORMAT_NAME:
        raise ValueError(
            f"{path} is an HDF5 file but not a rate_sb3 episode file (no rate_sb3_format attribute). "
            f"Minari datasets are loaded from their directory. {REWRITE_HINT}"
        )
    arrays = {key: file[key] for key in ("observations", "actions", "rewards") if key in file}
    arrays.update({key: file[key][()] for key in ("episode_lengths", "terminated", "truncated") if key in file})
    if "format_version" in file.attrs:
        arrays["format_version"] = np.asarray(file.attrs["format_version"])
    check_flat_episode_arrays(arrays, path, max_version=FORMAT_VERSION)
    actions, rewards = arrays["actions"][()], arrays["rewards"][()]
    episodes, step = [], 0
    for index, length in enumerate(arrays["episode_lengths"].astype(np.int64)):
        frame = step + index  # each earlier episode has one frame more than steps
        observations = LazyFrames(path, "observations", frame, frame + length + 1)
        episodes.append(
            Episode(
                observations=observations,
                actions=actions[step : step + length],
                rewards=rewards[step : step + length],
                terminated=bool(arrays["terminated"][index]),
                truncated=bool(arrays["truncated"][index]),
            )
        )
        step += length
    return episodes


def load_image_dataset_metadata(path: str | os.PathLike) -> dict:
    """
    The metadata stored with :meth:`ImageDatasetWriter.set_metadata` (an empty dict if there is none).

    :param path: The ``.h5`` / ``.hdf5`` file.
    :return: The metadata object.
    """
    text = open_for_reading(Path(path)).attrs.get("metadata")
    return json.loads(text) if text is not None else {}


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


class ImageDatasetWriter:
    """
    Write episodes one at a time to a compressed HDF5 file, never holding more than one block of frames.

    The file is written under a temporary name of its own (so that runs writing the same cache at once do not
    collide: the last to finish replaces the file) and renamed to ``path`` by :meth:`close`, so ``path`` is
    never half-written. Use it as a context manager (an exception discards the partial file), or call
    :meth:`add` and then :meth:`close`.

    :param path: Destination ``.h5`` / ``.hdf5`` file; parent directories are created.
    :param resume: Write to ``<path>.partial`` and continue the one an interrupted resumable writer left
        there (its complete episodes are kept; :attr:`n_episodes` says how many) instead of starting over.
    :param compression_level: gzip level of the observations (0-9).
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False, compression_level: int = COMPRESSION_LEVEL):
        h5py = import_h5py()
        self.path = Path(path)
        if not is_image_dataset_path(self.path):
            raise ValueError(f"image dataset path {self.path} must end in one of {IMAGE_DATASET_SUFFIXES}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            self.partial_path = self.path.with_name(self.path.name + ".partial")
        else:
            descriptor, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
            os.close(descriptor)
            self.partial_path = Path(name)
        self.compression_level = compression_level
        self._file = None
        if resume and self.partial_path.is_file():
            try:
                self._file = h5py.File(self.partial_path, "r+")
                self._drop_incomplete_episode()
            except (OSError, KeyError):  # killed in the middle of a write: start over
                if self._file is not None:
                    self._file.close()
                self._file = None
        if self._file is None:
            self._file = h5py.File(self.partial_path, "w")
            self._file.attrs.update(rate_sb3_format=FORMAT_NAME, format_version=FORMAT_VERSION)

    @property
    def n_episodes(self) -> int:
        """Complete episodes in the file so far."""
        return len(self._file["episode_lengths"]) if "episode_lengths" in self._file else 0

    def _drop_incomplete_episode(self) -> None:
        """Cut the per-step datasets back to the episodes whose end was recorded."""
        if "episode_lengths" not in self._file:
            for key in list(self._file):
                del self._file[key]
            return
        n_episodes, n_steps = self.n_episodes, int(self._file["episode_lengths"][()].sum())
        lengths = {"observations": n_steps + n_episodes, "actions": n_steps, "rewards": n_steps}
        lengths.update(terminated=n_episodes, truncated=n_episodes)
        for key, length in lengths.items():
            self._file[key].resize(length, axis=0)

    def add(self, episode: Episode) -> None:
        """Append one episode (its observations are copied a block of frames at a time)."""
        if "observations" not in self._file:
            self._create_datasets(episode)
        self._check_matches(episode)
        observations = episode.observations
        for first in range(0, len(observations), WRITE_BLOCK_FRAMES):
            self._append("observations", observations[first : first + WRITE_BLOCK_FRAMES])
        self._append("actions", episode.actions)
        self._append("rewards", episode.rewards.astype(np.float32))
        self._append("terminated", np.array([episode.terminated]))
        self._append("truncated", np.array([episode.truncated]))
        self._append("episode_lengths", np.array([episode.length], dtype=np.int64))  # last: marks it complete
        self._file.flush()

    def set_metadata(self, metadata: dict) -> None:
        """
        Store ``metadata`` with the file (read back by :func:`load_image_dataset_metadata`), replacing any earlier.

        :param metadata: A JSON-serialisable object: how the dataset was made, by what, from what.
        """
        self._file.attrs["metadata"] = json.dumps(metadata)

    def add_all(self, episodes: Iterable[Episode]) -> None:
        for episode in episodes:
            self.add(episode)

    def _create_datasets(self, episode: Episode) -> None:
        observations = episode.observations
        self._file.create_dataset(
            "observations",
            shape=(0, *observations.shape[1:]),
            maxshape=(None, *observations.shape[1:]),
            dtype=observations.dtype,
            chunks=(CHUNK_FRAMES, *observations.shape[1:]),
            compression="gzip",
            compression_opts=self.compression_level,
        )
        small = {
            "actions": episode.actions,
            "rewards": np.zeros(0, np.float32),
            "terminated": np.zeros(0, bool),
            "truncated": np.zeros(0, bool),
            "episode_lengths": np.zeros(0, np.int64),
        }
        for key, like in small.items():
            shape = like.shape[1:]
            self._file.create_dataset(key, (0, *shape), like.dtype, maxshape=(None, *shape), chunks=(4096, *shape))

    def _check_matches(self, episode: Episode) -> None:
        for key in ("observations", "actions"):
            dataset, values = self._file[key], getattr(episode, key)
            if values.shape[1:] != dataset.shape[1:] or values.dtype != dataset.dtype:
                raise ValueError(
                    f"{self.path}: episode {self.n_episodes} has {key} of per-step shape {values.shape[1:]} and "
                    f"dtype {values.dtype}, but the file holds {dataset.shape[1:]} {dataset.dtype}: one dataset "
                    "holds episodes of one env."
                )

    def _append(self, key: str, values: np.ndarray) -> None:
        dataset = self._file[key]
        end = len(dataset)
        dataset.resize(end + len(values), axis=0)
        dataset[end:] = values

    def close(self) -> None:
        """Finish the file and move it to :attr:`path`."""
        if self._file is None:
            return
        n_episodes = self.n_episodes
        self._file.close()
        self._file = None
        if n_episodes == 0:
            self.partial_path.unlink()
            raise ValueError(f"No episodes to save to {self.path}.")
        os.chmod(self.partial_path, new_file_mode())
        os.replace(self.partial_path, self.path)

    def abort(self) -> None:
        """Discard the partial file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> ImageDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
