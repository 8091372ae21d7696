"""Readers and writers for demonstration files: our ``.npz`` format and imitation datasets, and loading any source
(Minari datasets are read and written by :mod:`rate_sb3.minari_format`).

The public functions here are re-exported by :mod:`rate_sb3.data`; import them from there.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rate_sb3.episode import Episode
from rate_sb3.episode_files import (
    RECOLLECT_HINT,
    check_flat_episode_arrays,
    field_array,
    make_episode,
    new_file_mode,
)
from rate_sb3.image_datasets import ImageDatasetWriter, is_image_dataset_path, load_image_dataset
from rate_sb3.minari_format import find_minari_data_dir, load_minari
from rate_sb3.observations import concatenate_observations, slice_observations

OBSERVATION_KEYS_ARRAY = "observation_keys"


# --------------------------------------------------------------------------------------------------------
# Our .npz format
# --------------------------------------------------------------------------------------------------------


def save_episodes(episodes: Sequence[Episode], path: str | os.PathLike) -> None:
    """
    Save episodes to a single ``.npz`` file (flat arrays concatenated over episodes), or, for a path ending
    in ``.h5`` / ``.hdf5``, to a compressed HDF5 file read lazily (:mod:`rate_sb3.image_datasets`; for images).

    The file is written to a temporary file in the same directory and then renamed,
    so an interrupted save never leaves a half-written file at ``path``.

    :param episodes: Episodes to save (at least one).
    :param path: Destination file; parent directories are created.
    """
    if len(episodes) == 0:
        raise ValueError(f"No episodes to save to {path}.")
    if is_image_dataset_path(path):
        with ImageDatasetWriter(path) as writer:
            writer.add_all(episodes)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        **_observation_arrays(concatenate_observations([episode.observations for episode in episodes])),
        "actions": np.concatenate([episode.actions for episode in episodes]),
        "rewards": np.concatenate([episode.rewards for episode in episodes]).astype(np.float32),
        "episode_lengths": np.array([episode.length for episode in episodes], dtype=np.int64),
        "terminated": np.array([episode.terminated for episode in episodes], dtype=bool),
        "truncated": np.array([episode.truncated for episode in episodes], dtype=bool),
    }
    arrays["format_version"] = np.array(2 if OBSERVATION_KEYS_ARRAY in arrays else 1, dtype=np.int64)
    file_descriptor, temporary_path = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(file_descriptor, "wb") as file:
            np.savez(file, **arrays)
        os.chmod(temporary_path, new_file_mode())  # mkstemp creates 0o600 files
        os.replace(temporary_path, path)
    except BaseException:
        Path(temporary_path).unlink(missing_ok=True)
        raise


def _observation_arrays(observations: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``.npz`` arrays of the observations: one array, or the keys and an array per key of a dict."""
    if not isinstance(observations, dict):
        return {"observations": observations}
    keyed = {f"observations.{key}": values for key, values in observations.items()}
    return {OBSERVATION_KEYS_ARRAY: np.array(list(observations)), **keyed}


