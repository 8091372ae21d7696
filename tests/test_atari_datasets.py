"""DQN-replay-style Atari datasets (rate_sb3.atari_replay, benchmarks/atari_datasets.py): the learner's games recorded
as it saw them, the equal slice of every stage, resuming a cut run, the metadata; the zoo entries that read the
datasets, and datasets whose frames do not match the env's wrapper stack (refused before training, both shapes named).
No test learns a game: the learner takes a few hundred steps on 100-step games (--quick)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import LinearSchedule
from test_image_datasets import assert_same_episodes
from test_zoo import REPO, TINY_RATE

from rate_sb3 import RATE, Episode, save_episodes
from rate_sb3.atari_replay import (
    ATARI_GAMES,
    ClipRewardKeepRaw,
    EpisodeRecorder,
    build_command,
    stack_frames,
    stage_slices,
)
from rate_sb3.data import validate_episodes
from rate_sb3.image_datasets import ImageDatasetWriter, load_image_dataset, load_image_dataset_metadata
from rate_sb3.zoo import register
from rate_sb3.zoo_checks import ZooConfigError, check_hyperparams, check_rate_entry, load_config

pytest.importorskip("ale_py", reason="pip install 'rate_sb3[atari]'")
pytest.importorskip("cv2", reason="pip install 'rate_sb3[atari]'")
pytest.importorskip("h5py", reason="pip install 'rate_sb3[images]'")

FRAMES = spaces.Box(0, 255, (4, 84, 84), np.uint8)  # the env's: AtariWrapper, 4 stacked frames, channel first


@pytest.fixture(scope="module")
def builder(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("atari_datasets")


@pytest.fixture(scope="module")
def quick_run(builder: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builder's --quick path end to end: PPO takes 2 stages of 256 steps on 2 envs, then the dataset."""
    data = tmp_path_factory.mktemp("data")
    (path,) = builder.main(["--game", "pong", "--quick", "--data-dir", str(data)])
    return path


def frame_episode(shape: tuple[int, ...], length: int = 3) -> Episode:
    observations = np.zeros((length + 1, *shape), np.uint8)
    return Episode(observations, np.zeros(length, np.int64), np.zeros(length, np.float32), True, False)


