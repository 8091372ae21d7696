"""Tests of the memory envs (T-Maze) and of the privileged experts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rate_sb3.envs
from rate_sb3.envs import (
    EXPERTS,
    CartPoleController,
    MiniGridMemoryOracle,
    PendulumController,
    PrivilegedExpert,
    TMazeEnv,
    TMazeOracle,
    make_expert,
)

RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3


def run_episode(env: gym.Env, expert: PrivilegedExpert, seed: int) -> tuple[float, dict[str, Any]]:
    """Run one episode of ``expert`` and return its return and last info."""
    env.reset(seed=seed)
    expert.reset(env)
    total, done, info = 0.0, False, {}
    while not done:
        _, reward, terminated, truncated, info = env.step(expert.act(env))
        total += float(reward)
        done = terminated or truncated
    return total, info


def walk(env: TMazeEnv, actions: list[int]) -> list[tuple[np.ndarray, float, bool, bool, dict[str, Any]]]:
    return [env.step(action) for action in actions]


# --- T-Maze -----------------------------------------------------------------------------------------------


def test_registration() -> None:
    rate_sb3.envs.register_envs()  # idempotent
    rate_sb3.envs.register_envs()
    spec = gym.spec("TMaze-v0")
    assert spec.entry_point == "rate_sb3.envs.tmaze:TMazeEnv"
    assert spec.max_episode_steps is None
    env = gym.make("TMaze-v0", corridor_length=5)
    assert isinstance(env.unwrapped, TMazeEnv)
    assert env.unwrapped.corridor_length == 5


def test_env_checker() -> None:
    check_env(TMazeEnv(corridor_length=[3, 10]), skip_render_check=True)


def test_observation_layout() -> None:
    env = TMazeEnv(corridor_length=4)
    obs, info = env.reset(seed=0)
    assert info == {}
    assert obs.dtype == np.float32 and obs.shape == (4,)
    np.testing.assert_array_equal(obs[:3], [0.0, 1.0, 0.0])  # y, clue = goal = +1 (even seed), not at junction
    for step in range(1, 5):
        obs, *_ = env.step(RIGHT)
        assert env.x == step
        assert obs[0] == 0.0 and obs[1] == 0.0  # the clue is only shown at t = 0
        assert obs[2] == (1.0 if step == 4 else 0.0)
    obs, *_ = env.step(UP)
    np.testing.assert_array_equal(obs[:3], [1.0, 0.0, 1.0])


def test_noise_values() -> None:
    env = TMazeEnv(corridor_length=200)
    noise = [env.reset(seed=0)[0][3]]
    noise += [env.step(RIGHT)[0][3] for _ in range(200)]
    assert set(noise) == {-1.0, 0.0, 1.0}


def test_blocked_moves_are_noops() -> None:
    env = TMazeEnv(corridor_length=3)
    env.reset(seed=0)
    for action in (LEFT, UP, DOWN):  # x < 0, and leaving the corridor before x = L
        _, reward, terminated, truncated, info = env.step(action)
        assert (env.x, env.y) == (0, 0)
        assert (reward, terminated, truncated, info) == (0.0, False, False, {})
    env.reset(seed=0)
    walk(env, [RIGHT, UP, DOWN])  # leaving the corridor before x = L
    assert (env.x, env.y) == (1, 0)
    env.reset(seed=0)
    walk(env, [RIGHT, RIGHT, RIGHT, RIGHT])  # x > L
    assert (env.x, env.y) == (3, 0)


@pytest.mark.parametrize("goal", [1, -1])
@pytest.mark.parametrize("correct", [True, False])
def test_termination_and_reward(goal: int, correct: bool) -> None:
    env = TMazeEnv(corridor_length=2)
    env.reset(options={"goal": goal})
    steps = walk(env, [RIGHT, RIGHT])
    assert all(step[1:] == (0.0, False, False, {}) for step in steps)
    turn = goal if correct else -goal
    obs, reward, terminated, truncated, info = env.step(UP if turn == 1 else DOWN)
    assert obs[0] == turn
    assert terminated and not truncated
    assert reward == (1.0 if correct else 0.0)
    assert info == {"is_success": correct}
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(RIGHT)


@pytest.mark.parametrize("length", [1, 6])
def test_truncation_at_length_plus_two(length: int) -> None:
    env = TMazeEnv(corridor_length=length)
    env.reset(seed=3)
    assert env.max_steps == length + 2
    steps = walk(env, [RIGHT] * (length + 2))
    for _, reward, terminated, truncated, info in steps[:-1]:
        assert (reward, terminated, truncated, info) == (0.0, False, False, {})
    _, reward, terminated, truncated, info = steps[-1]
    assert (reward, terminated, truncated, info) == (0.0, False, True, {"is_success": False})


def test_success_on_last_allowed_step() -> None:
    env = TMazeEnv(corridor_length=2)
    env.reset(options={"goal": -1})
    *_, (_, reward, terminated, truncated, info) = walk(env, [UP, RIGHT, RIGHT, DOWN])
    assert (reward, terminated, truncated, info) == (1.0, True, False, {"is_success": True})


def test_seed_parity_sets_goal() -> None:
    env = TMazeEnv(corridor_length=3)
    goals = [env.reset(seed=seed)[0][1] for seed in range(10, 20)]
    assert goals == [1.0, -1.0] * 5
    assert env.reset(seed=7)[0][1] == env.goal == -1
    # options override the seed
    assert env.reset(seed=8, options={"goal": -1})[0][1] == env.goal == -1


def test_unseeded_goal_uses_rng() -> None:
    env = TMazeEnv(corridor_length=3)
    env.reset(seed=0)
    goals = {env.reset()[0][1] for _ in range(50)}
    assert goals == {-1.0, 1.0}


def test_seeding_is_reproducible() -> None:
    first, second = TMazeEnv(corridor_length=[5, 10, 20]), TMazeEnv(corridor_length=[5, 10, 20])
    for env in (first, second):
        env.reset(seed=123)
    run_a = [first.reset()[0] for _ in range(5)] + [first.step(RIGHT)[0]]
    run_b = [second.reset()[0] for _ in range(5)] + [second.step(RIGHT)[0]]
    np.testing.assert_array_equal(run_a, run_b)


def test_mixture_of_lengths() -> None:
    env = TMazeEnv(corridor_length=[2, 5, 9])
    lengths = set()
    for seed in range(40):
        env.reset(seed=seed)
        lengths.add(env.corridor_length)
    assert lengths == {2, 5, 9}
    assert TMazeEnv(corridor_length=np.array([3, 4])).corridor_lengths == (3, 4)


@pytest.mark.parametrize(
    ("corridor_length", "message"),
    [
        (0, "corridor_length items must be ints >= 1, got 0"),
        (2.5, "corridor_length must be an int >= 1 or a non-empty sequence"),
        ([], "corridor_length must be an int >= 1 or a non-empty sequence"),
        ("10", "corridor_length must be an int >= 1 or a non-empty sequence"),
        ([3, -1], "corridor_length items must be ints >= 1, got -1"),
        ([3, 4.0], "corridor_length items must be ints >= 1, got 4.0"),
        (True, "corridor_length items must be ints >= 1, got True"),
    ],
)
def test_bad_corridor_length(corridor_length: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TMazeEnv(corridor_length=corridor_length)


def test_bad_reset_options_step_and_render_mode() -> None:
    env = TMazeEnv(corridor_length=3)
    with pytest.raises(ValueError, match=r"options\['goal'\] must be \+1 or -1, got 0"):
        env.reset(options={"goal": 0})
    with pytest.raises(ValueError, match=r"Unknown TMazeEnv reset option\(s\) \['side'\]"):
        env.reset(options={"side": 1})
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(RIGHT)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Invalid action 4"):
        env.step(4)
    with pytest.raises(ValueError, match="render_mode must be None, 'ansi' or 'rgb_array'"):
        TMazeEnv(render_mode="human")


# --- T-Maze oracle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 10, 148])
def test_tmaze_oracle_always_succeeds(length: int) -> None:
    env = gym.make("TMaze-v0", corridor_length=length)
    oracle = make_expert("TMaze-v0")
    for seed in range(4):
        total, info = run_episode(env, oracle, seed)
        assert total == 1.0 and info["is_success"]
        assert env.unwrapped.num_steps == length + 1


def test_tmaze_oracle_ignoring_the_clue_is_a_coin_flip() -> None:
    env = TMazeEnv(corridor_length=[5, 10])
    for fixed_turn in (1, -1):
        oracle = TMazeOracle(ignore_clue=True, fixed_turn=fixed_turn)
        successes = [run_episode(env, oracle, seed)[1]["is_success"] for seed in range(100)]
        assert np.mean(successes) == 0.5  # even number of consecutive seeds: exactly balanced goals


def test_tmaze_oracle_error_rate() -> None:
    env = TMazeEnv(corridor_length=20)
    oracle = TMazeOracle(error_rate=0.3, seed=0)
    actions = []
    env.reset(seed=0)
    for _ in range(10):
        actions.append(oracle.act(env))
    assert set(actions) - {RIGHT}  # some random actions
    successes = [run_episode(env, oracle, seed)[1]["is_success"] for seed in range(20)]
    assert np.mean(successes) < 1.0


def test_tmaze_oracle_errors() -> None:
    with pytest.raises(ValueError, match="fixed_turn must be"):
        TMazeOracle(ignore_clue=True, fixed_turn=0)
    with pytest.raises(ValueError, match=r"error_rate must be a probability in \[0, 1\], got 1.5"):
        TMazeOracle(error_rate=1.5)
    with pytest.raises(TypeError, match="TMazeOracle needs a TMazeEnv, got CartPoleEnv"):
        TMazeOracle().act(gym.make("CartPole-v1"))


# --- CartPole and Pendulum controllers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_envs() -> None:
    import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "CartPoleNoVel-v1"])
def test_cartpole_controller_balances(env_id: str, zoo_envs: None) -> None:
    env = gym.make(env_id)
    controller = make_expert(env_id)
    assert isinstance(controller, CartPoleController)
    assert [run_episode(env, controller, seed)[0] for seed in range(3)] == [500.0] * 3


def test_cartpole_controller_error_rate_makes_it_mediocre() -> None:
    env = gym.make("CartPole-v1")
    controller = CartPoleController(error_rate=CartPoleController.MEDIOCRE_ERROR_RATE, seed=0)
    mean_return = np.mean([run_episode(env, controller, seed)[0] for seed in range(10)])
    assert 50 < mean_return < 400


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "PendulumNoVel-v1"])
def test_pendulum_controller_swings_up(env_id: str, zoo_envs: None) -> None:
    env = gym.make(env_id)
    controller = make_expert(env_id)
    assert isinstance(controller, PendulumController)
    env.reset(seed=0)
    action = controller.act(env)
    assert action.dtype == np.float32 and action.shape == (1,) and -2 <= action[0] <= 2
    mean_return = np.mean([run_episode(env, controller, seed)[0] for seed in range(4)])
    assert mean_return > -250


def test_pendulum_controller_noise() -> None:
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.05, 0.0])  # near the top: unsaturated balance torque
    clean = PendulumController().act(env)
    np.testing.assert_allclose(clean, [-0.5])
    noisy = [PendulumController(noise_std=1.0, seed=seed).act(env) for seed in range(5)]
    assert any(not np.allclose(action, clean) for action in noisy)
    assert all(np.abs(action).max() <= 2 for action in noisy)


def test_controller_errors() -> None:
    with pytest.raises(ValueError, match=r"error_rate must be a probability in \[0, 1\], got -0.1"):
        CartPoleController(error_rate=-0.1)
    with pytest.raises(ValueError, match="gains must have 4 values"):
        CartPoleController(gains=(1.0, 2.0))
    with pytest.raises(ValueError, match="noise_std must be >= 0, got -1"):
        PendulumController(noise_std=-1)
    with pytest.raises(TypeError, match=r"CartPoleController needs a reset CartPole env"):
        CartPoleController().act(gym.make("CartPole-v1"))  # not reset: state is None
    pendulum = gym.make("Pendulum-v1")
    pendulum.reset(seed=0)
    with pytest.raises(TypeError, match=r"CartPoleController needs a CartPole state of shape \(4,\)"):
        CartPoleController().act(pendulum)
    with pytest.raises(TypeError, match="PendulumController needs a reset Pendulum env"):
        PendulumController().act(TMazeEnv(corridor_length=2))


# --- MiniGrid Memory oracle -------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["MiniGrid-MemoryS7-v0", "MiniGrid-MemoryS13Random-v0"])
def test_minigrid_memory_oracle_succeeds(env_id: str) -> None:
    pytest.importorskip("minigrid")
    env = gym.make(env_id)
    oracle = make_expert(env_id)
    assert isinstance(oracle, MiniGridMemoryOracle)
    for seed in range(5):
        env.reset(seed=seed)
        oracle.reset(env)
        done, reward, actions = False, 0.0, set()
        while not done:
            action = oracle.act(env)
            actions.add(action)
            _, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        assert terminated and reward > 0
        assert tuple(env.unwrapped.agent_pos) == env.unwrapped.success_pos
        assert actions <= {0, 1, 2}


def test_minigrid_memory_oracle_brings_the_cue_into_view_before_the_goal() -> None:
    """The agent starts facing away from the cue: imitating a shortcut could not learn which object to pick."""
    pytest.importorskip("minigrid")
    env = gym.make("MiniGrid-MemoryS13Random-v0")

    def cue_seen(oracle: MiniGridMemoryOracle, seed: int) -> bool:
        env.reset(seed=seed)
        oracle.reset(env)
        cue, seen, done = (1, env.unwrapped.height // 2 - 1), False, False
        while not done:
            seen = seen or env.unwrapped.agent_sees(*cue)
            _, _, terminated, truncated, _ = env.step(oracle.act(env))
            done = terminated or truncated
        return seen

    assert all(cue_seen(MiniGridMemoryOracle(), seed) for seed in range(20))
    assert not all(cue_seen(MiniGridMemoryOracle(look_first=False), seed) for seed in range(20))


def test_minigrid_memory_oracle_recovers_from_random_actions() -> None:
    pytest.importorskip("minigrid")
    env = gym.make("MiniGrid-MemoryS13Random-v0")
    oracle = MiniGridMemoryOracle(error_rate=0.2, seed=0)
    assert all(run_episode(env, oracle, seed)[0] > 0 for seed in range(3))


def test_success_from_reward_reports_minigrid_successes_and_failures() -> None:
    pytest.importorskip("minigrid")
    from rate_sb3.wrappers import SuccessFromReward

    env = SuccessFromReward(gym.make("MiniGrid-MemoryS7-v0"))
    oracle = make_expert("MiniGrid-MemoryS7-v0")
    for policy, expected in ((oracle.act, True), (lambda _env: 0, False)):  # the oracle; turning left forever
        env.reset(seed=0)
        done, info = False, {}
        while not done:
            assert "is_success" not in info
            _, _, terminated, truncated, info = env.step(policy(env))
            done = terminated or truncated
        assert info["is_success"] is expected


def test_minigrid_memory_oracle_errors() -> None:
    pytest.importorskip("minigrid")
    with pytest.raises(ValueError, match=r"error_rate must be a probability in \[0, 1\], got 2"):
        MiniGridMemoryOracle(error_rate=2)
    with pytest.raises(TypeError, match="MiniGridMemoryOracle needs a MiniGrid MemoryEnv, got CartPoleEnv"):
        MiniGridMemoryOracle().act(gym.make("CartPole-v1"))
    from minigrid.core.world_object import Wall

    env = gym.make("MiniGrid-MemoryS7-v0")
    env.reset(seed=0)
    x, y = (int(v) for v in env.unwrapped.agent_pos)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):  # walled in: neither the cue nor the goal can be reached
        env.unwrapped.grid.set(x + dx, y + dy, Wall())
    with pytest.raises(
        RuntimeError, match=rf"MiniGridMemoryOracle found no path from \({x}, {y}\) \(cue seen: False\)"
    ):
        MiniGridMemoryOracle(look_first=False).act(env)


# --- Registry ---------------------------------------------------------------------------------------------


def test_experts_registry() -> None:
    assert EXPERTS["TMaze-v0"] is TMazeOracle
    assert EXPERTS["CartPoleNoVel-v1"] is EXPERTS["CartPole-v1"] is CartPoleController
    assert EXPERTS["PendulumNoVel-v1"] is EXPERTS["Pendulum-v1"] is PendulumController
    assert EXPERTS["MiniGrid-MemoryS7-v0"] is EXPERTS["MiniGrid-MemoryS13Random-v0"] is MiniGridMemoryOracle
    assert all(issubclass(expert, PrivilegedExpert) for expert in EXPERTS.values())


def test_make_expert() -> None:
    expert = make_expert("TMaze-v0", ignore_clue=True, fixed_turn=-1)
    assert isinstance(expert, TMazeOracle) and expert.fixed_turn == -1
    assert isinstance(make_expert("rate_sb3.envs:TMaze-v0"), TMazeOracle)
    assert make_expert("CartPole-v1", error_rate=0.5, seed=1).error_rate == 0.5


def test_make_expert_errors() -> None:
    with pytest.raises(ValueError, match=r"No privileged expert for env id 'Hopper-v5'; experts exist for: TMaze-v0"):
        make_expert("Hopper-v5")
    with pytest.raises(TypeError, match=r"Unknown keyword argument\(s\) \['noise_std'\] for TMazeOracle"):
        make_expert("TMaze-v0", noise_std=0.1)
    with pytest.raises(ValueError, match="error_rate must be a probability"):
        make_expert("CartPoleNoVel-v1", error_rate=3)


def test_importing_envs_imports_no_optional_env_package() -> None:
    import subprocess
    import sys

    code = "import sys, rate_sb3.envs; assert not {'minigrid', 'rl_zoo3', 'memory_maze', 'mujoco'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_render_shows_the_agent_and_the_arms() -> None:
    env = TMazeEnv(corridor_length=3, render_mode="ansi")
    env.reset(options={"goal": 1})
    assert env.render().splitlines() == ["   G", "A---", "   X"]
    image = TMazeEnv(corridor_length=3, render_mode="rgb_array")
    image.reset(options={"goal": -1})
    assert image.render().shape == (3, 4, 3)
