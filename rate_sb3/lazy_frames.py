"""Frames of an HDF5 dataset read only when indexed: an episode's observations that stay on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

REWRITE_HINT = "Rewrite it with rate_sb3.save_episodes(episodes, path) or ImageDatasetWriter."


def import_h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError('HDF5 image datasets need the h5py package: pip install "rate_sb3[images]"') from error
    return h5py


_open_files: dict[tuple, Any] = {}


def open_for_reading(path: Path) -> Any:
    """One read-only handle per file version and process (h5py handles must not cross a fork)."""
    h5py = import_h5py()
    if not path.is_file():
        raise FileNotFoundError(f"Image dataset {path} does not exist. {REWRITE_HINT}")
    stat = path.stat()
    key = (os.getpid(), str(path.resolve()), stat.st_ino, stat.st_mtime_ns)
    if key not in _open_files:
        try:
            _open_files[key] = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(
                f"{path} is not a readable HDF5 file ({error}). It may be corrupt or half-written. {REWRITE_HINT}"
            ) from error
    return _open_files[key]


class LazyFrames:
    """
    The frames ``start:stop`` of an HDF5 dataset, read only when indexed.

    Indexing the first (time) axis with an int, a slice or an integer array returns a numpy array;
    further indices in a tuple apply to the frames read. ``np.asarray`` reads every frame: avoid it on
    long episodes. Pickles as a reference to the file, which must still exist when unpickled.

    :param path: The HDF5 file.
    :param key: The dataset in the file.
    :param start: First frame.
    :param stop: One past the last frame.
    """

    def __init__(self, path: str | os.PathLike, key: str, start: int, stop: int) -> None:
        self.path, self.key, self.start, self.stop = Path(path), key, int(start), int(stop)
        dataset = self._dataset()
        if not 0 <= self.start <= self.stop <= len(dataset):
            raise ValueError(f"{self.path}: frames {start}:{stop} are outside '{key}' of length {len(dataset)}")
        self.shape = (self.stop - self.start, *dataset.shape[1:])
        self.dtype = dataset.dtype

    def _dataset(self) -> Any:
        """The dataset of the file opened first, so that a file replaced meanwhile is not read by mistake."""
        if getattr(self, "_opened", (None,))[0] != os.getpid():
            self._opened = (os.getpid(), open_for_reading(self.path)[self.key])
        return self._opened[1]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyFrames({str(self.path)!r}, {self.key!r}, {self.start}, {self.stop}, shape={self.shape})"

    def __getitem__(self, index: Any) -> np.ndarray:
        time_index, rest = (index[0], index[1:]) if isinstance(index, tuple) and index else (index, ())
        frames = self._read(time_index)
        return frames[rest] if isinstance(time_index, (int, np.integer)) else frames[(slice(None), *rest)]

    def _read(self, time_index: Any) -> np.ndarray:
        if isinstance(time_index, (int, np.integer)):
            step = int(time_index) + (len(self) if time_index < 0 else 0)
            if not 0 <= step < len(self):
                raise IndexError(f"index {time_index} is out of bounds for {len(self)} frames")
            return self._read_range(step, step + 1, 1)[0]
        if isinstance(time_index, slice):
            first, stop, stride = time_index.indices(len(self))
            if stride > 0:
                return self._read_range(first, max(first, stop), stride)
            steps = np.arange(first, stop, stride)  # a reversed slice: read forward, then flip
            return self._read_range(steps.min(), steps.max() + 1, -stride)[::-1] if len(steps) else self[0:0]
        steps = np.asarray(time_index)
        if steps.ndim != 1 or steps.dtype.kind not in "iu":
            raise TypeError(f"index the time axis of LazyFrames by an int, a slice or a 1-D int array: {time_index!r}")
        steps = np.where(steps < 0, steps + len(self), steps)
        if np.any((steps < 0) | (steps >= len(self))):
            raise IndexError(f"indices {time_index} are out of bounds for {len(self)} frames")
        unique, positions = np.unique(steps, return_inverse=True)
        return self._read_points(unique)[positions]

    def _read_range(self, first: int, stop: int, stride: int) -> np.ndarray:
        try:
            return self._dataset()[self.start + first : self.start + stop : stride]
        except OSError as error:
            raise self._read_error(f"{first}:{stop}", error) from error

    def _read_points(self, steps: np.ndarray) -> np.ndarray:
        try:
            return self._dataset()[self.start + steps]
        except OSError as error:
            raise self._read_error(str(list(steps)), error) from error

    def _read_error(self, frames: str, error: OSError) -> ValueError:
        return ValueError(
            f"{self.path}: reading frames {frames} of '{self.key}' failed ({error}); the file is corrupt. "
            f"{REWRITE_HINT}"
        )

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype, copy=False)

    def __getstate__(self) -> dict:
        return {"path": self.path, "key": self.key, "start": self.start, "stop": self.stop}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)
