"""`mallard init`: a spec inferred from a data file, that parses and runs as written."""

from __future__ import annotations

import datetime as dt
import itertools
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mallard import init_spec, warehouse
from mallard.core.errors import InputError
from mallard.core.spec import Spec, load_spec
from tests.cli import mallard

runner = CliRunner()


def houses(rows: int = 300, seed: int = 3, target: str = "price") -> pl.DataFrame:
    """Seeded listings: an ID, floats with gaps, a category, ISO dates, a bool, free text, a
    mostly numeric text column with 'n/a', a signed column, and a price (or its band)."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 220, rows)
    rooms = rng.integers(1, 7, rows)
    city = rng.choice(["north", "south", "east"], rows)
    garden = rng.random(rows) < 0.4
    day0 = dt.date(2024, 1, 1)
    listed = [str(day0 + dt.timedelta(days=int(d))) for d in rng.integers(0, 365, rows)]
    price = 900 * area + 4000 * rooms + 25_000 * (city == "north") + rng.normal(0, 6000, rows)
    frame = pl.DataFrame(
        {
            "listing_id": rng.permutation(rows) + 10_000,
            "area": np.where(np.arange(rows) % 23 == 5, np.nan, area),
            "rooms": rooms,
            "city": np.where(np.arange(rows) % 31 == 7, None, city),
            "listed": listed,
            "garden": garden,
            "agent_note": [f"call agent {i % 41}" for i in range(rows)],
            "energy": [
                "n/a" if i % 60 == 11 else f"{v:.1f}"
                for i, v in enumerate(rng.normal(120, 30, rows))
            ],
            "slope": rng.normal(0, 1, rows),
            "price": price,
        }
    ).with_columns(pl.col("area").fill_nan(None))
    if target == "band":  # three price bands, as text
        low, high = np.quantile(price, [1 / 3, 2 / 3])
        band = np.where(price < low, "low", np.where(price < high, "mid", "high"))
        frame = frame.with_columns(band=pl.Series(band)).drop("price")
    return frame


def write(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path


def init(data: Path, spec: Path, *options: str) -> Spec:
    code, output = mallard("init", str(data), "-o", str(spec), *options)
    assert code == 0, output
    return load_spec(spec)


# --- inference ------------------------------------------------------------------------------


def test_infers_dtypes_checks_and_roles(tmp_path: Path) -> None:
    data = write(houses(), tmp_path / "houses.csv")
    spec_file = tmp_path / "houses.toml"
    code, output = mallard("init", str(data), "--target", "price", "-o", str(spec_file))
    assert code == 0, output
    spec = load_spec(spec_file)
    columns = spec.schema_.columns

    # the ID is declared and dropped; the date is a date and stays a feature
    assert spec.features.drop == ["listing_id"]
    assert columns["listing_id"].dtype == "int"
    assert columns["listed"].dtype == "date"
    assert "listed" not in spec.features.drop
    assert columns["city"].dtype == "str" and columns["city"].isin == ["east", "north", "south"]
    assert columns["garden"].dtype == "bool"
    assert columns["agent_note"].dtype == "str" and columns["agent_note"].isin is None  # 41 values
    # 'n/a' among numbers: a float column whose bad values will be quarantined, said in a comment
    assert columns["energy"].dtype == "float"
    assert "such as 'n/a' are not float" in spec_file.read_text()
    # nullable only where the sample has gaps
    assert columns["area"].nullable and columns["city"].nullable
    assert not columns["rooms"].nullable and not columns["listed"].nullable
    # non-negative columns get ge = 0 (not their minimum, 40 for area); signed ones no bound
    assert columns["area"].ge == 0 and columns["rooms"].ge == 0 and columns["price"].ge == 0
    assert columns["slope"].ge is None
    assert all(c.le is None and c.lt is None and c.gt is None for c in columns.values())
    # what was inferred is printed, with the next command
    assert "listing_id" in output and "ID-like" in output and "date" in output
    assert f"mallard run {spec_file}" in output


def test_id_like_unusable_and_constant_columns_are_dropped() -> None:
    rows = 60
    frame = pl.DataFrame(
        {
            "Unnamed: 0": np.arange(rows),  # a pandas index written to CSV
            "row": np.arange(rows) + 1,
            "code": [f"k{i * 7 % rows:03d}" for i in range(rows)],  # text unique per row
            "customerId": [f"c{i % 30}" for i in range(rows)],  # 30 customers: still an ID
            "store_id": [i % 4 for i in range(rows)],  # 4 values: a category, kept
            "count": np.random.default_rng(0).permutation(rows),  # unique, unordered: kept
            "constant": ["same"] * rows,
            "empty": pl.Series([None] * rows, dtype=pl.String),
            "stamp": [f"2024-03-{1 + i % 28:02d}T08:00:00+01:00" for i in range(rows)],
            "seen": [f"2024-03-{1 + i % 28:02d} 08:{i % 60:02d}:00" for i in range(rows)],
            "y": np.random.default_rng(1).normal(size=rows),
        }
    )
    draft = init_spec.infer(frame, Path("x.csv"), "y")
    roles = {c.name: (c.role, c.dtype) for c in draft.columns}
    assert roles == {
        "Unnamed: 0": ("drop", "int"),
        "row": ("drop", "int"),
        "code": ("drop", "str"),
        "customerId": ("drop", "str"),
        "store_id": ("feature", "int"),
        "count": ("feature", "int"),
        "constant": ("drop", "str"),
        "empty": ("drop", "str"),
        "stamp": ("drop", "str"),  # offsets: the validator cannot cast them
        "seen": ("feature", "datetime"),
        "y": ("target", "float"),
    }
    text = init_spec.render(draft, Path("x.toml"))
    assert '"Unnamed: 0" = { dtype = "int"' in text  # a key that needs quoting
    assert tomllib.loads(text)["features"]["drop"] == [
        "Unnamed: 0",
        "row",
        "code",
        "customerId",
        "constant",
        "empty",
        "stamp",
    ]


def test_quarantine_budget_grows_with_rows_that_will_fail() -> None:
    rows = 100
    frame = pl.DataFrame(
        {
            "x": [("bad" if i % 20 == 0 else str(i)) for i in range(rows)],  # 5 rows fail
            "y": [None if i % 25 == 1 else float(i % 13) + 0.5 for i in range(rows)],  # 4 missing
        }
    )
    draft = init_spec.infer(frame, Path("x.csv"), "y")
    assert draft.max_invalid_fraction == 0.11  # 9% of the rows, plus a margin
    assert any("9.0%" in note for note in draft.notes)
    clean = init_spec.infer(frame.filter(pl.col("y").is_not_null()).slice(1), Path("x.csv"), "y")
    assert clean.max_invalid_fraction == 0.07  # 4 of 95 rows fail
    assert init_spec.infer(frame.slice(2, 17), Path("x.csv"), "y").max_invalid_fraction == 0.05


def test_parquet_input_and_a_path_relative_to_the_spec_folder(tmp_path: Path) -> None:
    frame = houses(rows=120).with_columns(pl.col("listed").str.to_date())
    data = write(frame, tmp_path / "data" / "raw [2024].parquet")  # a glob character too
    spec_file = tmp_path / "specs" / "nested" / "houses.toml"
    spec = init(data, spec_file, "--target", "price")
    assert spec.source.path == "../../data/raw [[]2024].parquet"
    assert [path.resolve() for path in spec.source_files()] == [data.resolve()]
    assert spec.schema_.columns["listed"].dtype == "date"
    assert spec.pipeline.name == "houses"


# --- tasks ----------------------------------------------------------------------------------


def _with_target(values: list[object] | np.ndarray) -> pl.DataFrame:
    frame = houses(rows=len(values)).drop("price")
    return frame.with_columns(y=pl.Series(values))


@pytest.mark.parametrize(
    ("target", "options", "task", "metric", "families"),
    [
        (
            np.random.default_rng(0).normal(50, 10, 300),
            [],
            "regression",
            "rmse",
            ["ridge", "hist_gradient_boosting", "random_forest"],
        ),
        (
            ["cat", "dog", "bird"] * 100,
            [],
            "classification",
            "f1_macro",
            ["logistic_regression", "hist_gradient_boosting", "random_forest"],
        ),
        ([1, 2, 3, 4] * 75, [], "classification", "f1_macro", None),  # <= 10 whole numbers
        ([1, 2, 3, 4] * 75, ["--task", "regression"], "regression", "rmse", None),
        (None, [], "clustering", "silhouette", ["kmeans", "agglomerative"]),
    ],
)
def test_task_is_guessed_from_the_target(
    tmp_path: Path,
    target: list[object] | np.ndarray | None,
    options: list[str],
    task: str,
    metric: str,
    families: list[str] | None,
) -> None:
    frame = houses().drop("price") if target is None else _with_target(target)
    data = write(frame, tmp_path / "d.csv")
    target_option = [] if target is None else ["--target", "y"]
    spec = init(data, tmp_path / "d.toml", *target_option, *options)
    assert spec.pipeline.task == task
    assert spec.primary_metric == metric
    if families is not None:
        assert [c.family for c in spec.candidates] == families
    raw = tomllib.loads((tmp_path / "d.toml").read_text())
    if task == "clustering":  # every valid row is used: no split, no folds
        assert "split" not in raw and "cv" not in raw and "target" not in raw["pipeline"]
    else:
        strategy = "stratified" if task == "classification" else "random"
        assert raw["split"]["strategy"] == strategy
        assert raw["cv"]["folds"] == 5  # fewer than 20,000 rows: 5 folds (cheap fits)
    if task == "classification" and families is None:
        assert spec.schema_.columns["y"].isin == [1, 2, 3, 4]


def test_imbalanced_binary_target_is_ranked_on_pr_auc(tmp_path: Path) -> None:
    flags = np.random.default_rng(5).random(300) < 0.08
    data = write(_with_target(flags), tmp_path / "fraud.csv")
    spec = init(data, tmp_path / "fraud.toml", "--target", "y")
    assert spec.pipeline.task == "classification"
    assert spec.schema_.columns["y"].dtype == "bool"
    assert spec.evaluate.primary_metric == "pr_auc"
    assert spec.evaluate.tune_threshold == "f1"
    assert spec.evaluate.positive_class == "True"
    logistic = spec.candidates[0]
    assert logistic.family == "logistic_regression"
    assert logistic.params["class_weight"] == ["none", "balanced"]


def test_balanced_binary_target_keeps_f1_macro(tmp_path: Path) -> None:
    data = write(_with_target([0, 1] * 150), tmp_path / "b.csv")
    spec = init(data, tmp_path / "b.toml", "--target", "y")
    assert spec.primary_metric == "f1_macro" and spec.evaluate.positive_class is None


def test_logistic_c_spans_logistic_regression_cv_range_and_is_picked_on_log_loss(
    tmp_path: Path,
) -> None:
    data = write(_with_target([0, 1] * 150), tmp_path / "b.csv")
    logistic = init(data, tmp_path / "b.toml", "--target", "y").candidates[0]
    assert logistic.family == "logistic_regression"
    assert logistic.scoring == "log_loss"  # not the primary f1_macro: a step function of C
    c = logistic.params["C"]
    assert (c[0], c[-1]) == (1e-4, 1e4)  # LogisticRegressionCV's default Cs range
    assert all(1 < b / a <= 10**0.55 for a, b in itertools.pairwise(c))  # 1-3 steps
    regression = init(write(houses(), tmp_path / "h.csv"), tmp_path / "h.toml", "--target", "price")
    assert regression.candidates[0].family == "ridge" and regression.candidates[0].scoring is None


def test_cv_folds_scale_with_the_rows(tmp_path: Path) -> None:
    data = write(houses(rows=1200), tmp_path / "big.csv")
    assert init(data, tmp_path / "big.toml", "--target", "price").cv.folds == 5


def _plan(tmp_path: Path, rows: int, target: str = "price") -> Spec:
    """The spec init drafts for a table of `rows` rows (its first 300 sampled)."""
    data = write(houses(rows=300, target=target), tmp_path / f"{target}.csv")
    draft = init_spec.infer(pl.read_csv(data), data, target, total_rows=rows)
    spec_file = tmp_path / "h.toml"
    return init_spec.check(init_spec.render(draft, spec_file), spec_file)


def test_search_plans_scale_with_the_rows(tmp_path: Path) -> None:
    small, medium, huge = (_plan(tmp_path, rows) for rows in (500, 5_000, 200_000))

    searches = [{c.family: (c.search, c.n_iter) for c in s.candidates} for s in (small, huge)]
    assert searches[0] != searches[1]
    assert (small.cv.folds, medium.cv.folds, huge.cv.folds) == (5, 5, 3)
    # small: grids and a small random search; no MLP (commented out); a small forest
    assert [c.family for c in small.candidates] == [
        "ridge",
        "hist_gradient_boosting",
        "random_forest",
    ]
    assert searches[0]["hist_gradient_boosting"] == ("random", 6)
    # medium: the MLP is offered
    assert "mlp" in [c.family for c in medium.candidates]
    # from 10,000 rows: 3 folds, successive halving, the forest commented out (the slowest
    # search, and it lost to boosting)
    large = _plan(tmp_path, 15_000)
    assert large.cv.folds == 3
    assert [c.family for c in large.candidates] == ["ridge", "hist_gradient_boosting", "mlp"]
    assert {c.search for c in large.candidates[1:]} == {"halving_random"}
    assert "random_forest" in [c.family for c in medium.candidates]
    # huge: successive halving for boosting, no forest and no MLP
    assert [c.family for c in huge.candidates] == ["ridge", "hist_gradient_boosting"]
    assert searches[1]["hist_gradient_boosting"] == ("halving_random", 9)
    # linear regularisation on a log scale; boosting searches rate, leaves and l2
    assert small.candidates[0].params["alpha"] == [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    boosting = small.candidates[1].params
    assert {"learning_rate", "max_leaf_nodes", "l2_regularization"} <= set(boosting)
    assert "max_iter" not in boosting  # early stopping decides


def test_every_drafted_space_is_accepted_by_its_family(tmp_path: Path) -> None:
    from mallard.tasks.families import check_candidates

    for rows in (500, 5_000, 15_000, 50_000, 200_000):
        for target in ("price", "band"):
            check_candidates(_plan(tmp_path, rows, target))


def test_a_rare_text_value_is_not_made_allowed() -> None:
    rows = 600
    answers = np.where(np.arange(rows) % 3 == 0, "no", "yes").astype(object)
    answers[[17, 401]] = "maybe"  # a planted bad value: 2 of 600 rows
    frame = houses(rows=rows).with_columns(driveway=pl.Series(answers.tolist()))

    draft = init_spec.infer(frame, Path("h.csv"), "price")

    driveway = next(c for c in draft.columns if c.name == "driveway")
    assert driveway.isin == ("no", "yes")
    assert "'maybe'" in driveway.note and "quarantined" in driveway.note
    city = next(c for c in draft.columns if c.name == "city")
    assert city.isin == ("east", "north", "south")  # common values all stay allowed


def test_a_long_tail_of_text_values_is_kept_whole() -> None:
    rows = 300
    # 15 values seen once each (5% of the rows) beside two common ones: a tail, not errors
    values = [f"v{i}" for i in range(15)] + ["a"] * 143 + ["b"] * 142
    frame = houses(rows=rows).with_columns(kind=pl.Series(values))

    kind = next(
        c for c in init_spec.infer(frame, Path("h.csv"), "price").columns if c.name == "kind"
    )

    assert kind.isin is not None and len(kind.isin) == 17 and kind.rare == ()


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "shown"), [(["yes"] * 300, "('yes')"), ([7] * 300, "(7)")])
def test_single_class_target_is_a_clear_error(
    tmp_path: Path, values: list[object], shown: str
) -> None:
    data = write(_with_target(values), tmp_path / "one.csv")
    spec_file = tmp_path / "one.toml"
    code, output = mallard("init", str(data), "--target", "y", "-o", str(spec_file))
    assert code == 2
    assert f"target column 'y' has a single value {shown}" in output
    assert not spec_file.exists()


def test_single_class_is_an_input_error_in_the_library() -> None:
    with pytest.raises(InputError, match="single value"):
        init_spec.infer(_with_target(["a"] * 50), Path("x.csv"), "y")


def test_unknown_target_is_named(tmp_path: Path) -> None:
    data = write(houses(rows=50), tmp_path / "h.csv")
    code, output = mallard("init", str(data), "--target", "cost", "-o", str(tmp_path / "h.toml"))
    assert code == 2
    assert "target column 'cost' is not in" in output and "price" in output
    assert not (tmp_path / "h.toml").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--task", "forecasting"], "--task 'forecasting' is not a task"),
        (["--task", "regression"], "a regression pipeline needs --target"),
        (["--target", "price", "--task", "clustering"], "clustering has no target"),
        (["--target", "city", "--task", "regression"], "needs a numeric target"),
        (["--target", "listed"], "holds dates"),
    ],
)
def test_impossible_task_and_target_combinations(
    tmp_path: Path, options: list[str], message: str
) -> None:
    data = write(houses(rows=50), tmp_path / "h.csv")
    code, output = mallard("init", str(data), "-o", str(tmp_path / "h.toml"), *options)
    assert code == 2 and message in output
    assert not (tmp_path / "h.toml").exists()


def test_missing_data_file(tmp_path: Path) -> None:
    code, output = mallard("init", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "x.toml"))
    assert code == 2 and "data file not found" in output
    assert not (tmp_path / "x.toml").exists()


def test_existing_spec_needs_force(tmp_path: Path) -> None:
    data = write(houses(rows=80), tmp_path / "h.csv")
    spec_file = tmp_path / "h.toml"
    spec_file.write_text("# my hand-tuned spec\n")
    code, output = mallard("init", str(data), "--target", "price", "-o", str(spec_file))
    assert code == 2 and "already exists" in output and "--force" in output
    assert spec_file.read_text() == "# my hand-tuned spec\n"

    code, output = mallard("init", str(data), "--target", "price", "-o", str(spec_file), "--force")
    assert code == 0, output
    assert load_spec(spec_file).pipeline.target == "price"


def test_data_file_is_never_overwritten(tmp_path: Path) -> None:
    data = write(houses(rows=50), tmp_path / "h.csv")
    before = data.read_bytes()
    code, output = mallard("init", str(data), "-o", str(data), "--force")
    assert code == 2 and "is the data file itself" in output
    assert data.read_bytes() == before


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("target", "task"), [("price", "regression"), ("band", "classification")])
def test_init_then_run(tmp_path: Path, prefect_server: None, target: str, task: str) -> None:
    data = write(houses(rows=300, seed=11, target=target), tmp_path / "data" / "listings.csv")
    spec_file = tmp_path / "listings.toml"
    code, output = mallard("init", str(data), "--target", target, "-o", str(spec_file))
    assert code == 0, output
    assert f"task: {task}" in output

    db = tmp_path / "warehouse.duckdb"
    code, output = mallard("run", str(spec_file), "--warehouse", str(db))
    assert code == 0, output
    runs = warehouse.query(db, "SELECT pipeline, status, n_rows, n_invalid FROM ml.runs")
    assert runs.to_dicts() == [
        {"pipeline": "listings", "status": "succeeded", "n_rows": 300, "n_invalid": 5}
    ]  # the five 'n/a' energy values are quarantined, as the spec's comment said
    board = warehouse.query(db, "SELECT family FROM ml.leaderboard")["family"].to_list()
    expected = (
        {"ridge", "hist_gradient_boosting", "random_forest", "dummy"}
        if task == "regression"
        else {"logistic_regression", "hist_gradient_boosting", "random_forest", "dummy"}
    )
    assert set(board) == expected
