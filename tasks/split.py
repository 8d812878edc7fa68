"""Holdout split: train / validation / test row positions, reproducible from the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from mallard.errors import InputError
from mallard.spec import SplitSection

MIN_TRAIN_ROWS = 20


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def random_split(n_rows: int, section: SplitSection, seed: int, folds: int) -> Split:
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = max(1, round(n_rows * section.test))
    n_validation = max(1, round(n_rows * section.validation))
    n_train = n_rows - n_test - n_validation
    if n_train < max(MIN_TRAIN_ROWS, folds * 2):
        raise InputError(
            f"only {n_rows} valid rows: too few to hold out {section.test:.0%} for test and "
            f"{section.validation:.0%} for validation and still cross-validate {folds} folds"
        )
    return Split(
        train=np.sort(order[:n_train]),
        validation=np.sort(order[n_train : n_train + n_validation]),
        test=np.sort(order[n_train + n_validation :]),
    )


@task(name="split", cache_policy=NO_CACHE)
def split_rows(n_rows: int, section: SplitSection, seed: int, folds: int) -> Split:
    return random_split(n_rows, section, seed, folds)
