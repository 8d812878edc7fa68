"""The pipeline spec: one TOML file parsed once, at the edge, into typed models.

Every error names the key (e.g. ``candidates[1].family``) and, where it helps, the allowed values.
"""

from __future__ import annotations

import glob
import hashlib
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mallard.core.catalogue import DEFAULT_PRIMARY, METRICS
from mallard.core.errors import SpecError
from mallard.core.spec_errors import described

Task = Literal["regression", "classification", "clustering"]
ColumnDtype = Literal["float", "int", "str", "bool", "date", "datetime"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineSection(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    task: Task
    target: str | None = None  # required for regression and classification; none for clustering
    seed: int = 42


# Column names the scored file gives its own columns; an id column may not take them.
SCORED_FILE_COLUMNS = ("row_index", "prediction", "label", "cluster")


class SourceSection(_Section):
    path: str | None = None
    sql: str | None = None
    # The input's own key: carried into the scored file beside each prediction, never a feature.
    id: str | None = Field(default=None, min_length=1)

    @field_validator("id")
    @classmethod
    def _not_a_scored_column(cls, name: str | None) -> str | None:
        if name is not None and (name in SCORED_FILE_COLUMNS or name.startswith("probability_")):
            raise ValueError(
                f"'{name}' is a column mallard writes into the scored file; "
                "rename the id column (e.g. in source.sql)"
            )
        return name

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSection:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of source.path or source.sql")
        return self


class ColumnSpec(_Section):
    dtype: ColumnDtype
    nullable: bool = True
    unique: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    isin: list[str | int | float | bool] | None = None
    regex: str | None = None
    # Personal data: dropped at ingest, salted-sha256 hashed, or generalised (dates to month,
    # numbers to bins, text such as postcodes to a prefix) before anything is stored or trained.
    pii: Literal["drop", "hash", "generalise"] | None = None


class SchemaSection(_Section):
    max_invalid_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    model: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_both(self) -> SchemaSection:
        if self.model and self.columns:
            raise ValueError("give schema.model or schema.columns, not both")
        return self


class FeaturesSection(_Section):
    sql: str = ""  # DuckDB SQL over the validated rows (table `source`); runs before `drop`
    drop: list[str] = Field(default_factory=list)
    # Preprocessing inside each model's Pipeline, so it is fitted per CV fold:
    scale: Literal["standard", "minmax", "none"] = "standard"
    impute: Literal["median", "mean", "most_frequent", "constant"] = "median"
    # auto: hist gradient boosting reads categories natively (as ordinal codes it splits on as
    # categories), every other family one-hot; native: boosting natively, the others ordinal.
    encode: Literal["auto", "onehot", "ordinal", "native"] = "auto"
    log_target: bool = False  # regression: fit on log1p(target), predict back on its scale
    pca: float | None = Field(default=None, gt=0.0)  # < 1: variance ratio kept; >= 1: components

    @field_validator("pca")
    @classmethod
    def _whole_components(cls, pca: float | None) -> float | None:
        if pca is not None and pca >= 1 and pca != int(pca):
            raise ValueError("pca is a variance ratio below 1 or a whole number of components")
        return pca


class SplitSection(_Section):
    strategy: Literal["random", "stratified", "time", "group"] = "random"
    column: str | None = None  # time: the column to order by; group: the group column
    test: float = Field(default=0.15, gt=0.0, lt=1.0)
    validation: float = Field(default=0.15, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitSection:
        if self.test + self.validation >= 0.9:
            raise ValueError("split.test + split.validation must leave at least 10% for training")
        if self.strategy in ("time", "group") and not self.column:
            raise ValueError(f"split.strategy '{self.strategy}' needs split.column")
        return self


class CVSection(_Section):
    folds: int = Field(default=5, ge=2, le=20)
    repeats: int = Field(default=1, ge=1, le=10)  # repeated K-fold (random/stratified splits)


class Candidate(_Section):
    family: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    search: Literal["grid", "random", "halving", "halving_random"] = "grid"
    n_iter: int = Field(default=10, ge=1)  # random and halving_random: configurations to try
    scoring: str | None = None  # the metric the search optimises; default: the primary metric
    params: dict[str, list[Any]] = Field(default_factory=dict)


class EvaluateSection(_Section):
    primary_metric: str | None = None  # default per task: rmse, f1_macro, silhouette
    # Binary classification: tune the decision threshold on CV for "f1", "balanced_accuracy",
    # "max_recall_at_precision:0.8" or "max_precision_at_recall:0.8".
    tune_threshold: str | None = Field(
        default=None,
        pattern=r"^(f1|balanced_accuracy|max_recall_at_precision:0?\.\d+|max_precision_at_recall:0?\.\d+)$",
    )
    positive_class: str | None = None  # binary: the class precision/recall/F1 refer to
    # Refit the chosen configuration on every labelled row (train + validation + test) and
    # deploy that; the evaluated model stays registered beside it, linked, with the test figures.
    finalize: bool = True


class PromoteSection(_Section):
    policy: Literal["auto", "manual"] = "auto"
    # A number in the metric's units, or "<k>se": k standard errors of the new model's test
    # metric (from its bootstrap interval), so a gain inside the noise does not promote.
    min_improvement: float | str = 0.0

    @field_validator("min_improvement")
    @classmethod
    def _number_or_standard_errors(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            if not re.fullmatch(r"\d+(\.\d+)?se", value.strip()):
                raise ValueError(f'\'{value}\' is neither a number nor like "1se" or "2se"')
            return value.strip()
        if value < 0:
            raise ValueError("must be 0 or more")
        return value


class ScoreSchedule(_Section):
    cron: str
    input: str  # glob of files to score, relative to the spec file

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        return _check_cron(cron)


class ScheduleSection(_Section):
    train: str | None = None  # cron
    score: ScoreSchedule | None = None

    @field_validator("train")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        return None if cron is None else _check_cron(cron)


# Prefect accepts these nicknames; cronsim (which checks the syntax here) does not.
_CRON_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _check_cron(cron: str) -> str:
    from cronsim import CronSim, CronSimError

    try:
        CronSim(_CRON_NICKNAMES.get(cron.strip(), cron), datetime.now(UTC))
    except CronSimError as exc:
        raise ValueError(f"'{cron}' is not a valid cron expression: {exc}") from None
    return cron


class FairnessSection(_Section):
    sensitive: list[str] = Field(default_factory=list)  # columns audited per group
    use_as_feature: bool = False  # audited columns are left out of the features by default
    max_disparity: float = Field(default=0.2, ge=0.0)  # above it a gap is flagged "warn"


class TrainSection(_Section):
    # Tuning and selection fit on a seeded sample of at most this many train-split rows (the
    # validation rows used in selection are cut in the same proportion); evaluation, importance
    # and scoring still use every row. None: all rows.
    max_rows: int | None = Field(default=None, ge=100)
    # A Dask scheduler for the candidate searches, tcp://HOST:PORT (see flows/runners.py);
    # `mallard run --dask` and MALLARD_DASK_ADDRESS take precedence. None: threads in the flow.
    dask: str | None = Field(default=None, min_length=1)


MEMORY_LIMIT = r"^\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$"  # a DuckDB memory_limit


class IngestSection(_Section):
    # polars: read and validate in memory. duckdb: out of core, under memory_limit, spilling to
    # a temporary folder (for files larger than memory). auto: duckdb when the source files
    # together hold more than duckdb_above_mb (CSV: file size; Parquet: uncompressed size).
    # Measured on generated housing rows (train flow, 2 cores): at 3M rows both engines took
    # 485 s and peaked at 2.8-2.9 GB; at 10M rows (501 MB uncompressed Parquet) the DuckDB
    # engine used ~1.3 GB less at no cost in time, so it takes over from 256 MB.
    engine: Literal["auto", "polars", "duckdb"] = "auto"
    duckdb_above_mb: float = Field(default=256.0, gt=0.0)
    # DuckDB's memory_limit, e.g. "1GB" or "512MB"; default MALLARD_DUCKDB_MEMORY_LIMIT or 1GB.
    memory_limit: str | None = Field(default=None, pattern=MEMORY_LIMIT)


class Spec(_Section):
    pipeline: PipelineSection
    source: SourceSection
    schema_: SchemaSection = Field(default_factory=SchemaSection, alias="schema")
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    split: SplitSection = Field(default_factory=SplitSection)
    cv: CVSection = Field(default_factory=CVSection)
    candidates: list[Candidate] = Field(min_length=1)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    promote: PromoteSection = Field(default_factory=PromoteSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    fairness: FairnessSection = Field(default_factory=FairnessSection)
    train: TrainSection = Field(default_factory=TrainSection)
    ingest: IngestSection = Field(default_factory=IngestSection)

    # Not part of the TOML: where the spec came from, for relative paths and lineage.
    spec_path: Path = Field(default=Path("."), exclude=True)
    spec_toml: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _fits_the_task(self) -> Spec:
        task = self.pipeline.task
        if task == "clustering":
            if self.pipeline.target is not None:
                raise ValueError("[pipeline.target] clustering has no target; remove the key")
        elif not self.pipeline.target:
            raise ValueError(f"[pipeline.target] a {task} pipeline needs a target column")
        allowed = METRICS[task]
        metric = self.evaluate.primary_metric or DEFAULT_PRIMARY[task]
        if metric not in allowed:
            raise ValueError(
                f"[evaluate.primary_metric] '{metric}' is not a {task} metric; "
                f"use one of {', '.join(allowed)}"
            )
        for i, candidate in enumerate(self.candidates):
            if candidate.scoring is not None and candidate.scoring not in allowed:
                raise ValueError(
                    f"[candidates[{i}].scoring] '{candidate.scoring}' is not a {task} metric"
                )
        if self.evaluate.tune_threshold and task != "classification":
            raise ValueError("[evaluate.tune_threshold] applies to classification only")
        if task == "clustering" and self.split.strategy != "random":
            raise ValueError("[split.strategy] clustering uses every valid row; leave it out")
        self._check_id()
        return self

    def _check_id(self) -> None:
        """The id column must name a column of the rows and survive PII handling unchanged
        enough to join on: not the target, not dropped at ingest, not generalised."""
        name = self.source.id
        if name is None:
            return
        if name == self.pipeline.target:
            raise ValueError(f"[source.id] '{name}' is the target column; name the rows' key")
        column = self.schema_.columns.get(name)
        if column is not None and column.pii in ("drop", "generalise"):
            raise ValueError(
                f"[source.id] '{name}' has pii = \"{column.pii}\", so it cannot join scored "
                'rows back; use another key or pii = "hash"'
            )

    @property
    def primary_metric(self) -> str:
        return self.evaluate.primary_metric or DEFAULT_PRIMARY[self.pipeline.task]

    @property
    def target(self) -> str | None:
        return self.pipeline.target

    @property
    def spec_sha256(self) -> str:
        return hashlib.sha256(self.spec_toml.encode()).hexdigest()

    def source_files(self) -> list[Path]:
        """The files the source path names, resolved against the spec's folder, sorted."""
        return [] if self.source.path is None else self.resolve_files(self.source.path)

    def resolve_files(self, pattern: str) -> list[Path]:
        """Files matching a path or glob; relative patterns are read from the spec's folder."""
        path = Path(pattern)
        if not path.is_absolute():
            path = self.spec_path.parent / path
        return sorted(Path(p) for p in glob.glob(str(path)))

    def candidate_names(self) -> list[str]:
        """Unique, stable names: the explicit name, else the family, suffixed on repeats."""
        names: list[str] = []
        for candidate in self.candidates:
            base = candidate.name or candidate.family
            name, n = base, 2
            while name in names:
                name, n = f"{base}_{n}", n + 1
            names.append(name)
        return names


def load_spec(path: Path) -> Spec:
    """Read and check a spec file; raise SpecError with one message naming the bad key."""
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path, *, check_source: bool = True) -> Spec:
    """Check spec `text` as if it were the file `path` (relative paths resolve from there).
    `check_source=False` reads a stored spec whose training files may have moved since."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        spec = Spec.model_validate({**raw, "spec_path": path.resolve(), "spec_toml": text})
    except ValidationError as exc:
        raise SpecError(f"{path}: {described(exc, Spec)}") from None
    if check_source:
        _check_source_exists(spec, path)
    return spec


def _check_source_exists(spec: Spec, path: Path) -> None:
    if spec.source.path is not None and not spec.source_files():
        raise SpecError(
            f"{path}: [source.path] no file matches '{spec.source.path}' "
            f"(relative paths are read from {spec.spec_path.parent})"
        )
