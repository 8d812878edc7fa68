"""prepare_features: drops, SQL, target checks, column kinds; and the in-pipeline preprocessor."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from mallard.core.errors import InputError
from mallard.core.spec import FeaturesSection
from mallard.tasks.features import model_pipeline, prepare_features, preprocessor


def houses() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "price": [100.0, 200.0, 300.0, 400.0],
            "lotsize": [5000.0, 6000.0, None, 8000.0],
            "bedrooms": [1, 2, 3, 4],
            "driveway": ["yes", "no", "yes", None],
            "airco": [True, False, True, False],
            "sold": [date(1970, 1, 2), date(1970, 1, 11), date(2000, 1, 1), date(1969, 12, 31)],
            "listed": [datetime(1970, 1, 3, 12)] * 4,
            "house_id": ["h1", "h2", "h3", "h4"],
        }
    )


def test_no_drops_splits_off_the_target_and_sorts_columns_into_kinds() -> None:
    features = prepare_features(houses(), FeaturesSection(), "price")

    assert features.y.tolist() == [100.0, 200.0, 300.0, 400.0]
    assert features.y.dtype == np.float64
    assert "price" not in features.X.columns
    assert features.numeric == ["lotsize", "bedrooms", "airco", "sold", "listed"]
    assert features.categorical == ["driveway", "house_id"]


def test_booleans_and_dates_become_numbers() -> None:
    X = prepare_features(houses(), FeaturesSection(), "price").X

    assert X["airco"].to_list() == [1, 0, 1, 0]
    assert X["sold"].to_list() == [1.0, 10.0, 10957.0, -1.0]  # days since 1970-01-01
    assert X["listed"].to_list() == [2.0] * 4
    assert X["lotsize"].null_count() == 1  # imputation happens inside the model pipeline


def test_drop_removes_columns() -> None:
    features = prepare_features(houses(), FeaturesSection(drop=["house_id", "sold"]), "price")

    assert features.X.columns == ["lotsize", "bedrooms", "driveway", "airco", "listed"]
    assert "house_id" not in features.categorical
    assert "sold" not in features.numeric


def test_sql_runs_over_the_validated_rows_as_source() -> None:
    section = FeaturesSection(
        sql="SELECT price, bedrooms * 2 AS rooms, driveway FROM source WHERE bedrooms > 1"
    )

    features = prepare_features(houses(), section, "price")

    assert features.X.columns == ["rooms", "driveway"]
    assert features.X["rooms"].to_list() == [4, 6, 8]
    assert features.y.tolist() == [200.0, 300.0, 400.0]
    assert features.numeric == ["rooms"]
    assert features.categorical == ["driveway"]


def test_drop_happens_before_sql() -> None:
    section = FeaturesSection(drop=["house_id"], sql="SELECT * FROM source")

    features = prepare_features(houses(), section, "price")

    assert "house_id" not in features.X.columns


def test_sql_runs_before_drop_so_drop_names_sql_output_columns() -> None:
    section = FeaturesSection(
        sql="SELECT price, lotsize, lotsize * 2 AS double_lot FROM source", drop=["lotsize"]
    )
    assert prepare_features(houses(), section, "price").X.columns == ["double_lot"]

    dropped_by_sql = FeaturesSection(sql="SELECT price, lotsize FROM source", drop=["house_id"])
    with pytest.raises(InputError, match=r"\[features.drop\] unknown column\(s\): house_id"):
        prepare_features(houses(), dropped_by_sql, "price")


def test_broken_sql_fails_with_the_key() -> None:
    with pytest.raises(InputError, match=r"\[features.sql\] query failed"):
        prepare_features(houses(), FeaturesSection(sql="SELECT nope FROM source"), "price")


def test_blank_sql_is_ignored() -> None:
    features = prepare_features(houses(), FeaturesSection(sql="  \n "), "price")

    assert features.X.width == houses().width - 1


def test_unknown_drop_column_is_an_input_error_naming_it() -> None:
    with pytest.raises(InputError, match=r"\[features.drop\] unknown column\(s\): garage, pool"):
        prepare_features(houses(), FeaturesSection(drop=["lotsize", "garage", "pool"]), "price")


def test_dropping_the_target_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot drop the target column 'price'"):
        prepare_features(houses(), FeaturesSection(drop=["price"]), "price")


def test_non_numeric_target_is_an_input_error() -> None:
    with pytest.raises(InputError) as caught:
        prepare_features(houses(), FeaturesSection(), "driveway")

    message = str(caught.value)
    assert "target column 'driveway' must be numeric" in message
    assert 'dtype = "float"' in message


def test_sql_without_the_target_is_an_input_error() -> None:
    section = FeaturesSection(sql="SELECT lotsize, bedrooms FROM source")

    with pytest.raises(InputError, match="no target column 'price'"):
        prepare_features(houses(), section, "price")


def test_no_feature_columns_left_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no feature columns left"):
        prepare_features(
            houses().select("price", "lotsize"), FeaturesSection(drop=["lotsize"]), "price"
        )


def test_preprocessor_imputes_scales_and_one_hot_encodes() -> None:
    frame = pl.DataFrame(
        {
            "price": [float(i) for i in range(12)],
            "lotsize": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
            "driveway": ["yes"] * 6 + ["no"] * 5 + [None],
        }
    )
    features = prepare_features(frame, FeaturesSection(), "price")

    out = preprocessor(features, FeaturesSection()).fit_transform(features.X)

    assert out.shape == (12, 3)  # lotsize + one column per frequent category
    assert not np.isnan(out).any()
    assert out[:, 0].mean() == pytest.approx(0.0, abs=1e-12)
    assert out[:, 0].std() == pytest.approx(1.0)
    assert sorted(out[:, 1:].sum(axis=0).tolist()) == [5.0, 7.0]  # the null became "yes"


def test_model_pipeline_fits_on_mixed_columns() -> None:
    from sklearn.linear_model import Ridge

    features = prepare_features(houses(), FeaturesSection(drop=["house_id"]), "price")

    pipeline = model_pipeline(features, Ridge(alpha=1e-6)).fit(features.X, features.y)

    assert pipeline.predict(features.X).shape == (4,)
    assert [name for name, _ in pipeline.steps] == ["prepare", "model"]


def test_features_sql_that_makes_infinities_is_an_input_error_naming_the_column() -> None:
    section = FeaturesSection(sql="SELECT *, lotsize / 0.0 AS ratio FROM source")

    with pytest.raises(InputError) as caught:
        prepare_features(houses(), section, "price")

    message = str(caught.value)
    assert message.startswith("[features.sql]") and "ratio (" in message
    assert "NULLIF" in message and "\n" not in message


def _neighbourhoods(n_categories: int, rows_each: int = 3) -> pl.DataFrame:
    names = [f"NB_{i:03d}" for i in range(n_categories) for _ in range(rows_each)]
    return pl.DataFrame(
        {
            "price": [float(i % 7) for i in range(len(names))],
            "lotsize": [float(i) for i in range(len(names))],
            "neighbourhood": names,
        }
    )


@pytest.mark.parametrize("encode", ["auto", "native"])
def test_boosting_reads_categories_natively_by_default(encode: str) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    features = prepare_features(_neighbourhoods(4), FeaturesSection(), "price")
    section = FeaturesSection(encode=encode)  # type: ignore[arg-type]

    pipeline = model_pipeline(features, HistGradientBoostingRegressor(max_iter=5), section)
    pipeline.fit(features.X, features.y)

    assert pipeline["model"].categorical_features == [1]  # after the one numeric column
    assert pipeline["prepare"].transform(features.X).shape == (12, 2)  # codes, not one-hot
    assert pipeline["model"].is_categorical_.tolist() == [False, True]


def test_auto_one_hot_encodes_for_other_families_and_under_pca() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    features = prepare_features(_neighbourhoods(4, rows_each=6), FeaturesSection(), "price")

    ridge = model_pipeline(features, Ridge(), FeaturesSection()).fit(features.X, features.y)
    assert ridge["prepare"].transform(features.X).shape == (24, 5)  # lotsize + 4 one-hot
    with_pca = FeaturesSection(pca=2)
    boosting = model_pipeline(features, HistGradientBoostingRegressor(max_iter=5), with_pca)
    boosting.fit(features.X, features.y)
    assert boosting["model"].is_categorical_ is None  # PCA mixed the columns: none to mark


def test_onehot_keeps_boosting_on_one_hot_columns() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    features = prepare_features(_neighbourhoods(4, rows_each=6), FeaturesSection(), "price")
    section = FeaturesSection(encode="onehot")

    pipeline = model_pipeline(features, HistGradientBoostingRegressor(max_iter=5), section)
    pipeline.fit(features.X, features.y)

    assert pipeline["model"].is_categorical_ is None
    assert pipeline["prepare"].transform(features.X).shape == (24, 5)


def test_native_categories_beyond_the_bin_limit_share_one_code() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    features = prepare_features(_neighbourhoods(300, rows_each=2), FeaturesSection(), "price")

    pipeline = model_pipeline(features, HistGradientBoostingRegressor(max_iter=5))
    pipeline.fit(features.X, features.y)  # 300 categories: more than boosting's 255 bins

    codes = pipeline["prepare"].transform(features.X)[:, 1]
    assert len(np.unique(codes)) == 255


def _ordered(n: int = 5_000) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "price": np.arange(n, dtype=float),  # equals the row's position
            "lotsize": rng.normal(size=n),
            "area": [f"a{i % 7}" for i in range(n)],
        }
    )


def test_a_window_query_keeps_every_row_beside_its_input_row() -> None:
    frame = _ordered()
    sql = "SELECT *, avg(lotsize) OVER (PARTITION BY area ORDER BY price) AS running FROM source"

    features = prepare_features(frame, FeaturesSection(sql=sql), "price")

    # DuckDB's window operator returns rows grouped by area; the features come back in order.
    assert features.y is not None and np.array_equal(features.y, np.arange(frame.height))
    assert features.X["lotsize"].to_list() == frame["lotsize"].to_list()
    assert "__mallard_row" not in features.X.columns
    first_a1 = frame.filter(pl.col("area") == "a1")["lotsize"][0]
    assert features.X["running"][1] == pytest.approx(first_a1)  # row 1 is area a1's first


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT price, lotsize, area, rank() OVER (ORDER BY lotsize) AS r FROM source",
        "SELECT price, lotsize, area FROM source ORDER BY lotsize",
    ],
)
def test_a_reordering_query_that_drops_the_row_key_is_refused(sql: str) -> None:
    with pytest.raises(InputError, match=r"\[features.sql\] the query reorders rows") as caught:
        prepare_features(_ordered(), FeaturesSection(sql=sql), "price")
    assert "select *" in str(caught.value) and "\n" not in str(caught.value)


def test_an_explicit_column_list_without_reordering_still_works() -> None:
    frame = _ordered()
    sql = "SELECT price, lotsize * 2 AS double_lot, area FROM source"

    features = prepare_features(frame, FeaturesSection(sql=sql), "price")

    assert features.y is not None and np.array_equal(features.y, np.arange(frame.height))
    assert features.X["double_lot"].to_list() == (frame["lotsize"] * 2).to_list()
