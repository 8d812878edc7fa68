"""The champion rule: does a run's best model replace the pipeline's current champion?

Both models are measured on the new run's test split, so the comparison is on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from mallard.core.catalogue import greater_is_better
from mallard.core.figures import figure

CHAMPION = "champion"


@dataclass(frozen=True)
class Decision:
    pipeline: str
    model_id: str
    champion_model_id: str | None
    policy: str
    metric: str | None
    model_value: float | None
    champion_value: float | None
    min_improvement: float | None
    promoted: bool
    reason: str

    @property
    def improvement(self) -> float | None:
        if self.champion_value is None or self.model_value is None or self.metric is None:
            return None
        gain = self.model_value - self.champion_value
        return gain if greater_is_better(self.metric) else -gain


def decide(
    *,
    pipeline: str,
    model_id: str,
    model_value: float,
    metric: str,
    policy: str,
    min_improvement: float,
    champion_model_id: str | None,
    champion_value: float | None,
    champion_problem: str | None = None,
) -> Decision:
    """Apply the spec's [promote] rule. `champion_problem` says why the champion could not be
    measured (e.g. it cannot score the new columns); the new model then wins by default."""

    def verdict(promoted: bool, reason: str) -> Decision:
        return Decision(
            pipeline=pipeline,
            model_id=model_id,
            champion_model_id=champion_model_id,
            policy=policy,
            metric=metric,
            model_value=model_value,
            champion_value=champion_value,
            min_improvement=min_improvement,
            promoted=promoted,
            reason=reason,
        )

    if policy == "manual":
        return verdict(False, "policy is manual: promote with `mallard promote`")
    if policy == "never":
        return verdict(False, "a reproduction run never changes the champion")
    if champion_model_id is None:
        return verdict(True, "no champion yet")
    if champion_problem is not None or champion_value is None:
        return verdict(True, f"the champion could not be measured: {champion_problem}")
    decision = verdict(False, "")
    improvement = decision.improvement
    assert improvement is not None
    if improvement > 0 and improvement >= min_improvement:
        reason = (
            f"beats the champion on test {metric} by {figure(improvement)} (≥ {min_improvement:g})"
        )
        return verdict(True, reason)
    if improvement <= 0:
        return verdict(
            False,
            f"does not beat the champion on test {metric} "
            f"({model_value:.6g} vs {champion_value:.6g})",  # digits enough to differ
        )
    return verdict(
        False,
        f"test {metric} improvement {figure(improvement)} is below the required "
        f"{min_improvement:g}",
    )


def manual_decision(
    pipeline: str, model_id: str, champion_model_id: str | None, reason: str
) -> Decision:
    """A person's choice (promotion or rollback): recorded like the rule's, with their reason."""
    return Decision(
        pipeline=pipeline,
        model_id=model_id,
        champion_model_id=champion_model_id,
        policy="manual",
        metric=None,
        model_value=None,
        champion_value=None,
        min_improvement=None,
        promoted=True,
        reason=reason,
    )


def promotion_rows(
    decision: Decision, at: datetime, set_by: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ml.promotions row of a decision and, if promoted, the ml.aliases row (no run_id)."""
    promotions = pl.DataFrame(
        [
            {
                "pipeline": decision.pipeline,
                "model_id": decision.model_id,
                "champion_model_id": decision.champion_model_id,
                "policy": decision.policy,
                "metric": decision.metric,
                "model_value": decision.model_value,
                "champion_value": decision.champion_value,
                "improvement": decision.improvement,
                "min_improvement": decision.min_improvement,
                "promoted": decision.promoted,
                "reason": decision.reason,
                "decided_at": at,
            }
        ],
        schema_overrides={
            "metric": pl.String,
            "model_value": pl.Float64,
            "champion_value": pl.Float64,
            "improvement": pl.Float64,
            "min_improvement": pl.Float64,
            "champion_model_id": pl.String,
        },
    )
    aliases = pl.DataFrame(
        [
            {
                "pipeline": decision.pipeline,
                "alias": CHAMPION,
                "model_id": decision.model_id,
                "set_at": at,
                "set_by": set_by,
                "reason": decision.reason,
                "previous_model_id": decision.champion_model_id,
            }
        ]
        if decision.promoted
        else [],
        schema={
            "pipeline": pl.String,
            "alias": pl.String,
            "model_id": pl.String,
            "set_at": pl.Datetime("us", "UTC"),
            "set_by": pl.String,
            "reason": pl.String,
            "previous_model_id": pl.String,
        },
    )
    return promotions, aliases
