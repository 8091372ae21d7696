"""RL Zoo integration, end to end: zoo/train.py and zoo/enjoy.py in subprocesses on a tiny config."""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna
import pytest
import yaml
from stable_baselines3.common.env_util import make_vec_env

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.collect import collect_episodes
from rate_sb3.data import Episode, save_episodes
from rate_sb3.envs import make_expert
from rate_sb3.zoo import (
    SAMPLED_KEYS,
    SEARCH_SPACE,
    command_line_hyperparams,
    convert_rate_params,
    prepare_train_argv,
    register,
    sample_rate_params,
)
from rate_sb3.zoo_checks import ZooConfigError
from rate_sb3.zoo_sweeps import Heartbeat, PretrainingTrialEvalCallback, pop_heartbeat_flags

REPO = Path(__file__).resolve().parents[1]
TRAIN, ENJOY = str(REPO / "zoo" / "train.py"), str(REPO / "zoo" / "enjoy.py")
CARTPOLE, TMAZE, MINIGRID = "CartPoleNoVel-v1", "TMaze-v0", "MiniGrid-MemoryS7-v0"
TINY_MODEL = {
    "policy": "RATEPolicy",
    "env_wrapper": "rate_sb3.wrappers.PrevRewardWrapper",
    "context_len": 4,
    "n_segments": 2,
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 2,
    "n_mem_tokens": 2,
    "batch_size": 4,
    "warmup_steps": 2,
}
TINY_RATE = {key: value for key, value in TINY_MODEL.items() if key not in ("policy", "env_wrapper")}


def predict_steps(model: RATE, venv, n_steps: int) -> None:
    """Step ``venv`` ``n_steps`` times with the model's stateful ``predict``; every action is in the action space."""
    observations, state, starts = venv.reset(), None, np.ones(venv.num_envs, bool)
    for _ in range(n_steps):
        actions, state = model.predict(observations, state, starts)
        assert all(venv.action_space.contains(action) for action in actions)
        observations, _, starts, _ = venv.step(actions)


CONFIG = {
    CARTPOLE: {
        **TINY_MODEL,
        "n_envs": 2,
        "n_timesteps": 200,
        "learning_rate": "lin_3e-4",
        "demonstrations": {
            "expert": "privileged",
            "n_episodes": 4,
            "expert_kwargs": {"error_rate": 0.51, "seed": 0},
            "cache": "demos/cartpole.npz",  # relative: resolved against the run's working directory
        },
        "n_pretrain_steps": 10,
        "train_freq": 100,
        "gradient_steps": 2,
    },
    TMAZE: {
        **TINY_MODEL,
        "online": False,
        "n_envs": 1,
        "n_timesteps": 6,
        "env_kwargs": {"corridor_length": [1, 2, 3]},
        "demonstrations": {"expert": "privileged", "n_episodes": 8, "cache": "demos/tmaze.npz"},
        "policy_kwargs": "dict(optimizer_kwargs=dict(eps=1e-6))",
    },
}


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with one torch thread (the machine is shared); fail with its output if ``check``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def train(cwd: Path, env_id: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, TRAIN, "--algo", "rate", "--env", env_id, "-conf", "tiny.yml", *extra], cwd, check)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zoo")
    (path / "tiny.yml").write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Path:
    """An online run (pretraining, fine-tuning, evaluation) with tensorboard, progress bar and replay buffer."""
    flags = ["-tb", "tb", "-P", "--eval-freq", "100", "--eval-episodes", "2", "--save-replay-buffer"]
    train(workdir, CARTPOLE, *flags, "-f", "logs", "--seed", "1")
    return workdir / "logs" / "rate" / f"{CARTPOLE}_1"


