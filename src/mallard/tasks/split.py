"""Holdout split: train / validation / test row positions, reproducible from the seed.

random: shuffled; stratified: class proportions kept in every split; time: ordered by a column,
the latest rows are the test split; group: every group (e.g. a customer) sits in one split only.

scikit-learn's splitters are imported inside the two splits that use them: importing
scikit-learn costs ~1 s, which every command paid at start-up because the flows import this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mallard.core.errors import InputError
from mallard.core.spec import SplitSection

MIN_TRAIN_ROWS = 20


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def make_split(
    n_rows: int,
    section: SplitSection,
    seed: int,
    folds: int,
    y: np.ndarray | None = None,
    key: np.ndarray | None = None,
) -> Split:
    """`y` drives a stratified split; `key` is the time column or the group labels."""
    positions = np.arange(n_rows)
    holdout = section.test + section.validation
    if section.strategy == "time":
        assert key is not None
        order = np.argsort(key, kind="stable")  # oldest first; ties keep input order
        n_train = n_rows - round(n_rows * holdout)
        n_validation = round(n_rows * section.validation)
        split = Split(
            np.sort(order[:n_train]),
            np.sort(order[n_train : n_train + n_validation]),
            np.sort(order[n_train + n_validation :]),
        )
    elif section.strategy == "group":
        assert key is not None
        split = _group_split(positions, key, section, seed)
    elif section.strategy == "stratified":
        split = _stratified_split(positions, section, seed, y)
    else:
        order = np.random.default_rng(seed).permutation(n_rows)
        n_test = max(1, round(n_rows * section.test))
        n_validation = max(1, round(n_rows * section.validation))
        n_train = n_rows - n_test - n_validation
        split = Split(
            np.sort(order[:n_train]),
            np.sort(order[n_train : n_train + n_validation]),
            np.sort(order[n_train + n_validation :]),
        )
    _check_sizes(n_rows, split, section, folds)
    return split


def _stratified_split(
    positions: np.ndarray, section: SplitSection, seed: int, stratify: np.ndarray | None
) -> Split:
    from sklearn.model_selection import train_test_split

    holdout = section.test + section.validation
    try:
        train, rest = train_test_split(
            positions, test_size=holdout, random_state=seed, stratify=stratify
        )
        rest_stratify = None if stratify is None else stratify[rest]
        validation, test = train_test_split(
            rest,
            test_size=section.test / holdout,
            random_state=seed,
            stratify=rest_stratify,
        )
    except ValueError as exc:  # e.g. a class with a single row cannot be stratified
        raise InputError(f"[split] cannot split the rows this way: {exc}") from None
    return Split(np.sort(train), np.sort(validation), np.sort(test))


def _group_split(
    positions: np.ndarray, groups: np.ndarray, section: SplitSection, seed: int
) -> Split:
    from sklearn.model_selection import GroupShuffleSplit

    if len(np.unique(groups)) < 3:
        raise InputError("[split.column] a group split needs at least three distinct groups")
    holdout = section.test + section.validation
    outer = GroupShuffleSplit(n_splits=1, test_size=holdout, random_state=seed)
    train, rest = next(outer.split(positions, groups=groups))
    inner = GroupShuffleSplit(n_splits=1, test_size=section.test / holdout, random_state=seed)
    validation, test = next(inner.split(rest, groups=groups[rest]))
    return Split(np.sort(train), np.sort(rest[validation]), np.sort(rest[test]))


def _check_sizes(n_rows: int, split: Split, section: SplitSection, folds: int) -> None:
    if len(split.train) < max(MIN_TRAIN_ROWS, folds * 2) or not (
        len(split.validation) and len(split.test)
    ):
        raise InputError(
            f"only {n_rows} valid rows: too few to hold out {section.test:.0%} for test and "
            f"{section.validation:.0%} for validation and still cross-validate {folds} folds"
        )
