"""ViZDoom-Two-Colors (``ViZDoomTwoColors-v0``): remember the pillar's colour, then gather items of that colour.

The agent starts in a square room whose acid floor drains 10/32 HP per step. A red or green pillar stands in the
centre for the first 45 steps; items of both colours lie around the room (and more keep appearing). Touching an
item of the pillar's colour gives +25 HP and a reward of +1, one of the other colour costs 25 HP; every step
survived gives +0.02. The episode ends when health reaches 0 or after ``max_steps`` steps (2,100). The agent sees
only RGB frames (64x112, channels last): neither its health nor the pillar once it has gone.

The scenario is this project's own (:mod:`rate_sb3.envs.vizdoom_scenario`). ViZDoom is an optional dependency
(``pip install "rate_sb3[vizdoom]"``), imported when the first env is created.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import rate_sb3.envs.vizdoom_scenario as scenario
from rate_sb3.envs.experts import PrivilegedExpert, check_probability

FRAME_SHAPE = (64, 112, 3)
ACTIONS = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1))  # (turn left, turn right, forward) buttons
ACTION_NAMES = ("turn left", "turn right", "forward", "forward + left", "forward + right")
STEP_REWARD, ITEM_REWARD = 0.02, 1.0
INSTALL = "pip install 'rate_sb3[vizdoom]'"


def _vizdoom() -> Any:
    try:
        import cv2  # noqa: F401  (frames are resized with OpenCV)
        import vizdoom
    except ImportError as error:
        raise ImportError(f"ViZDoomTwoColors-v0 needs vizdoom and opencv ({error}): {INSTALL}") from error
    return vizdoom


class ViZDoomTwoColorsEnv(gym.Env):
    """
    The Two-Colors memory task of the RATE paper, built on this project's own ViZDoom scenario.

    Rewards are computed here from ViZDoom's game variables: +1 per healing pickup (``ITEMCOUNT``: only the items of
    the pillar's colour count), +0.02 for each step after which the player is alive. ``info`` holds
    ``pillar_color`` (``"red"`` or ``"green"``) and ``health``; they are not part of the observation.

    :param max_steps: Steps after which the episode is truncated.
    :param pillar_color: ``"red"`` or ``"green"`` to fix the pillar's colour; ``None`` draws it at each reset.
    :param render_mode: ``None`` or ``"rgb_array"`` (the full 144x256 frame).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}

    def __init__(self, max_steps: int = 2100, pillar_color: str | None = None, render_mode: str | None = None) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if pillar_color is not None and pillar_color not in scenario.COLORS:
            raise ValueError(f"pillar_color must be 'red', 'green' or None (drawn at random), got {pillar_color!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.max_steps, self.fixed_color, self.render_mode = max_steps, pillar_color, render_mode
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.game: Any = None
        self.pillar_color = "red"
        self.num_steps, self.health, self.items = 0, 0.0, 0
        self.state: Any = None  # ViZDoom's last state (frame, game variables, objects), for privileged experts
        self._screen: np.ndarray | None = None
        self._frame = np.zeros(FRAME_SHAPE, np.uint8)
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """
        Start an episode: the pillar's colour from ``self.np_random`` (or the constructor's ``pillar_color``, or
        ``options["pillar_color"]``), and ViZDoom's random generator, which places the items, seeded from it too
        (after the colour is drawn, fixed or not: a seed gives the same room with either colour).

        :param seed: Seeds ``self.np_random``: equal seeds give equal episodes.
        :param options: Optionally ``{"pillar_color": "red" | "green"}``.
        :return: The first frame and ``info``.
        """
        super().reset(seed=seed)
        color = (options or {}).get("pillar_color", self.fixed_color)
        if color is not None and color not in scenario.COLORS:
            raise ValueError(f"options['pillar_color'] must be 'red' or 'green', got {color!r}")
        drawn = scenario.COLORS[int(self.np_random.integers(2))]
        self.pillar_color = color or drawn
        game = self._game()
        game.set_doom_map(scenario.MAPS[self.pillar_color])
        game.set_seed(int(self.np_random.integers(2**31 - 1)))
        game.new_episode()
        self.num_steps, self._done = 0, False
        self._read_state()
        return self._observation(), self._info()

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """
        Press the action's buttons for ``TICS_PER_STEP`` tics.

        :param action: 0 turn left, 1 turn right, 2 forward, 3 forward + left, 4 forward + right.
        :return: observation, reward, terminated (health reached 0), truncated (``max_steps``), info
        """
        if self._done:
            raise RuntimeError("ViZDoomTwoColorsEnv.step() called on a finished episode: call reset() first")
        if not self.action_space.contains(action):
            names = ", ".join(f"{i} {name}" for i, name in enumerate(ACTION_NAMES))
            raise ValueError(f"invalid action {action!r}: expected an int in [0, {len(ACTIONS) - 1}] ({names})")
        items = self.items
        self.game.make_action(list(ACTIONS[int(action)]), scenario.TICS_PER_STEP)
        self.num_steps += 1
        terminated = self.game.is_player_dead() or self.game.is_episode_finished()
        if terminated:
            self.health = min(self.health, 0.0)
        else:
            self._read_state()
        reward = ITEM_REWARD * (self.items - items) + (0.0 if terminated else STEP_REWARD)
        truncated = not terminated and self.num_steps >= self.max_steps
        self._done = terminated or truncated
        return self._observation(), float(reward), terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        return None if self._screen is None else self._screen.copy()

    def close(self) -> None:
        if self.game is not None:
            self.game.close()
            self.game = None

    def objects(self) -> list[tuple[str, float, float]]:
        """``(class name, x, y)`` of every actor in the room now (ViZDoom's object list; the player included)."""
        if self.state is None:
            raise RuntimeError("ViZDoomTwoColorsEnv.objects() before reset()")
        return [(o.name, o.position_x, o.position_y) for o in self.state.objects]

    def pose(self) -> tuple[float, float, float]:
        """The player's ``(x, y, angle in degrees)``, angle 0 facing +x and growing counter-clockwise."""
        _, _, x, y, angle = self.state.game_variables
        return float(x), float(y), float(angle)

    def _game(self) -> Any:
        if self.game is None:
            self.game = make_game(_vizdoom())
        return self.game

    def _read_state(self) -> None:
        import cv2

        self.state = self.game.get_state()
        health, items = self.state.game_variables[:2]
        self.health, self.items = float(health), int(items)
        self._screen = self.state.screen_buffer
        self._frame = cv2.resize(self._screen, FRAME_SHAPE[1::-1], interpolation=cv2.INTER_AREA)

    def _observation(self) -> np.ndarray:
        return self._frame.copy()

    def _info(self) -> dict[str, Any]:
        return {"pillar_color": self.pillar_color, "health": self.health}


def make_game(vizdoom: Any) -> Any:
    """A headless ``DoomGame`` on the scenario's WAD: 256x144 RGB frames, no HUD, no sound, three buttons, the
    game variables the env reads, object lists for the privileged expert, no time limit of its own."""
    game = vizdoom.DoomGame()
    game.set_doom_game_path(str(scenario.iwad_path()))
    game.set_doom_scenario_path(str(scenario.scenario_path()))
    game.set_doom_config_path(str(scenario.cache_dir() / "_vizdoom.ini"))  # not the working directory
    game.set_screen_resolution(vizdoom.ScreenResolution.RES_256X144)
    game.set_screen_format(vizdoom.ScreenFormat.RGB24)
    for setter in ("hud", "crosshair", "weapon", "messages", "decals", "particles", "effects_sprites", "corpses"):
        getattr(game, f"set_render_{setter}")(False)
    game.set_window_visible(False)
    game.set_sound_enabled(False)
    button = vizdoom.Button
    game.set_available_buttons([button.TURN_LEFT, button.TURN_RIGHT, button.MOVE_FORWARD])
    variable = vizdoom.GameVariable
    game.set_available_game_variables(
        [variable.HEALTH, variable.ITEMCOUNT, variable.POSITION_X, variable.POSITION_Y, variable.ANGLE]
    )
    game.set_objects_info_enabled(True)
    game.set_episode_timeout(0)
    game.set_mode(vizdoom.Mode.PLAYER)
    game.add_game_args("+cl_run 0")  # walk: running slides too far to steer between items
    game.init()
    return game


class TwoColorsExpert(PrivilegedExpert):
    """
    Privileged expert of ``ViZDoomTwoColors-v0``: it knows the pillar's colour and where every item is (ViZDoom's
    object list). Its goal is the healing item with the lowest cost, its distance plus ``detour`` for every hurting
    item its straight path passes closer than ``clearance``; it heads the way (one of 24) whose next
    ``lookahead`` units keep that clearance and the walls at bay and end nearest the goal.

    It turns on the spot while that heading is more than ``turn_angle`` degrees off, turns while walking while it
    is more than ``aim_angle`` off, and walks straight otherwise; with no healing item left it turns. With
    probability ``error_rate`` it takes a uniformly random action instead.

    :param error_rate: Probability, at every step, of a uniformly random action.
    :param seed: Seed of the expert's own random generator.
    :param turn_angle: Degrees off the target beyond which it turns without walking.
    :param aim_angle: Degrees off the target beyond which it turns while walking.
    :param clearance: Map units kept from hurting items (the player touches an item within 32).
    :param detour: Map units added to a goal's cost per hurting item on its path.
    :param lookahead: Map units of a heading checked for hurting items and walls.
    """

    def __init__(
        self,
        error_rate: float = 0.0,
        seed: int | None = None,
        turn_angle: float = 35.0,
        aim_angle: float = 8.0,
        clearance: float = 44.0,
        detour: float = 400.0,
        lookahead: float = 100.0,
    ) -> None:
        self.error_rate = check_probability("error_rate", error_rate)
        self.rng = np.random.default_rng(seed)
        self.turn_angle, self.aim_angle, self.clearance, self.detour = turn_angle, aim_angle, clearance, detour
        self.lookahead = lookahead

    def act(self, env: gym.Env) -> int:
        doom = env.unwrapped
        if not isinstance(doom, ViZDoomTwoColorsEnv):
            raise TypeError(f"TwoColorsExpert needs a ViZDoomTwoColorsEnv, got {type(doom).__name__}")
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return int(self.rng.integers(len(ACTIONS)))
        x, y, angle = doom.pose()
        player = np.array([x, y])
        heals, hurts = _items(doom)
        if not len(heals):
            return 0
        cost = np.linalg.norm(heals - player, axis=1)
        if len(hurts):
            cost += self.detour * np.array([(_path_distance(player, h, hurts) < self.clearance).sum() for h in heals])
        off = self.heading(player, heals[np.argmin(cost)], hurts) - angle
        off = (off + 180.0) % 360.0 - 180.0  # > 0: turn left
        if abs(off) > self.turn_angle:
            return 0 if off > 0 else 1
        if abs(off) > self.aim_angle:
            return 3 if off > 0 else 4
        return 2

    def heading(self, player: np.ndarray, goal: np.ndarray, hurts: np.ndarray) -> float:
        """The heading (degrees, out of 24) whose next ``lookahead`` units, or fewer up to ``goal``, pass no hurting
        item closer than ``clearance`` nor leave the room, and end nearest ``goal``."""
        headings = np.arange(0.0, 360.0, 15.0)
        reach = min(self.lookahead, float(np.linalg.norm(goal - player)))
        ends = player + reach * np.stack([np.cos(np.radians(headings)), np.sin(np.radians(headings))], axis=1)
        margin = 24.0
        blocked = ((ends < margin) | (ends > scenario.ROOM_SIZE - margin)).any(axis=1)
        if len(hurts):
            blocked |= np.array([(_path_distance(player, end, hurts) < self.clearance).any() for end in ends])
        score = np.linalg.norm(ends - goal, axis=1) + 1e4 * blocked
        return float(headings[np.argmin(score)])


def _items(env: ViZDoomTwoColorsEnv) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(n, 2)`` of the healing items and of the hurting items in the room now."""
    other = scenario.COLORS[1 - scenario.COLORS.index(env.pillar_color)]
    good, bad = scenario.item_class(env.pillar_color, True), scenario.item_class(other, False)
    objects = env.objects()
    heals = np.array([(x, y) for name, x, y in objects if name == good], dtype=float).reshape(-1, 2)
    hurts = np.array([(x, y) for name, x, y in objects if name == bad], dtype=float).reshape(-1, 2)
    return heals, hurts


def _path_distance(start: np.ndarray, end: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of each of ``points`` from the segment ``start``-``end``."""
    direction = end - start
    length = max(float(direction @ direction), 1e-9)
    along = np.clip((points - start) @ direction / length, 0.0, 1.0)
    return np.linalg.norm(points - (start + along[:, None] * direction), axis=1)