@pytest.fixture(scope="module")
def study(workdir: Path) -> optuna.Study:
    """A 2-trial offline sweep run by two processes sharing one journal storage."""
    flags = ["-optimize", "--n-trials", "1", "--n-evaluations", "2", "--pruner", "median", "--eval-episodes", "2"]
    storage = ["--storage", "study.log", "--study-name", "s", "--no-optim-plots", "-f", "sweep"]
    command = [sys.executable, TRAIN, "--algo=rate", "--env", TMAZE, "-conf", "tiny.yml", *flags, *storage]
    workers = [start(command, workdir) for _ in range(2)]
    for worker in workers:
        output = worker.communicate(timeout=240)[0]
        assert worker.returncode == 0, output[-3000:]
    backend = optuna.storages.journal.JournalFileBackend(str(workdir / "study.log"))
    return optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(backend))


# ------------------------------------------------------------------------------------------------ training
def test_train_writes_model_tensorboard_and_curves(trained: Path, workdir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name in (f"{CARTPOLE}.zip", "best_model.zip", "evaluations.npz", "replay_buffer.pkl"):
        assert (trained / name).is_file(), name
    assert (workdir / "demos" / "cartpole.npz").is_file()  # the expert spec's cache, relative to the CWD
    (event_file,) = (workdir / "tb" / CARTPOLE).glob("RATE_1/events.out.tfevents.*")
    accumulator = EventAccumulator(str(event_file))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    for prefix in ("pretrain/", "rollout/", "train/", "eval/"):
        assert any(tag.startswith(prefix) for tag in tags), (prefix, tags)


def test_evaluate_cli_on_zoo_zip(trained: Path, workdir: Path) -> None:
    model = str(trained / f"{CARTPOLE}.zip")
    command = [sys.executable, "-m", "rate_sb3.evaluate", "--model", model, "--env", CARTPOLE, "--episodes", "2"]
    result = run(command, workdir)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env"] == CARTPOLE and summary["episodes"] == 2
    assert summary["mean_return"] >= 1


def test_zoo_zip_loads_without_rl_zoo3(trained: Path, workdir: Path) -> None:
    """rl_zoo3's schedule classes must not be pickled into the zip (pitfall 6)."""
    script = (
        "import sys; sys.modules['rl_zoo3'] = None\n"
        "import numpy as np\n"
        "from rate_sb3 import RATE\n"
        f"model = RATE.load({str(trained / (CARTPOLE + '.zip'))!r})\n"
        "assert not type(model.learning_rate).__module__.startswith('rl_zoo3'), type(model.learning_rate)\n"
        "obs = {'observation': np.zeros((1, 4), np.float32), 'prev_reward': np.zeros((1, 1), np.float32)}\n"
        "action, state = model.predict(obs, None, np.ones(1, bool))\n"
        "print('loaded', model.lr_schedule(1.0), action)\n"
    )
    assert "loaded" in run([sys.executable, "-c", script], workdir).stdout


def test_continue_training_with_replay_buffer(trained: Path, workdir: Path) -> None:
    zip_path = str(trained / f"{CARTPOLE}.zip")
    flags = ["-i", zip_path, "-n", "100", "--eval-freq", "-1", "--save-replay-buffer", "-f", "logs", "--seed", "2"]
    output = train(workdir, CARTPOLE, *flags).stdout
    assert "Loading pretrained agent" in output and "Loading replay buffer" in output
    continued = workdir / "logs" / "rate" / f"{CARTPOLE}_2"
    assert (continued / f"{CARTPOLE}.zip").is_file() and (continued / "replay_buffer.pkl").is_file()


def test_enjoy(trained: Path, workdir: Path) -> None:
    command = [sys.executable, ENJOY, "--algo", "rate", "--env", CARTPOLE, "-f", "logs", "--exp-id", "1"]
    output = run([*command, "--no-render", "-n", "50"], workdir).stdout
    assert "Loading" in output and "Mean reward" in output


def test_frame_stacked_images_train_enjoy_and_evaluate(workdir: Path) -> None:
    """rl_zoo3 stacks frames (VecFrameStack) before it makes images channel-first (VecTransposeImage); the stacked
    previous reward reaches predict in training, in enjoy and in rate_sb3.evaluate, which reads the frame stack
    from the run's config.yml."""
    entry = {
        **TINY_MODEL,
        "env_wrapper": [
            "minigrid.wrappers.ImgObsWrapper",
            "rate_sb3.wrappers.SuccessFromReward",
            "rate_sb3.wrappers.PrevRewardWrapper",
        ],
        "frame_stack": 2,
        "n_envs": 1,
        "n_timesteps": 40,
        "demonstrations": {"expert": "privileged", "n_episodes": 2},  # recorded on the stacked training env
        "n_pretrain_steps": 2,
        "train_freq": 20,
        "gradient_steps": 1,
    }
    (workdir / "stacked.yml").write_text(yaml.safe_dump({MINIGRID: entry}))
    command = [sys.executable, TRAIN, "--algo", "rate", "--env", MINIGRID, "-conf", "stacked.yml"]
    run([*command, "-f", "stacked", "--seed", "1", "--eval-freq", "-1"], workdir)
    model = workdir / "stacked" / "rate" / f"{MINIGRID}_1" / f"{MINIGRID}.zip"
    evaluate = [sys.executable, "-m", "rate_sb3.evaluate", "--model", str(model), "--env", MINIGRID, "--episodes", "1"]
    summary = json.loads(run(evaluate, workdir).stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 1 and summary["mean_length"] >= 1
    enjoy = [sys.executable, ENJOY, "--algo", "rate", "--env", MINIGRID, "-f", "stacked", "--exp-id", "1"]
    assert "Loading" in run([*enjoy, "--no-render", "-n", "30"], workdir).stdout


# ------------------------------------------------------------------------------------------------ sweeps
def test_offline_sweep_shared_by_two_processes(study: optuna.Study) -> None:
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        assert np.isfinite(trial.value), "an offline (online: false) trial must be evaluated, not -inf"
        assert set(trial.params) == set(SAMPLED_KEYS)


def test_trial_id_reload_and_eval_env_kwargs(study: optuna.Study, workdir: Path) -> None:
    """--trial-id loads the sampled values; YAML env_kwargs reach the eval env (pitfall 3); offline evaluations."""
    flags = ["--storage", "study.log", "--study-name", "s", "--trial-id", "1", "--eval-freq", "3"]
    output = train(workdir, TMAZE, *flags, "--eval-episodes", "2", "-f", "reload").stdout
    assert "Loading from Optuna study" in output
    run_dir = next((workdir / "reload" / "rate").glob(f"{TMAZE}_*"))
    config = dict(yaml.unsafe_load((run_dir / TMAZE / "config.yml").read_text()))
    for key, value in convert_rate_params(study.trials[1].params).items():
        assert config[key] == value, key
    assert config["policy_kwargs"] == CONFIG[TMAZE]["policy_kwargs"]  # the sampler left the YAML's alone
    evaluations = np.load(run_dir / "evaluations.npz")
    assert len(evaluations["timesteps"]) == 2 and np.isfinite(evaluations["results"]).all()
    assert evaluations["ep_lengths"].max() <= 5, "the eval env ignored corridor_length [1, 2, 3] (L + 2 steps)"


def test_trial_id_zero_becomes_params(study: optuna.Study, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rl_zoo3 ignores --trial-id 0 (a truth test): its values are passed as -params instead."""
    monkeypatch.chdir(workdir)
    base = ["train.py", "--algo", "rate", "--env", TMAZE, "-conf", "tiny.yml", "--storage", "study.log"]
    argv = prepare_train_argv([*base, "--study-name", "s", "--trial-id", "0"], REPO / "hyperparams")
    items = list(itertools.takewhile(lambda item: not item.startswith("-"), argv[argv.index("-params") + 1 :]))
    values = {item.split(":", 1)[0]: ast.literal_eval(item.split(":", 1)[1]) for item in items}
    assert values == convert_rate_params(study.trials[0].params)
    with pytest.raises(ZooConfigError, match="--trial-id 0"):
        prepare_train_argv([*base, "--study-name", "s", "--trial-id", "0", "-params", "n_layers:1"], REPO)


# ------------------------------------------------------------------------------------------------ bad input
def write_episodes(path: Path, observation_shape: tuple[int, ...]) -> None:
    observations = np.zeros((4, *observation_shape), np.float32)
    save_episodes([Episode(observations, np.zeros(3, np.int64), np.zeros(3, np.float32), True, False)], path)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "TMaze-v9"], ["unknown env id 'TMaze-v9'", "TMaze-v0"]),
        (["--env", TMAZE, "-params", "n_layerz:2"], ["unknown key(s) ['n_layerz']", "n_layers", f"entry '{TMAZE}'"]),
        (["--env", TMAZE, "-params", "demonstrations:'demos/missing.npz'"], ["'demonstrations'", "demos/missing.npz"]),
        (["--env", TMAZE, "-params", "demonstrations:'wrong_shape.npz'"], ["wrong_shape.npz", "shape (3,)"]),
    ],
    ids=["env-id", "yaml-key", "missing-demonstrations", "mismatched-demonstrations"],
)
def test_bad_input_stops_before_training(workdir: Path, args: list[str], expected: list[str]) -> None:
    write_episodes(workdir / "wrong_shape.npz", (3,))
    command = [sys.executable, TRAIN, "--algo", "rate", "-conf", "tiny.yml", *args, "-f", "bad_logs"]
    result = run(command, workdir, check=False)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    assert not (workdir / "bad_logs").exists()


def test_checks_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other checks, without a subprocess each."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yml").write_text(yaml.safe_dump(CONFIG))
    base = ["train.py", "--algo", "rate", "-conf", "tiny.yml", "--env", TMAZE]
    spec = "demonstrations:dict(expert='privileged', n_episodes={}, expert_kwargs=dict({}))"
    cases = {
        "['seed'] are set by rl_zoo3": ["-params", "seed:3"],
        "'demonstrations.expert_kwargs'": ["-params", spec.format(2, "eror_rate=0.1")],
        "'demonstrations.n_episodes'": ["-params", spec.format(0, "")],
        "PrevRewardWrapper": ["-params", "env_wrapper:None"],
        "online: false": ["-params", "demonstrations:None"],
    }
    cases["--vec-env dummy"] = ["--vec-env", "subproc"]
    for expected, extra in cases.items():
        with pytest.raises(ZooConfigError, match=expected.replace("[", r"\[").replace("(", r"\(")):
            prepare_train_argv(base + extra, REPO / "hyperparams")
    write_episodes(tmp_path / "demos" / "tmaze.npz", (3,))  # a stale cache of an expert spec is checked too
    with pytest.raises(ZooConfigError, match="demonstrations.cache"):
        prepare_train_argv(base, REPO / "hyperparams")


def test_a_postgresql_storage_without_its_driver_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    for driver in ("psycopg", "psycopg2"):  # SQLAlchemy's default for postgresql:// (2.1: psycopg; before: psycopg2)
        monkeypatch.setitem(sys.modules, driver, None)  # its import fails, as when it is not installed
    storage = "postgresql://user:secret@localhost:5432/sweeps"
    argv = ["train.py", "--algo", "rate", "--env", TMAZE, "--storage", storage, "--study-name", "s"]
    with pytest.raises(ZooConfigError) as raised:
        prepare_train_argv(argv, REPO / "hyperparams")
    message = str(raised.value)
    assert "--storage postgresql://..." in message and "pip install 'psycopg[binary]'" in message
    assert "secret" not in message


def test_argv_conf_file_and_eval_env_kwargs() -> None:
    register()
    conf = ["--conf-file", str(REPO / "hyperparams" / "rate.yml")]
    argv = prepare_train_argv(["train.py", "--algo=rate", "--env", CARTPOLE], REPO / "hyperparams")
    assert argv[-2:] == conf
    argv = prepare_train_argv(["train.py", "--algo", "rate", "--env", TMAZE], REPO / "hyperparams")
    assert argv[5:7] == conf and argv[7] == "--eval-env-kwargs"
    entry = yaml.safe_load((REPO / "hyperparams" / "rate.yml").read_text())[TMAZE]
    assert argv[8:] == [f"corridor_length:{entry['env_kwargs']['corridor_length']}"]
    given = ["train.py", "--algo", "rate", "--env", TMAZE, "--eval-env-kwargs", "corridor_length:148"]
    assert prepare_train_argv(given, REPO / "hyperparams") == [*given, *conf]
    assert prepare_train_argv(["train.py", "--algo", "ppo"], REPO / "hyperparams") == ["train.py", "--algo", "ppo"]
    argv = prepare_train_argv(["train.py", "--algo", "ppo_lstm", "--env", CARTPOLE], REPO / "hyperparams")
    assert argv[-1] == str(REPO / "hyperparams" / "ppo_lstm.yml")


@pytest.mark.parametrize("algo", ["rate", "ppo_lstm"])
def test_repo_configs_pass_the_checks(algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no demonstration caches here: only the specs are checked
    register()
    config = yaml.safe_load((REPO / "hyperparams" / f"{algo}.yml").read_text())
    assert {TMAZE, CARTPOLE, "PendulumNoVel-v1", "MiniGrid-MemoryS7-v0", "MiniGrid-MemoryS13Random-v0"} < set(config)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))  # no datasets: made by a benchmark
    for env_id in config:
        env_id = "Acrobot-v1" if env_id == "default" else env_id
        argv = ["train.py", "--algo", algo, "--env", env_id]
        if env_id.startswith("rate_sb3/"):  # the D4RL-style MuJoCo entries say how to make their datasets
            with pytest.raises(ZooConfigError, match=r"benchmarks/mujoco_datasets.py --env"):
                prepare_train_argv(argv, REPO / "hyperparams")
        else:
            prepare_train_argv(argv, REPO / "hyperparams")


# ------------------------------------------------------------------------------------------------ sampler
def test_register_is_idempotent() -> None:
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    register()
    register()
    assert rl_zoo3.ALGOS["rate"] is RATE
    assert HYPERPARAMS_SAMPLER["rate"] is sample_rate_params
    assert HYPERPARAMS_CONVERTER["rate"] is convert_rate_params


@pytest.mark.parametrize("n_actions", [0, 1, 3])
def test_sampler_gives_top_level_arguments_and_converter_reproduces_them(n_actions: int) -> None:
    """No policy_kwargs (they would replace the YAML's: pitfall 5); the converter gives back the sample."""
    accepted = set(inspect.signature(RATE.__init__).parameters)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        sampled = sample_rate_params(trial, n_actions, 1, {})
        assert "policy_kwargs" not in sampled and set(sampled) <= accepted
        assert convert_rate_params(trial.params) == sampled
        assert (sampled["target_entropy"] < 0) == (n_actions > 0)
        study.tell(trial, 0.0)


def test_keys_given_with_params_are_held_fixed_in_a_sweep() -> None:
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    trial = optuna.create_study().ask()
    sampled = sample_rate_params(trial, 0, 1, {}, held_fixed={"n_pretrain_steps", "learning_rate"})
    assert not {"n_pretrain_steps", "learning_rate"} & (set(sampled) | set(trial.params))
    assert set(sampled) == set(SAMPLED_KEYS) - {"n_pretrain_steps", "learning_rate"}
    given = ["train.py", "--algo", "rate", "--env", CARTPOLE, "-params", "n_pretrain_steps:500"]
    argv = prepare_train_argv(given, REPO / "hyperparams")
    register(held_fixed=command_line_hyperparams(argv))
    try:
        assert "n_pretrain_steps" not in HYPERPARAMS_SAMPLER["rate"](optuna.create_study().ask(), 0, 1, {})
    finally:
        register()


def test_every_sampled_architecture_is_valid() -> None:
    for n_heads, d_model in itertools.product(SEARCH_SPACE["n_heads"], SEARCH_SPACE["d_model"]):
        assert d_model % n_heads == 0 and d_model % 2 == 0, (n_heads, d_model)
    smallest: dict[str, Any] = {key: min(values) for key, values in SEARCH_SPACE.items()}
    largest: dict[str, Any] = {key: max(values) for key, values in SEARCH_SPACE.items()}
    for params in (smallest, largest):
        model = RATE("RATEPolicy", TMAZE, target_return=1.0, learning_rate=1e-4, target_entropy=0.1, **params)
        assert model.policy is not None


# ------------------------------------------------------------------------------------------------ sweeps on a database
HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]  # the killed worker's trial fails 3 s after
SLOW_MACHINE_TIMEOUT = 900  # seconds: two workers and their imports took over 240 s on a 2-core machine at load 30


def sweep(storage: str, study_name: str, *extra: str) -> list[str]:
    """A zoo/train.py sweep of the offline T-Maze entry on ``storage``."""
    flags = ["-optimize", "--n-evaluations", "2", "--eval-episodes", "2", "--no-optim-plots", "-f", "sweep"]
    flags += ["--storage", storage, "--study-name", study_name]
    return [sys.executable, TRAIN, "--algo", "rate", "--env", TMAZE, "-conf", "tiny.yml", *flags, *extra]


def test_two_workers_share_a_postgresql_study(postgres_url: str, workdir: Path) -> None:
    workers = [start(sweep(postgres_url, "two_workers", "--n-trials", "1"), workdir) for _ in range(2)]
    try:
        for worker in workers:
            output = worker.communicate(timeout=SLOW_MACHINE_TIMEOUT)[0]
            assert worker.returncode == 0, output[-3000:]
    finally:
        for worker in workers:
            worker.kill()
    trials = optuna.load_study(study_name="two_workers", storage=postgres_url).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(np.isfinite(trial.value) for trial in trials)


def wait_for_a_sampled_trial_with_a_heartbeat(storage: str, study_name: str, worker: subprocess.Popen) -> None:
    """Until a running trial has all its parameters and has sent a heartbeat (Optuna fails no trial without one)."""
    import sqlalchemy

    query = sqlalchemy.text(  # Optuna's schema
        "SELECT count(*) FROM trial_heartbeats h JOIN trials t ON h.trial_id = t.trial_id "
        "JOIN studies s ON t.study_id = s.study_id WHERE s.study_name = :name"
    )
    engine = sqlalchemy.create_engine(storage)
    try:
        for _ in range(2 * SLOW_MACHINE_TIMEOUT):
            if worker.poll() is not None:
                pytest.fail(f"the worker ended before its trial ran:\n{worker.communicate()[0][-3000:]}")
            try:
                with engine.connect() as connection:
                    beating = connection.execute(query, {"name": study_name}).scalar()
                if beating:  # the trial exists; its parameters are sampled inside the objective
                    (trial,) = optuna.load_study(study_name=study_name, storage=storage).trials
                    if set(trial.params) == set(SAMPLED_KEYS):
                        return
            except sqlalchemy.exc.ProgrammingError:  # the worker has not created Optuna's tables yet
                pass
            time.sleep(0.5)
    finally:
        engine.dispose()
    pytest.fail(f"no trial sent a heartbeat in {SLOW_MACHINE_TIMEOUT} s")


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_a_killed_workers_trial_is_marked_failed_and_retried(postgres_url: str, workdir: Path) -> None:
    """A worker killed mid-trial: its heartbeat stops, the next worker fails the trial and retries its parameters."""
    worker = start(sweep(postgres_url, "killed", "--n-trials", "1", "-n", "100000", *HEARTBEAT), workdir)
    try:
        wait_for_a_sampled_trial_with_a_heartbeat(postgres_url, "killed", worker)
    finally:
        worker.kill()
        worker.communicate()
    (orphan,) = optuna.load_study(study_name="killed", storage=postgres_url).trials
    assert orphan.state == optuna.trial.TrialState.RUNNING  # until a worker notices
    time.sleep(4)  # longer than the grace period
    next_worker = start(sweep(postgres_url, "killed", "--n-trials", "1", "-n", "6", *HEARTBEAT), workdir)
    try:
        output = next_worker.communicate(timeout=SLOW_MACHINE_TIMEOUT)[0]
        assert next_worker.returncode == 0, output[-3000:]
    finally:
        next_worker.kill()
    failed, retry = optuna.load_study(study_name="killed", storage=postgres_url).trials
    assert failed.state == optuna.trial.TrialState.FAIL and retry.state == optuna.trial.TrialState.COMPLETE
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == failed.number
    assert retry.params == failed.params


def test_heartbeat_flags_are_read_and_checked() -> None:
    argv, heartbeat = pop_heartbeat_flags(["train.py", "--heartbeat-interval", "5", "--grace-period=20", "-n", "3"])
    assert argv == ["train.py", "-n", "3"] and heartbeat == Heartbeat(interval=5, grace_period=20, max_retry=3)
    with pytest.raises(ZooConfigError, match="--grace-period 5 must be longer than --heartbeat-interval 5"):
        pop_heartbeat_flags(["train.py", "--heartbeat-interval", "5", "--grace-period", "5"])
    with pytest.raises(ZooConfigError, match="--max-retry takes a whole number"):
        pop_heartbeat_flags(["train.py", "--max-retry", "often"])


class PruneAtFirstReport(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return len(trial.intermediate_values) > 0


def test_a_trial_reports_during_pretraining_and_is_pruned_before_acting_online() -> None:
    from rl_zoo3 import exp_manager

    register()
    assert exp_manager.TrialEvalCallback is PretrainingTrialEvalCallback  # what sweeps build for their trials
    study = optuna.create_study(direction="maximize", pruner=PruneAtFirstReport())
    trial = study.ask()
    make_env = lambda: gym.make(TMAZE, corridor_length=2)  # noqa: E731
    demonstrations = collect_episodes(make_expert(TMAZE), make_env, 4, seed=0)
    model = RATE("RATEPolicy", make_env(), demonstrations=demonstrations, n_pretrain_steps=10, seed=0, **TINY_RATE)
    eval_env = make_vec_env(make_env, wrapper_class=PrevRewardWrapper)
    callback = PretrainingTrialEvalCallback(eval_env, trial, n_eval_episodes=1, eval_freq=1)  # online: every step
    model.learn(20, callback=callback)
    assert callback.is_pruned and model.num_timesteps == 0, "pruned at an online evaluation, not in pretraining"
    assert list(study.trials[0].intermediate_values) == [1] and model._pretrain_steps_done == 5  # half-way


def test_a_sweep_of_an_online_entry_reports_during_pretraining_with_params_held_fixed(workdir: Path) -> None:
    """Reports 1 and 2 come from pretraining, 3 and 4 from the online evaluations; -params keys are not sampled."""
    held = {"n_pretrain_steps": 4, "batch_size": 4, "context_len": 4, "d_model": 16, "n_layers": 1, "n_heads": 2}
    held.update(n_mem_tokens=2, gradient_steps=2)
    flags = ["-optimize", "--n-trials", "1", "--n-evaluations", "2", "--eval-episodes", "1", "--no-optim-plots"]
    flags += ["--storage", "online.log", "--study-name", "online", "-f", "online_sweep", "-n", "200"]
    train(workdir, CARTPOLE, *flags, "-params", *(f"{key}:{value}" for key, value in held.items()))
    backend = optuna.storages.journal.JournalFileBackend(str(workdir / "online.log"))
    (trial,) = optuna.load_study(study_name="online", storage=optuna.storages.JournalStorage(backend)).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2, 3, 4]
    assert set(trial.params) == set(SAMPLED_KEYS) - set(held)
