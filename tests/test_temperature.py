import copy
import math

import pytest
import torch as th
from gymnasium import spaces

from rate_sb3.temperature import MAX_TEMPERATURE, MIN_TEMPERATURE, EntropyTemperature

DISCRETE = spaces.Discrete(4)


def run_updates(temperature: EntropyTemperature, entropy: float, n: int) -> list[float]:
    values = []
    for _ in range(n):
        temperature.update(entropy)
        values.append(temperature.value.item())
    return values


def test_a_learned_temperature_rises_below_the_target_entropy_and_falls_above_it():
    temperature = EntropyTemperature("auto_0.1", 0.5, DISCRETE, learning_rate=0.01)
    rising = run_updates(temperature, entropy=0.1, n=50)
    assert all(b > a for a, b in zip(rising, rising[1:]))
    falling = run_updates(temperature, entropy=0.9, n=50)[20:]  # Adam's momentum carries it up a little first
    assert all(b < a for a, b in zip(falling, falling[1:]))


def test_a_learned_temperature_stays_within_its_bounds():
    rising = EntropyTemperature("auto_0.5", 1.0, DISCRETE, learning_rate=0.5)
    assert max(run_updates(rising, entropy=0.0, n=200)) == pytest.approx(MAX_TEMPERATURE)
    falling = EntropyTemperature("auto_0.5", 1.0, DISCRETE, learning_rate=0.5)
    assert min(run_updates(falling, entropy=5.0, n=2000)) == pytest.approx(MIN_TEMPERATURE)


def test_a_fixed_temperature_never_moves_and_zero_is_allowed():
    for value in (0.0, 0.2):
        temperature = EntropyTemperature(value, "auto", DISCRETE, learning_rate=0.5)
        assert run_updates(temperature, entropy=0.0, n=5) == [pytest.approx(value)] * 5


def test_auto_targets_follow_the_action_space():
    assert EntropyTemperature("auto", "auto", DISCRETE, 1e-3).target == pytest.approx(0.1 * math.log(4))
    box = spaces.Box(-1.0, 1.0, shape=(3,))
    assert EntropyTemperature("auto", "auto", box, 1e-3).target == -3.0
    assert EntropyTemperature("auto", "auto", box, 1e-3).value.item() == pytest.approx(0.01)


@pytest.mark.parametrize(
    "ent_coef, target_entropy, message",
    [
        ("sometimes", "auto", "ent_coef='sometimes'"),
        ("auto_x", "auto", "ent_coef='auto_x'"),
        ("auto_0", "auto", "ent_coef='auto_0'"),
        (-0.1, "auto", "ent_coef=-0.1"),
        ("auto", "high", "target_entropy='high'"),
    ],
)
def test_bad_temperature_arguments_name_the_argument_and_the_fix(ent_coef, target_entropy, message):
    with pytest.raises(ValueError, match=message):
        EntropyTemperature(ent_coef, target_entropy, DISCRETE, 1e-3)


def test_state_dict_round_trip_restores_the_learned_value():
    trained = EntropyTemperature("auto", 0.5, DISCRETE, learning_rate=0.05)
    run_updates(trained, entropy=0.0, n=10)
    fresh = EntropyTemperature("auto", 0.5, DISCRETE, learning_rate=0.05)
    fresh.load_state_dict(copy.deepcopy(trained.state_dict()))
    fresh.optimizer.load_state_dict(copy.deepcopy(trained.optimizer.state_dict()))  # as a saved zip would
    assert th.equal(fresh.log_value, trained.log_value)
    assert run_updates(fresh, 0.0, 3) == run_updates(trained, 0.0, 3)
