"""load_spec: the shipped spec loads; every bad spec fails with a SpecError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mallard.core.errors import SpecError
from mallard.core.spec import Spec, load_spec
from mallard.examples import spec_text, write_housing_csv
from mallard.tasks.families import FAMILIES, check_candidates

SHIPPED = spec_text()


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """A folder holding data/housing.csv, as the shipped spec expects next to it."""
    write_housing_csv(tmp_path / "data" / "housing.csv", rows=30, seed=3)
    return tmp_path


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str, text: str = SHIPPED) -> str:
    """The shipped spec with one exact edit; fails loudly if the spec no longer has `old`."""
    assert text.count(old) == 1, f"the shipped spec no longer contains {old!r} exactly once"
    return text.replace(old, new)


def load_error(folder: Path, text: str) -> str:
    """The error of loading the spec as a flow does: parsed, then its candidates checked."""
    with pytest.raises(SpecError) as caught:
        check_candidates(load_spec(write_spec(folder, text)))
    return str(caught.value)


# --- the shipped spec -------------------------------------------------------------------------


def test_shipped_spec_loads_with_its_values(spec_dir: Path) -> None:
    path = write_spec(spec_dir, SHIPPED)

    spec = load_spec(path)

    assert isinstance(spec, Spec)
    assert spec.pipeline.name == "housing"
    assert spec.pipeline.task == "regression"
    assert spec.pipeline.target == "price"
    assert spec.cv.folds == 5
    assert spec.evaluate.primary_metric == "rmse"
    assert [c.family for c in spec.candidates] == [
        "ridge",
        "random_forest",
        "hist_gradient_boosting",
    ]
    assert spec.candidates[1].search == "random" and spec.candidates[1].n_iter == 6
    assert spec.candidates[0].params == {"alpha": [0.1, 1.0, 10.0]}
    assert spec.schema_.columns["price"].nullable is False
    assert spec.schema_.columns["driveway"].isin == ["yes", "no"]


def test_shipped_spec_resolves_its_source_relative_to_the_spec_file(spec_dir: Path) -> None:
    spec = load_spec(write_spec(spec_dir, SHIPPED))

    assert spec.source_files() == [spec_dir.resolve() / "data" / "housing.csv"]
    assert spec.spec_path == (spec_dir / "spec.toml").resolve()


def test_spec_fingerprint_follows_the_text(spec_dir: Path) -> None:
    first = load_spec(write_spec(spec_dir, SHIPPED))
    same = load_spec(write_spec(spec_dir, SHIPPED))
    changed = load_spec(write_spec(spec_dir, edited("seed = 42", "seed = 43")))

    assert first.spec_toml == SHIPPED
    assert len(first.spec_sha256) == 64
    assert first.spec_sha256 == same.spec_sha256
    assert changed.spec_sha256 != first.spec_sha256
    assert changed.pipeline.seed == 43


def test_source_sql_alone_needs_no_file(tmp_path: Path) -> None:
    text = edited('path = "data/housing.csv"', 'sql = "SELECT 1 AS price, 2 AS lotsize"')

    spec = load_spec(write_spec(tmp_path, text))  # no data folder at all

    assert spec.source.sql == "SELECT 1 AS price, 2 AS lotsize"
    assert spec.source.path is None
    assert spec.source_files() == []


# --- each bad spec names its key ---------------------------------------------------------------


def test_unknown_top_level_key(spec_dir: Path) -> None:
    message = load_error(spec_dir, SHIPPED + '\n[deploy]\nschedule = "daily"\n')

    assert "[deploy]" in message
    assert "unknown key" in message


def test_unknown_nested_key(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("folds = 5", "folds = 5\nfold = 3"))

    assert "[cv.fold]" in message
    assert "unknown key" in message


def test_unknown_key_inside_a_candidate(spec_dir: Path) -> None:
    text = edited('search = "grid"\nparams = { alpha', 'serch = "grid"\nparams = { alpha')

    message = load_error(spec_dir, text)

    assert "[candidates[0].serch]" in message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("folds = 5", "fold = 5", "[cv.fold] unknown key; did you mean 'folds'?"),
        (
            'search = "grid"\nparams = { alpha',
            'search = "grid"\nparms = { alpha',
            "[candidates[0].parms] unknown key; did you mean 'params'?",
        ),
        (
            'price    = { dtype = "float", nullable',
            'price    = { dtype = "float", nulable',
            "[schema.columns.price.nulable] unknown key; did you mean 'nullable'?",
        ),
        (
            "[split]\n",
            "[split]\nwhatever = 1\n",
            "[split.whatever] unknown key (this section takes: strategy, ",
        ),
    ],
)
def test_an_unknown_key_names_the_key_meant(spec_dir: Path, old: str, new: str, said: str) -> None:
    message = load_error(spec_dir, edited(old, new))

    assert message.startswith(f"{spec_dir / 'spec.toml'}: {said}"), message


def test_an_unknown_top_level_key_lists_the_sections(spec_dir: Path) -> None:
    message = load_error(spec_dir, SHIPPED + "\n[evaluat]\nprimary_metric = 'rmse'\n")

    assert message.endswith("[evaluat] unknown key; did you mean 'evaluate'?"), message


def test_wrong_type(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("folds = 5", 'folds = "five"'))

    assert "[cv.folds]" in message
    assert "integer" in message


def test_out_of_range_value(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("folds = 5", "folds = 1"))

    assert "[cv.folds]" in message
    assert "2" in message


def test_missing_required_key(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('target = "price"\n', ""))

    assert "[pipeline.target]" in message
    assert "a regression pipeline needs a target column" in message


def test_unknown_family_lists_the_known_ones(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('family = "ridge"', 'family = "ridgeway"'))

    assert "[candidates[0].family]" in message
    assert "'ridgeway'" in message
    for family in FAMILIES["regression"]:
        assert family in message
    assert "kmeans" not in message  # only the families of the pipeline's task


def test_unknown_hyperparameter(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("max_depth = [8, 16]", "max_dept = [8, 16]"))

    assert "[candidates[1].params]" in message
    assert "'random_forest'" in message
    assert "max_dept" in message


def test_empty_param_list(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("max_iter = [200]", "max_iter = []"))

    assert "[candidates[2].params.max_iter]" in message
    assert "at least one value" in message


def test_param_values_must_be_a_list(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("alpha = [0.1, 1.0, 10.0]", "alpha = 0.1"))

    assert "[candidates[0].params.alpha]" in message
    assert "list" in message


def test_bad_toml(spec_dir: Path) -> None:
    message = load_error(spec_dir, SHIPPED + "\n[[candidates]\n")

    assert "not valid TOML" in message
    assert "spec.toml" in message


def test_not_text_at_all(spec_dir: Path) -> None:
    path = spec_dir / "spec.toml"
    path.write_bytes(b"PAR1\xff\xfe\x00\x81 binary, e.g. a data file passed by mistake")

    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(path)


def test_missing_spec_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"

    with pytest.raises(SpecError, match="spec file not found") as caught:
        load_spec(missing)
    assert str(missing) in str(caught.value)


def test_a_folder_is_not_a_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path)


def test_no_file_matches_source_path(tmp_path: Path) -> None:
    message = load_error(tmp_path, SHIPPED)  # tmp_path has no data/housing.csv

    assert "[source.path]" in message
    assert "data/housing.csv" in message
    assert str(tmp_path.resolve()) in message  # says where relative paths are read from


def test_no_file_matches_a_glob(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited("data/housing.csv", "data/*.parquet"))

    assert "[source.path]" in message
    assert "data/*.parquet" in message


def test_both_path_and_sql(spec_dir: Path) -> None:
    message = load_error(
        spec_dir,
        edited('path = "data/housing.csv"', 'path = "data/housing.csv"\nsql = "SELECT 1"'),
    )

    assert "[source]" in message
    assert "exactly one of source.path or source.sql" in message


def test_neither_path_nor_sql(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('path = "data/housing.csv"', ""))

    assert "[source]" in message
    assert "exactly one" in message


def test_a_regression_metric_on_a_classification_pipeline(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('task = "regression"', 'task = "classification"'))

    assert "[evaluate.primary_metric] 'rmse' is not a classification metric" in message
    assert "f1_macro" in message


def test_clustering_has_no_target(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('task = "regression"', 'task = "clustering"'))

    assert "[pipeline.target] clustering has no target" in message


def test_threshold_tuning_is_for_classification_only(spec_dir: Path) -> None:
    text = edited('primary_metric = "rmse"', 'primary_metric = "rmse"\ntune_threshold = "f1"')
    message = load_error(spec_dir, text)

    assert "[evaluate.tune_threshold] applies to classification only" in message


def test_time_split_needs_a_column(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('strategy = "random"', 'strategy = "time"'))

    assert "split.strategy 'time' needs split.column" in message


def test_unknown_task(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('task = "regression"', 'task = "ranking"'))

    assert "[pipeline.task]" in message
    assert "'regression'" in message


def test_split_must_leave_ten_percent_for_training(spec_dir: Path) -> None:
    text = edited("test = 0.15", "test = 0.5", edited("validation = 0.15", "validation = 0.4"))

    message = load_error(spec_dir, text)

    assert "[split]" in message
    assert "at least 10% for training" in message


def test_split_just_inside_the_limit_loads(spec_dir: Path) -> None:
    text = edited("test = 0.15", "test = 0.5", edited("validation = 0.15", "validation = 0.35"))

    spec = load_spec(write_spec(spec_dir, text))

    assert (spec.split.test, spec.split.validation) == (0.5, 0.35)


def test_schema_model_and_columns_together(spec_dir: Path) -> None:
    text = edited("[schema]\n", '[schema]\nmodel = "mallard.schemas.housing:Housing"\n')

    message = load_error(spec_dir, text)

    assert "[schema]" in message
    assert "not both" in message


def test_at_least_one_candidate(spec_dir: Path) -> None:
    text = SHIPPED[: SHIPPED.index("[[candidates]]")] + '[evaluate]\nprimary_metric = "rmse"\n'

    message = load_error(spec_dir, text)

    assert "[candidates]" in message


def test_unknown_primary_metric(spec_dir: Path) -> None:
    message = load_error(spec_dir, edited('primary_metric = "rmse"', 'primary_metric = "auc"'))

    assert "[evaluate.primary_metric]" in message
    assert "'auc' is not a regression metric" in message
    assert "rmse, mae, r2, mape" in message


# --- candidate names ---------------------------------------------------------------------------

CANDIDATES_HEAD = SHIPPED[: SHIPPED.index("[[candidates]]")]


def spec_with_candidates(folder: Path, candidates: str) -> Spec:
    return load_spec(write_spec(folder, CANDIDATES_HEAD + candidates))


def test_candidate_names_default_to_the_family(spec_dir: Path) -> None:
    spec = load_spec(write_spec(spec_dir, SHIPPED))

    assert spec.candidate_names() == ["ridge", "random_forest", "hist_gradient_boosting"]


def test_candidate_names_deduplicate_repeated_families(spec_dir: Path) -> None:
    spec = spec_with_candidates(
        spec_dir,
        '[[candidates]]\nfamily = "ridge"\n'
        '[[candidates]]\nfamily = "ridge"\n'
        '[[candidates]]\nfamily = "lasso"\n'
        '[[candidates]]\nfamily = "ridge"\n',
    )

    names = spec.candidate_names()

    assert names == ["ridge", "ridge_2", "lasso", "ridge_3"]
    assert spec.candidate_names() == names  # stable


def test_candidate_names_keep_explicit_names_and_avoid_collisions(spec_dir: Path) -> None:
    spec = spec_with_candidates(
        spec_dir,
        '[[candidates]]\nfamily = "ridge"\nname = "ridge_2"\n'
        '[[candidates]]\nfamily = "ridge"\n'
        '[[candidates]]\nfamily = "ridge"\n'
        '[[candidates]]\nfamily = "lasso"\nname = "ridge"\n',
    )

    names = spec.candidate_names()

    assert names == ["ridge_2", "ridge", "ridge_3", "ridge_4"]
    assert len(set(names)) == len(names)


def test_candidate_name_must_be_a_plain_identifier(spec_dir: Path) -> None:
    message = load_error(
        spec_dir,
        CANDIDATES_HEAD + '[[candidates]]\nfamily = "ridge"\nname = "my model"\n',
    )

    assert "[candidates[0].name]" in message


# --- source.id: the rows' key for the scored file ---------------------------------------------

SOURCE = '[source]\npath = "data/housing.csv"'


@pytest.mark.parametrize(
    ("key", "column", "message"),
    [
        ('id = "price"', "", "[source.id] 'price' is the target column"),
        ('id = "email"', 'email = { dtype = "str", pii = "drop" }\n', 'pii = "drop"'),
        ('id = "zip"', 'zip = { dtype = "str", pii = "generalise" }\n', 'pii = "generalise"'),
        ('id = "prediction"', "", "[source.id] 'prediction' is a column mallard writes"),
        ('id = "probability_1"', "", "'probability_1' is a column mallard writes"),
        ('id = ""', "", "[source.id]"),
    ],
)
def test_bad_source_id_names_the_key(spec_dir: Path, key: str, column: str, message: str) -> None:
    text = edited(SOURCE, f"{SOURCE}\n{key}\n#")
    text = edited("[schema.columns]\n", "[schema.columns]\n" + column, text)
    assert message in load_error(spec_dir, text)


def test_source_id_is_never_a_feature(spec_dir: Path) -> None:
    from mallard.tasks.plan import not_features

    spec = load_spec(write_spec(spec_dir, edited(SOURCE, SOURCE + '\nid = "house_id"\n#')))
    assert spec.source.id == "house_id"
    assert "house_id" in not_features(spec)
