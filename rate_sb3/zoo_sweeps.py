"""Optuna sweeps of the RL Zoo across machines: a heartbeat on database storages, and trials that report during
pretraining.

rl_zoo3 hands ``--storage`` to ``optuna.create_study`` as a string, which makes a plain ``RDBStorage``: a worker
killed mid-trial leaves its trial RUNNING forever. :func:`heartbeat_storage` gives ``create_study`` a storage with
a heartbeat instead, so that the next trial started by any worker marks a trial whose heartbeat stopped as FAIL
and enqueues a retry with the same parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``). ``zoo/train.py``
takes the settings from its flags ``--heartbeat-interval``, ``--grace-period`` and ``--max-retry``
(:func:`pop_heartbeat_flags`).

RATE's ``learn`` pretrains before it takes an env step, and rl_zoo3's ``TrialEvalCallback`` only counts env steps,
so a trial reported nothing until online evaluation. :class:`PretrainingTrialEvalCallback` also evaluates at
:data:`PRETRAIN_EVALUATIONS` evenly spaced points of pretraining and reports them to the trial, so the pruner can
stop a bad trial before its online phase; :func:`rate_sb3.zoo.register` makes rl_zoo3 build it for every trial.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy.exc
from rl_zoo3.callbacks import TrialEvalCallback

from rate_sb3.zoo_checks import ZooConfigError

PRETRAIN_EVALUATIONS = 2
"""Evaluations reported during pretraining (half-way and at the end): a fixed number, so that a trial's report
``k`` is at the same stage of every trial whatever its sampled ``n_pretrain_steps``."""

TABLE_CREATION_ATTEMPTS = 5


@dataclass(frozen=True)
class Heartbeat:
    """The heartbeat of trials on a database storage.

    :param interval: seconds between a running trial's heartbeats (0: no heartbeat, a killed worker's trial stays
        RUNNING)
    :param grace_period: seconds without a heartbeat after which a running trial counts as dead (default:
        twice the interval)
    :param max_retry: times a dead trial is retried with the same parameters
    """

    interval: int = 60
    grace_period: int | None = None
    max_retry: int = 3

    def __post_init__(self) -> None:
        if self.interval < 0 or self.max_retry < 0:
            raise ZooConfigError(f"--heartbeat-interval {self.interval} and --max-retry {self.max_retry} must be >= 0")
        if self.grace_period is not None and self.grace_period <= self.interval:
            raise ZooConfigError(
                f"--grace-period {self.grace_period} must be longer than --heartbeat-interval {self.interval}, "
                "or a live trial would be marked failed between two heartbeats"
            )

    def storage(self, url: str) -> optuna.storages.RDBStorage:
        """A storage on the database ``url`` with this heartbeat and retry of dead trials."""
        heartbeat: dict[str, Any] = {}
        if self.interval > 0:
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(self.max_retry)
            heartbeat = dict(heartbeat_interval=self.interval, grace_period=self.grace_period)
            heartbeat.update(heartbeat_stale_trial_callback=retry)
        for _ in range(TABLE_CREATION_ATTEMPTS - 1):
            try:
                return optuna.storages.RDBStorage(url, **heartbeat)
            except sqlalchemy.exc.IntegrityError:
                # workers started together race to create Optuna's tables in a new database: the losers find a
                # half-made schema; once the winner is done, the tables are there
                time.sleep(1.0 + random.random())
        return optuna.storages.RDBStorage(url, **heartbeat)


HEARTBEAT_FLAGS = {"--heartbeat-interval": "interval", "--grace-period": "grace_period", "--max-retry": "max_retry"}


def pop_heartbeat_flags(argv: list[str]) -> tuple[list[str], Heartbeat]:
    """Remove ``zoo/train.py``'s heartbeat flags (rl_zoo3 does not know them) from ``argv`` and read them.

    :param argv: command line; the flags take an integer: ``--heartbeat-interval 60`` or ``--heartbeat-interval=60``
    :return: the command line without them, and the heartbeat they set
    """
    rest, values = [], {}
    items = iter(argv)
    for item in items:
        flag, has_value, value = item.partition("=")
        if flag not in HEARTBEAT_FLAGS:
            rest.append(item)
            continue
        value = value if has_value else next(items, "")
        try:
            values[HEARTBEAT_FLAGS[flag]] = int(value)
        except ValueError as error:
            raise ZooConfigError(f"{flag} takes a whole number of seconds (or retries), got {value!r}") from error
    return rest, Heartbeat(**values)


def is_database_url(storage: Any) -> bool:
    """Whether rl_zoo3 hands ``storage`` to Optuna as a database URL (a ``.log`` path is a journal file)."""
    return isinstance(storage, str) and not storage.endswith(".log")


@contextmanager
def heartbeat_storage(heartbeat: Heartbeat) -> Iterator[None]:
    """While inside, ``optuna.create_study`` opens database URLs with ``heartbeat`` (how rl_zoo3 creates a study).

    :param heartbeat: the heartbeat settings
    """
    create_study = optuna.create_study

    def create_study_with_heartbeat(*args: Any, storage: Any = None, **kwargs: Any) -> optuna.Study:
        if is_database_url(storage):
            storage = heartbeat.storage(storage)
        return create_study(*args, storage=storage, **kwargs)

    optuna.create_study = create_study_with_heartbeat
    try:
        yield
    finally:
        optuna.create_study = create_study


class PretrainingTrialEvalCallback(TrialEvalCallback):
    """rl_zoo3's ``TrialEvalCallback`` that also evaluates and reports during RATE's pretraining.

    RATE's ``learn`` calls ``on_pretrain_step`` after each pretraining step; the callback evaluates at
    :data:`PRETRAIN_EVALUATIONS` evenly spaced steps, reports each to the trial like an online evaluation
    (reports 1, 2, ...; online evaluations follow) and stops ``learn`` when the trial should be pruned.
    """

    def on_pretrain_step(self, step: int, n_steps: int) -> bool:
        """Evaluate and report at the evaluation points of pretraining.

        :param step: pretraining steps done (1 to ``n_steps``)
        :param n_steps: pretraining steps ``learn`` runs
        :return: False when the trial should be pruned
        """
        points = {math.ceil(n_steps * k / PRETRAIN_EVALUATIONS) for k in range(1, PRETRAIN_EVALUATIONS + 1)}
        if step not in points:
            return True
        eval_freq, self.eval_freq = self.eval_freq, 1  # TrialEvalCallback evaluates when n_calls % eval_freq == 0
        try:
            return self._on_step()
        finally:
            self.eval_freq = eval_freq
