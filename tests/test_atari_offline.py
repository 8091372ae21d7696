"""The Atari offline offline (benchmarks/atari_offline.py): BC sees the frames the dataset stacked, the summary holds
the contract, and a missing dataset names the command that builds it. No test learns a game."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from rate_sb3 import Episode
from rate_sb3.atari_replay import FRAME_STACK, stack_frames
from rate_sb3.image_datasets import ImageDatasetWriter, load_image_dataset

pytest.importorskip("h5py", reason="pip install 'rate_sb3[images]'")


@pytest.fixture(scope="module")
def offline(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("atari_offline")


@pytest.fixture
def games(tmp_path: Path) -> list[Episode]:
    """Two games of distinct 5x5 frames stacked as the learner saw them, the second truncated, read back from disk."""
    rng = np.random.default_rng(0)
    path = tmp_path / "replay.h5"
    with ImageDatasetWriter(path) as writer:
        for length, truncated in ((6, False), (3, True)):
            frames = rng.integers(1, 256, (length + 1, 5, 5), dtype=np.uint8)
            actions, rewards = rng.integers(6, size=length), rng.normal(size=length).astype(np.float32)
            writer.add(Episode(stack_frames(frames, FRAME_STACK), actions, rewards, not truncated, truncated))
    return load_image_dataset(path)


def test_newest_frames_stack_again_into_the_datasets_observations(offline: ModuleType, games: list) -> None:
    frames = offline.newest_frames(games)
    assert frames.shape == (6 + 3, 1, 5, 5)
    starts = np.cumsum([0, *(game.length for game in games)])
    for game, start in zip(games, starts):
        restacked = stack_frames(frames[start : start + game.length, 0], FRAME_STACK)
        np.testing.assert_array_equal(restacked, game.observations[:-1])


def test_bc_is_trained_on_every_step_as_the_dataset_stacked_it(offline: ModuleType, games: list) -> None:
    d3rlpy = pytest.importorskip("d3rlpy", reason="pip install 'rate_sb3[mujoco]' (d3rlpy's BC)")
    picker = d3rlpy.dataset.FrameStackTransitionPicker(n_frames=FRAME_STACK)
    dataset = offline.d3rlpy_dataset(games, offline.newest_frames(games), transition_picker=picker)
    assert [episode.size() for episode in dataset.episodes] == [game.length for game in games]
    for episode, game in zip(dataset.episodes, games):
        assert episode.terminated == game.terminated
        # d3rlpy samples every step but a truncated game's last, which has no next observation
        assert episode.transition_count == game.length - game.truncated
        for step in range(episode.transition_count):
            transition = picker(episode, step)
            np.testing.assert_array_equal(transition.observation, game.observations[step])
            assert transition.action == game.actions[step] and transition.reward == game.rewards[step]


def test_summary_holds_the_contract_with_human_normalised_scores(offline: ModuleType) -> None:
    scores = {
        "pong": {"rate": [14.6, 14.6, -20.7], "dt": [-20.7, -20.7], "bc": [0.0, 1.0, 2.0]},
        "breakout": {"rate": [10.0], "dt": [20.0], "bc": []},
        "qbert": {"rate": [], "dt": [], "bc": []},
    }
    summary = offline.summarise(scores, {"pong": 1000, "breakout": 2000})
    assert set(summary["games"]) == {"Pong", "Breakout"}  # a game with no run is left out
    pong = summary["games"]["Pong"]
    assert pong["rate"] == pytest.approx(8.5 / 3) and pong["dt"] == -20.7 and pong["bc"] == 1.0
    assert pong["n_seeds"] == 2 and pong["transitions"] == 1000  # seeds that every model ran
    assert pong["human_normalized"]["dt"] == pytest.approx(0.0)
    assert pong["human_normalized"]["rate"] == pytest.approx(100 * (8.5 / 3 + 20.7) / 35.3)
    assert pong["sem"]["bc"] == pytest.approx(1 / np.sqrt(3)) and pong["paper"] == {"rate": 18.8, "dt": 17.1}
    assert "bc" not in summary["games"]["Breakout"]
    assert summary["rate_at_least_dt"] == {"games": 1, "of": 2}
    table = offline.markdown_table(summary)
    assert "| Pong | 2.8 +- 11.8 | -20.7 +- 0.0 | 1.0 +- 0.6 |" in table and "| Breakout | 10.0 | 20.0 | - |" in table


def test_a_missing_dataset_stops_the_run_naming_the_command_that_builds_it(
    offline: ModuleType, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(offline, "REPO", tmp_path)  # where no dataset was built
    with pytest.raises(SystemExit, match=r"python benchmarks/atari_datasets.py --game breakout\b"):
        offline.main(["--games", "breakout", "--seeds", "0"])


def test_a_summary_of_nothing_writes_no_file(offline: ModuleType, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(offline, "REPO", tmp_path)
    monkeypatch.setattr(offline, "RESULTS", tmp_path / "results")
    with pytest.raises(SystemExit, match="no run of pong, breakout exists yet"):
        offline.main(["--games", "pong", "breakout", "--summary-only"])
    assert not (tmp_path / "results").exists()