# ------------------------------------------------------------------------------------------------ the recipe
def test_learner_hyperparameters_are_the_rl_zoos(builder: ModuleType) -> None:
    import rl_zoo3

    zoo = yaml.safe_load((Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo.yml").read_text())["atari"]
    assert zoo["frame_stack"] == 4 and zoo["n_envs"] == builder.N_ENVS and zoo["policy"] == "CnnPolicy"
    for key, value in builder.PPO_KWARGS.items():
        if isinstance(value, LinearSchedule):  # the zoo's lin_X: X times the progress remaining
            assert float(zoo[key].removeprefix("lin_")) == value.start and value(0.0) == 0.0
        else:
            assert zoo[key] == value, key


def test_stacks_are_rebuilt_as_vec_frame_stack_gives_them() -> None:
    frames = np.arange(1, 6, dtype=np.uint8)[:, None, None] * np.ones((5, 2, 3), np.uint8)
    stacks = stack_frames(frames, 4)
    assert stacks.shape == (5, 4, 2, 3)
    np.testing.assert_array_equal(stacks[0, :, 0, 0], [0, 0, 0, 1])  # zeros before the first frame, newest last
    np.testing.assert_array_equal(stacks[4, :, 0, 0], [2, 3, 4, 5])


def test_the_learner_is_taught_clipped_rewards_and_the_raw_score_is_kept() -> None:
    class Scoring(gym.Env):
        observation_space, action_space = spaces.Discrete(1), spaces.Discrete(1)

        def reset(self, *, seed=None, options=None):
            return 0, {}

        def step(self, action):
            return 0, 25.0, False, False, {}

    _, reward, _, _, info = ClipRewardKeepRaw(Scoring()).step(0)
    assert reward == 1.0 and info["raw_reward"] == 25.0


def test_equal_slices_of_every_stage_within_the_budget() -> None:
    lengths = [[5, 6, 7], [10, 20], [1, 2, 3, 4]]
    assert stage_slices(lengths, 100) == [range(1, 3), range(0, 2), range(2, 4)]  # the last 2: at most 2 in stage 1
    assert stage_slices(lengths, 33) == [range(2, 3), range(1, 2), range(3, 4)]  # 2 each would take 7+6+20+10+4+3
    assert stage_slices(lengths, 31) == [range(2, 3), range(1, 2), range(3, 4)]  # the last of each: 7 + 20 + 4
    with pytest.raises(ValueError, match=r"budget of 30 transitions cannot take one episode from each of the 3 stages"):
        stage_slices(lengths, 30)
    with pytest.raises(ValueError, match=r"stages \[1\] recorded no finished episode"):
        stage_slices([[5], []], 100)


def test_recorded_games_are_the_frames_the_learner_saw(builder: ModuleType, tmp_path: Path) -> None:
    class Spy(BaseCallback):
        """The stacks the learner observed, per finished game, in the order the recorder writes them."""

        def _on_training_start(self) -> None:
            self.current, self.games = [[stack.copy()] for stack in self.model._last_obs], []

        def _on_step(self) -> bool:
            for index, info in enumerate(self.locals["infos"]):
                if self.locals["dones"][index]:
                    self.games.append(np.stack([*self.current[index], info["terminal_observation"]]))
                    self.current[index] = []
                self.current[index].append(self.locals["new_obs"][index].copy())
            return True

    args = builder.parse_args(["--game", "pong", "--quick"])
    model = builder.StagedPPO(
        "CnnPolicy", builder.learner_env("pong", args, seed=0), seed=0, **builder.ppo_kwargs(args)
    )
    model.learner_steps = 256
    recorder, spy = EpisodeRecorder(), Spy()
    with ImageDatasetWriter(tmp_path / "games.h5") as recorder.writer:
        model.learn(256, callback=[recorder, spy])
    episodes = load_image_dataset(tmp_path / "games.h5")
    assert len(episodes) == len(spy.games) >= 2
    for episode, seen in zip(episodes, spy.games):
        np.testing.assert_array_equal(episode.observations[:], seen)
        assert episode.truncated and episode.observations.dtype == np.uint8  # --quick cuts games at 400 frames


# ------------------------------------------------------------------------------------------------ the builder
def test_quick_dataset_is_an_equal_slice_of_each_stage_with_its_metadata(quick_run: Path) -> None:
    directory = quick_run.parent
    shards = [load_image_dataset(directory / "stages" / f"stage_{stage:03d}.h5") for stage in range(2)]
    dataset, metadata = load_image_dataset(quick_run), load_image_dataset_metadata(quick_run)
    k = metadata["episodes_per_stage"]
    assert k >= 1 and len(dataset) == 2 * k
    assert_same_episodes(dataset, shards[0][-k:] + shards[1][-k:])  # the last k games of each stage, stage by stage
    assert metadata["transitions"] == sum(episode.length for episode in dataset) <= metadata["budget"] == 300
    assert [stage["env_steps"] for stage in metadata["learning_stages"]] == [[0, 256], [256, 512]]
    final = directory / metadata["learning_stages"][-1]["checkpoint"]
    assert metadata["checkpoint_sha256"] == metadata["learning_stages"][-1]["sha256"] == sha256_of(final)
    assert not (directory / metadata["learning_stages"][0]["checkpoint"]).exists()  # only the last one is kept
    assert metadata["env"]["atari_wrapper"] == {"terminal_on_life_loss": False, "clip_reward": False}
    assert metadata["learner"]["learning_rate"] == "lin_0.00025"
    assert [stage["episodes_recorded"] for stage in metadata["stage_slices"]] == [len(shard) for shard in shards]
    first = dataset[0].observations[:2]
    assert first.shape == (2, 4, 84, 84) and not first[0, :3].any() and first[0, 3].any()
    np.testing.assert_array_equal(first[1, :3], first[0, 1:])


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cut_run_resumes_after_its_last_finished_stage(builder: ModuleType, tmp_path: Path, monkeypatch) -> None:
    learn_stage, learned = builder.learn_stage, []

    def cut_in_stage_one(model, recorder, directory, stage, args):
        learned.append(stage)
        if stage == 1 and len(learned) == 2:  # cut in the middle of stage 1's learning

            def cut(*args, **kwargs):
                raise KeyboardInterrupt

            model.learn = cut
        return learn_stage(model, recorder, directory, stage, args)

    monkeypatch.setattr(builder, "learn_stage", cut_in_stage_one)
    quick = ["--game", "pong", "--quick", "--data-dir", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        builder.main(quick)
    directory = tmp_path / "atari_quick" / "pong"
    assert [stage["stage"] for stage in builder.read_json(directory / "progress.json", {})["stages"]] == [0]
    assert sorted(path.name for path in (directory / "stages").iterdir()) == ["stage_000.h5"]  # no stage_001 .partial
    first_shard = (directory / "stages" / "stage_000.h5").stat().st_mtime_ns

    (path,) = builder.main(quick)  # learns stage 1 only, from stage 0's checkpoint
    assert learned == [0, 1, 1] and (directory / "stages" / "stage_000.h5").stat().st_mtime_ns == first_shard
    written = path.stat().st_mtime_ns
    builder.main(quick)  # nothing left to do
    assert learned == [0, 1, 1] and path.stat().st_mtime_ns == written
    (other,) = builder.main([*quick, "--transitions", "250"])  # another budget: sliced, not learned again
    assert learned == [0, 1, 1] and other.name == "replay_250.h5"
    with pytest.raises(SystemExit, match=r"was written with .*'seed': 0.* not .*'seed': 1.*remove"):
        builder.main([*quick, "--seed", "1"])


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            (3, 84, 84),
            r"\(3, 84, 84\).*\(4, 84, 84\).*3 stacked grayscale frames or 1 stacked RGB frame in the "
            r"dataset, 4 stacked grayscale frames in the env.*frame_stack",
        ),
        ((12, 84, 84), r"\(12, 84, 84\).*\(4, 84, 84\).*12 stacked grayscale frames or 4 stacked RGB frames"),
        (
            (84, 84, 4),
            r"\(84, 84, 4\).*\(4, 84, 84\).*channel-last, the env.s channel-first.*np.moveaxis\(frames, -1, 1\)",
        ),
        ((4, 64, 64), r"\(4, 64, 64\).*\(4, 84, 84\).*64x64 pixels, 84x84 in the env.*atari_datasets.py"),
        ((84, 84), r"\(84, 84\).*\(4, 84, 84\).*env's frames are channel-first \(channels, height, width\) images"),
    ],
)
def test_frames_of_another_wrapper_stack_are_refused_naming_both_shapes(shape, expected) -> None:
    with pytest.raises(ValueError, match=expected):
        validate_episodes([frame_episode(shape)], FRAMES, spaces.Discrete(6), source="replay.h5")