def _join_observations(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Gather a file's per-key observation arrays into one dict under ``"observations"``."""
    if OBSERVATION_KEYS_ARRAY not in arrays:
        return
    keys = [str(key) for key in arrays.pop(OBSERVATION_KEYS_ARRAY)]
    missing = [f"observations.{key}" for key in keys if f"observations.{key}" not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the observation arrays {missing}. {RECOLLECT_HINT}")
    arrays["observations"] = {key: arrays.pop(f"observations.{key}") for key in keys}


def _read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, turning any low-level failure into a ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"Demonstration file {path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as npz_file:
            return {key: npz_file[key] for key in npz_file.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as error:
        raise ValueError(
            f"{path} is not a readable .npz demonstration file ({type(error).__name__}: {error}). "
            f"It may be corrupt or half-written. {RECOLLECT_HINT}"
        ) from error


def load_episodes_npz(path: str | os.PathLike) -> list[Episode]:
    """
    Load episodes written by :func:`save_episodes`.

    :param path: The ``.npz`` file.
    :return: The episodes, in the order they were saved.
    """
    path = Path(path)
    arrays = _read_npz_arrays(path)
    _join_observations(arrays, path)
    check_flat_episode_arrays(arrays, path)
    lengths = arrays["episode_lengths"].astype(np.int64)
    step_starts = np.concatenate([[0], np.cumsum(lengths)])
    episodes = []
    for index, length in enumerate(lengths):
        step_start, obs_start = step_starts[index], step_starts[index] + index
        episodes.append(
            Episode(
                observations=slice_observations(arrays["observations"], slice(obs_start, obs_start + length + 1)),
                actions=arrays["actions"][step_start : step_start + length],
                rewards=arrays["rewards"][step_start : step_start + length],
                terminated=bool(arrays["terminated"][index]),
                truncated=bool(arrays["truncated"][index]),
            )
        )
    return episodes


# --------------------------------------------------------------------------------------------------------
# imitation (HuggingFace datasets saved with save_to_disk)
# --------------------------------------------------------------------------------------------------------


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            'Loading imitation-format demonstrations needs the datasets package: pip install "rate_sb3[imitation]"'
        ) from error
    return datasets


def load_imitation(directory: str | os.PathLike) -> list[Episode]:
    """
    Load trajectories saved in the imitation library's format (a ``datasets.Dataset`` saved to disk
    with the columns ``obs``, ``acts``, ``infos``, ``terminal`` and ``rews``).

    imitation's ``terminal`` flag does not tell termination from truncation: ``terminal=True`` is read as
    ``terminated=True`` (the return-to-go after the last step is zero) and ``terminal=False``
    (a trajectory cut short) as ``truncated=True``.

    :param directory: The directory written by ``Dataset.save_to_disk``.
    :return: The trajectories as episodes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"imitation dataset directory {directory} does not exist.")
    datasets = _import_datasets()
    dataset = datasets.load_from_disk(str(directory))
    missing = [column for column in ("obs", "acts", "terminal") if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{directory} lacks the columns {missing} of an imitation trajectory dataset "
            f"(it has {dataset.column_names})."
        )
    if "rews" not in dataset.column_names:
        raise ValueError(
            f"{directory} holds trajectories without rewards (no 'rews' column). RATE needs rewards for "
            "return-to-go: save TrajectoryWithRew objects, or re-collect with rate_sb3.collect_episodes."
        )
    source = f"imitation dataset {directory}"
    episodes = []
    for index, row in enumerate(dataset.with_format("numpy")):
        terminal = bool(row["terminal"])
        episodes.append(
            make_episode(
                source,
                index,
                observations=field_array(row["obs"], "observations", source),
                actions=field_array(row["acts"], "actions", source),
                rewards=np.asarray(row["rews"], dtype=np.float32),
                terminated=terminal,
                truncated=not terminal,
            )
        )
    return episodes


# --------------------------------------------------------------------------------------------------------
# Loading any source
# --------------------------------------------------------------------------------------------------------


def _looks_like_file_path(text: str) -> bool:
    path = Path(text)
    return path.is_absolute() or text.startswith((".", "~")) or path.suffix[1:2].isalpha()


def _load_path(source: str | os.PathLike) -> list[Episode]:
    path = Path(source).expanduser()
    if is_image_dataset_path(path):
        return load_image_dataset(path)
    if path.suffix == ".npz" or path.is_file():
        return load_episodes_npz(path)
    if path.is_dir():
        if (path / "dataset_info.json").is_file():
            return load_imitation(path)
        if find_minari_data_dir(path) is not None:
            return load_minari(path)
        raise ValueError(
            f"Cannot tell the demonstration format of directory {path}: it is neither an imitation dataset "
            "(dataset_info.json) nor a Minari dataset (data/metadata.json)."
        )
    text = str(source)
    if isinstance(source, str) and not _looks_like_file_path(text) and ("/" in text or "-v" in text):
        return load_minari(text)
    raise FileNotFoundError(
        f"Demonstration source {text} does not exist (it is not a file, a directory or a Minari dataset id)."
    )


def load_demonstrations(source: str | os.PathLike | Sequence[Episode]) -> list[Episode]:
    """
    Load demonstrations from any supported source.

    :param source: A list of :class:`Episode`; a ``.npz`` file written by :func:`save_episodes`; an ``.h5`` /
        ``.hdf5`` image dataset written by :func:`save_episodes` (observations read lazily);
        an imitation dataset directory (holding ``dataset_info.json``); a Minari dataset directory
        (holding ``data/metadata.json`` or ``metadata.json``); or a local Minari dataset id
        such as ``"D4RL/door/human-v2"``.
    :return: The episodes (never empty).
    """
    if isinstance(source, (list, tuple)):
        for index, episode in enumerate(source):
            if not isinstance(episode, Episode):
                raise TypeError(f"Demonstration {index} is a {type(episode).__name__}, not an Episode.")
        episodes = list(source)
    else:
        episodes = _load_path(source)
    if not episodes:
        raise ValueError(f"no episodes in {source}")
    return episodes
