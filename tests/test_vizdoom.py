"""ViZDoomTwoColors-v0: the scenario's WAD, the env's spaces, seeding, rewards and episode ends, the privileged expert,
and RATE pretraining and predicting on its frames (a few hundred env steps each)."""

from __future__ import annotations

import struct
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecTransposeImage
from test_zoo import TINY_RATE, predict_steps

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.collect import collect_episodes
from rate_sb3.envs import EXPERTS, TwoColorsExpert, ViZDoomTwoColorsEnv, make_env, make_expert
from rate_sb3.envs import vizdoom_scenario as scenario
from rate_sb3.envs.vizdoom_two_colors import STEP_REWARD
from rate_sb3.wrappers import VecObservationOnly

pytest.importorskip("vizdoom", reason="pip install 'rate_sb3[vizdoom]'")
pytest.importorskip("cv2", reason="pip install 'rate_sb3[vizdoom]'")

ENV_ID = "ViZDoomTwoColors-v0"
TURN = 0  # turning on the spot picks nothing up: the acid floor decides when the episode ends


@pytest.fixture(scope="module")
def env() -> ViZDoomTwoColorsEnv:
    env = make_env(ENV_ID, max_steps=400).unwrapped
    yield env
    env.close()


def frames(env: gym.Env, seed: int, actions: list[int]) -> np.ndarray:
    observation, _ = env.reset(seed=seed)
    return np.stack([observation] + [env.step(action)[0] for action in actions])


def test_the_wad_lists_the_decorate_lump_the_sprites_and_both_maps() -> None:
    wad = scenario.scenario_wad()
    kind, count, directory = struct.unpack_from("<4sii", wad)
    names = [struct.unpack_from("<ii8s", wad, directory + 16 * i)[2].rstrip(b"\0").decode() for i in range(count)]
    assert kind == b"PWAD" and len(wad) == directory + 16 * count
    assert names == ["MAPINFO", "DECORATE", "S_START", "TCRPA0", "TCRIA0", "TCGPA0", "TCGIA0", "S_END"] + [
        "MAP01", "TEXTMAP", "ENDMAP", "MAP02", "TEXTMAP", "ENDMAP"
    ]  # fmt: skip
    assert scenario.scenario_path().read_bytes() == wad  # cached by content
    with pytest.raises(ValueError, match="lump name 'TOO_LONG_NAME' must be at most 8"):
        scenario.pack_wad([("TOO_LONG_NAME", b"")])


def test_spaces_and_the_first_frame_show_the_pillar(env: ViZDoomTwoColorsEnv) -> None:
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 112, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(5)
    for color, channel in (("red", 0), ("green", 1)):
        observation, info = env.reset(seed=0, options={"pillar_color": color})
        assert env.observation_space.contains(observation) and info["pillar_color"] == color
        names = [name for name, _, _ in env.objects()]
        assert scenario.pillar_class(color) in names and scenario.item_class(color, True) in names
        centre = observation[16:48, 48:64].astype(int)  # the pillar stands straight ahead
        assert (centre[..., channel] - centre.sum(-1) / 3 > 30).mean() > 0.1, f"no {color} pillar in sight"


def test_equal_seeds_give_equal_episodes_and_the_colour_is_drawn(env: ViZDoomTwoColorsEnv) -> None:
    actions = [2, 2, 3, 4, 2, 0, 1, 2] * 4
    np.testing.assert_array_equal(frames(env, 3, actions), frames(env, 3, actions))
    assert not np.array_equal(frames(env, 3, actions), frames(env, 4, actions))
    colors = {env.reset(seed=seed)[1]["pillar_color"] for seed in range(8)}
    assert colors == {"red", "green"}


def test_the_pillar_goes_after_45_steps(env: ViZDoomTwoColorsEnv) -> None:
    env.reset(seed=0, options={"pillar_color": "green"})
    for step in range(1, 47):
        env.step(TURN)
        present = scenario.pillar_class("green") in [name for name, _, _ in env.objects()]
        assert present == (step < scenario.PILLAR_STEPS), step


def test_the_acid_ends_the_episode_at_zero_health_and_each_step_survived_pays(env: ViZDoomTwoColorsEnv) -> None:
    env.reset(seed=1)
    rewards, terminated, truncated, info = [], False, False, {}
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(TURN)
        rewards.append(reward)
    assert terminated and not truncated and info["health"] <= 0
    assert 300 < len(rewards) < 330  # 100 HP after the first tic, 10/32 HP a step
    assert rewards[:-1] == [STEP_REWARD] * (len(rewards) - 1) and rewards[-1] == 0.0
    with pytest.raises(RuntimeError, match=r"finished episode: call reset\(\) first"):
        env.step(TURN)


def test_max_steps_truncates() -> None:
    env = make_env(ENV_ID, max_steps=5)
    env.reset(seed=0)
    ends = [env.step(TURN)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]
    env.close()


def test_bad_input_is_named(env: ViZDoomTwoColorsEnv) -> None:
    with pytest.raises(ValueError, match="pillar_color must be 'red', 'green' or None"):
        ViZDoomTwoColorsEnv(pillar_color="blue")
    with pytest.raises(ValueError, match="max_steps must be a positive int, got 0"):
        ViZDoomTwoColorsEnv(max_steps=0)
    with pytest.raises(ValueError, match=r"options\['pillar_color'\] must be 'red' or 'green', got 'blue'"):
        env.reset(seed=0, options={"pillar_color": "blue"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action 5: expected an int in \[0, 4\]"):
        env.step(5)


def test_without_vizdoom_making_the_env_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vizdoom", None)
    with pytest.raises(ImportError, match=r"pip install 'rate_sb3\[vizdoom\]'"):
        ViZDoomTwoColorsEnv().reset(seed=0)


def test_the_expert_gathers_the_pillar_colour(env: ViZDoomTwoColorsEnv) -> None:
    assert EXPERTS[ENV_ID] is TwoColorsExpert
    expert = make_expert(ENV_ID, seed=0)
    for color in ("red", "green"):
        env.reset(seed=0, options={"pillar_color": color})
        start_items = env.items
        for _ in range(150):
            env.step(expert.act(env))
        assert env.items - start_items >= 2, f"{color}: {env.items - start_items} items of the pillar's colour"
    with pytest.raises(TypeError, match="TwoColorsExpert needs a ViZDoomTwoColorsEnv, got CartPoleEnv"):
        expert.act(gym.make("CartPole-v1"))


def test_rate_pretrains_on_expert_episodes_and_predicts() -> None:
    make = lambda: make_env(ENV_ID, max_steps=12)  # noqa: E731
    venv = VecTransposeImage(make_vec_env(make, n_envs=1, seed=0, wrapper_class=PrevRewardWrapper))
    episodes = collect_episodes(make_expert(ENV_ID, seed=0), VecObservationOnly(venv), n_episodes=2, seed=0)
    assert [len(episode.actions) for episode in episodes] == [12, 12]
    model = RATE("RATEPolicy", venv, demonstrations=episodes, online=False, seed=0, **TINY_RATE)
    assert model.observation_space["observation"].shape == (3, 64, 112)
    model.pretrain(2)
    predict_steps(model, venv, 6)
    venv.close()
