"""Minari datasets: reading local ones (never downloading) and writing episodes as one.

The public functions here are re-exported by :mod:`rate_sb3.data`; import them from there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rate_sb3.episode import Episode
from rate_sb3.episode_files import field_array, make_episode


def _import_minari() -> Any:
    try:
        import minari
    except ImportError as error:
        raise ImportError('Loading Minari datasets needs the minari package: pip install "rate_sb3[minari]"') from error
    return minari


def minari_datasets_root() -> Path:
    """The local Minari datasets directory (``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))


def find_minari_data_dir(directory: str | os.PathLike) -> Path | None:
    """
    Return the Minari ``data`` directory of a dataset directory, or ``None`` when it is not one.

    :param directory: The dataset directory (holding ``data/metadata.json``) or its ``data`` directory.
    """
    directory = Path(directory)
    if (directory / "data" / "metadata.json").is_file():
        return directory / "data"
    if (directory / "metadata.json").is_file():
        return directory
    return None


def _open_minari_dataset(id_or_dir: str | os.PathLike) -> Any:
    minari = _import_minari()
    if Path(id_or_dir).is_dir():
        data_dir = find_minari_data_dir(id_or_dir)
        if data_dir is None:
            raise ValueError(
                f"{id_or_dir} is not a Minari dataset directory: it holds neither data/metadata.json "
                "nor metadata.json. Pass the dataset's directory or its id."
            )
        return minari.MinariDataset(str(data_dir))
    dataset_id = str(id_or_dir)
    root = minari_datasets_root()
    if not (root / dataset_id / "data").is_dir():
        fix = (
            f"build it with `python benchmarks/mujoco_datasets.py --env {dataset_id.split('/')[1]}`"
            if dataset_id.startswith("rate_sb3/")  # made by rate_sb3.d4rl's recipe
            else f"run `minari download {dataset_id}` first"
        )
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} is not in the local datasets root {root} "
            f"(set by $MINARI_DATASETS_PATH). rate_sb3 never downloads datasets: {fix} "
            "or point $MINARI_DATASETS_PATH at your datasets."
        )
    return minari.load_dataset(dataset_id, download=False)


def save_minari(
    episodes: Sequence[Episode],
    dataset_id: str,
    env_id: str,
    *,
    algorithm_name: str | None = None,
    author: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
) -> Path:
    """
    Write episodes as a local Minari dataset (``minari.create_dataset_from_buffers``, no jax needed).

    The dataset is written under a temporary root next to its destination and moved into place when complete, so
    an interrupted write never leaves a half-written dataset under its id.

    :param episodes: Episodes to write (at least one).
    :param dataset_id: Minari id, ``namespace/env_name/dataset_name-vN``; it must not exist yet.
    :param env_id: Gymnasium id of the env that generated the episodes (Minari records its spec).
    :param algorithm_name: Recorded in the dataset's metadata: what generated the data.
    :param author: Recorded in the dataset's metadata.
    :param code_permalink: Recorded in the dataset's metadata: the code (and its version) that made the data.
    :param description: Recorded in the dataset's metadata (e.g. the generating policy's checkpoint).
    :param ref_min_score: Return of a random policy, for ``minari.get_normalized_score`` (with ``ref_max_score``).
    :param ref_max_score: Return of an expert policy.
    :return: The dataset's directory.
    """
    minari = _import_minari()
    from minari.data_collector import EpisodeBuffer

    if len(episodes) == 0:
        raise ValueError(f"No episodes to write to Minari dataset {dataset_id!r}.")
    root = minari_datasets_root()
    destination = root / dataset_id
    if destination.exists():
        raise FileExistsError(f"Minari dataset {dataset_id!r} exists at {destination}: delete it or choose a new id.")
    buffers = [
        EpisodeBuffer(
            id=index,
            observations=episode.observations,
            actions=episode.actions,
            rewards=episode.rewards.tolist(),
            terminations=[False] * (episode.length - 1) + [episode.terminated],
            truncations=[False] * (episode.length - 1) + [episode.truncated],
            infos={},
        )
        for index, episode in enumerate(episodes)
    ]
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".minari-", dir=root) as staging:
        previous_root = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = staging
        try:
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env_id,
                algorithm_name=algorithm_name,
                author=author,
                code_permalink=code_permalink,
                description=description,
                ref_min_score=ref_min_score,
                ref_max_score=ref_max_score,
            )
        finally:
            if previous_root is None:
                del os.environ["MINARI_DATASETS_PATH"]
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous_root
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(staging) / dataset_id, destination)
    return destination


def _to_observations(value: Any, source: str) -> np.ndarray | dict[str, np.ndarray]:
    """One array, or a dict of arrays for a (flat) Dict observation space."""
    if isinstance(value, dict) and not any(isinstance(item, (dict, tuple)) for item in value.values()):
        return {key: np.asarray(item) for key, item in value.items()}
    if isinstance(value, (dict, tuple)):
        raise ValueError(
            f"{source}: observations are a nested {type(value).__name__} (a Tuple space, or a Dict inside a Dict), "
            "which RATE does not support: flatten the inner spaces (gymnasium.wrappers.FlattenObservation on them) "
            "and re-record the dataset."
        )
    return np.asarray(value)


def load_minari(id_or_dir: str | os.PathLike) -> list[Episode]:
    """
    Load a local Minari dataset. Datasets are never downloaded.

    :param id_or_dir: A dataset directory (holding ``data/metadata.json``), its ``data`` directory,
        or a dataset id looked up under ``$MINARI_DATASETS_PATH``.
    :return: The dataset's episodes, with terminations and truncations kept apart.
    """
    dataset = _open_minari_dataset(id_or_dir)
    source = f"Minari dataset {id_or_dir}"
    episodes = []
    for index, minari_episode in enumerate(dataset.iterate_episodes()):
        episodes.append(
            make_episode(
                source,
                index,
                observations=_to_observations(minari_episode.observations, source),
                actions=field_array(minari_episode.actions, "actions", source),
                rewards=np.asarray(minari_episode.rewards, dtype=np.float32),
                terminated=bool(len(minari_episode.terminations) and minari_episode.terminations[-1]),
                truncated=bool(len(minari_episode.truncations) and minari_episode.truncations[-1]),
            )
        )
    return episodes
