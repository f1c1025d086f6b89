"""Which baseline a rule compares an hour with (README: Alerts).

``mart_anomalies_hourly`` (dbt) computes both baselines of every series in SQL: the primary
one (same hour of the trailing days for usage, the trailing days for the other metrics) and
the robust fallback (median and MAD of the trailing 24 hours). A rule takes the primary one
once the series has ``min_history_days`` of history and three points behind it, else the
fallback once the series has a whole trailing day (at least six hours with data), else none:
a brand-new series raises no baseline alert in its first day (a partial day's median is
not a baseline when traffic has a daily cycle).
"""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_KIND = "trailing_24h_median_mad"
MIN_PRIMARY_POINTS = 3
MIN_FALLBACK_POINTS = 6


@dataclass(frozen=True)
class Baseline:
    kind: str
    center: float
    spread: float

    def z(self, value: float) -> float:
        """Rounded to 6 decimals, like the mart's z-scores."""
        return round((value - self.center) / self.spread, 6)


def choose(row: dict, min_history_days: float) -> Baseline | None:
    """The baseline of one mart_anomalies_hourly row under a rule's minimum history."""
    if (
        row["history_days"] >= min_history_days
        and (row["primary_points"] or 0) >= MIN_PRIMARY_POINTS
        and row["primary_spread"]
    ):
        return Baseline(row["primary_kind"], row["primary_mean"], row["primary_spread"])
    if (
        row["history_days"] >= 1
        and (row["fallback_points"] or 0) >= MIN_FALLBACK_POINTS
        and row["fallback_spread"]
    ):
        return Baseline(FALLBACK_KIND, row["fallback_median"], row["fallback_spread"])
    return None