def test_channel_first_frames_for_a_channel_last_env_are_refused_with_the_transpose() -> None:
    channel_last = spaces.Box(0, 255, (84, 84, 4), np.uint8)
    with pytest.raises(ValueError, match=r"channel-first, the env's channel-last.*np.moveaxis\(frames, 1, -1\)"):
        validate_episodes([frame_episode((4, 84, 84))], channel_last, spaces.Discrete(6))
    with pytest.raises(
        ValueError, match=r"3 stacked grayscale frames or 1 stacked RGB frame in the dataset, 4 stacked"
    ):
        validate_episodes([frame_episode((84, 84, 3))], channel_last, spaces.Discrete(6))


def test_rate_refuses_a_dataset_of_three_stacked_frames_before_training(tmp_path: Path) -> None:
    from test_atari import pong_vec_env

    save_episodes([frame_episode((3, 84, 84))], tmp_path / "three.h5")
    model = RATE("RATEPolicy", pong_vec_env(), demonstrations=str(tmp_path / "three.h5"), online=False, **TINY_RATE)
    with pytest.raises(ValueError, match=r"three.h5: episode 0 .*\(3, 84, 84\).*\(4, 84, 84\).*frame_stack"):
        model.pretrain(1)


def test_a_zoo_entry_refuses_a_dataset_of_another_stack_before_training(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_episodes([frame_episode((84, 84, 4))], tmp_path / "channel_last.h5")
    entry = load_config(str(REPO / "hyperparams" / "rate_atari_offline.yml"))["PongNoFrameskip-v4"]
    entry = {**entry, "demonstrations": "channel_last.h5"}
    with pytest.raises(ZooConfigError, match=r"does not match the env.*\(84, 84, 4\).*\(4, 84, 84\).*channel-last"):
        check_rate_entry(entry, "PongNoFrameskip-v4", "rate_atari_offline.yml entry 'PongNoFrameskip-v4'")


# ------------------------------------------------------------------------------------------------ zoo entries
def test_build_command_names_the_game_and_budget() -> None:
    assert build_command("benchmarks/data/atari/qbert/replay_200000.h5") == (
        "python benchmarks/atari_datasets.py --game qbert"
    )
    assert build_command("/x/atari/pong/replay_500000.h5").endswith("--game pong --transitions 500000")
    assert build_command("demos/pong_expert_10.h5") is None and build_command("atari/chess/replay_1.h5") is None


@pytest.mark.parametrize(
    ("config", "budget"), [("rate_atari_offline.yml", ""), ("rate_atari_paper.yml", " --transitions 500000")]
)
def test_atari_entries_pass_the_checks_and_say_how_to_build_their_dataset(
    config: str, budget: str, quick_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rate_sb3.rate import RATE as algo_class

    register()
    monkeypatch.chdir(tmp_path)  # no datasets here: each entry says how to build its own
    entries = load_config(str(REPO / "hyperparams" / config))
    assert sorted(entries) == sorted(ATARI_GAMES.values())
    for game, env_id in ATARI_GAMES.items():
        entry, where = entries[env_id], f"{config} entry {env_id!r}"
        check_hyperparams(algo_class, entry, where)
        assert entry["frame_stack"] == 4 and entry["online"] is False
        with pytest.raises(ZooConfigError, match=rf"`python benchmarks/atari_datasets.py --game {game}{budget}`"):
            check_rate_entry(entry, env_id, where)
    pong = entries["PongNoFrameskip-v4"]
    (tmp_path / pong["demonstrations"]).parent.mkdir(parents=True)
    shutil.copy(quick_run, tmp_path / pong["demonstrations"])  # the builder's frames are the entry's env's
    check_rate_entry(pong, "PongNoFrameskip-v4", f"{config} entry 'PongNoFrameskip-v4'")
