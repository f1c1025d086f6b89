"""Alert rules as code and the baseline choice, without a pipeline run."""

from __future__ import annotations

import pytest

from inferwatch.alerts import baselines
from inferwatch.alerts.rules import RULE_NAMES, RulesError, load_rules
from inferwatch.config import DEFAULT_ALERT_RULES, Settings


def test_shipped_rules_cover_every_rule_with_per_model_overrides():
    rules = load_rules(DEFAULT_ALERT_RULES)
    assert set(rules.defaults["rules"]) == set(RULE_NAMES)
    assert rules.rule("latency_p95", "fraud_detector")["limit_ms"] == 200
    assert rules.rule("latency_p95", "a_new_model")["limit_ms"] == 1000
    # a rule-level minimum history wins over the global one
    assert rules.rule("usage", "support_llm")["min_history_days"] == 7
    assert rules.rule("error_rate", "support_llm")["min_history_days"] == 3
    assert set(rules.dashboards) == set(RULE_NAMES)


def test_unknown_rule_names_are_refused(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text("defaults:\n  rules:\n    latency_p59: {limit_ms: 1}\n")
    with pytest.raises(RulesError, match="latency_p59"):
        load_rules(path)


def test_disabled_rule_and_override(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(
        "defaults:\n  rules:\n    usage: {z: 3}\n"
        "models:\n  m:\n    rules:\n      usage: {enabled: false}\n"
    )
    rules = load_rules(path)
    assert rules.rule("usage", "m") is None and rules.rule("usage", "other")["z"] == 3


def _row(**overrides) -> dict:
    row = {
        "history_days": 10.0, "primary_kind": "trailing_mean", "primary_mean": 10.0,
        "primary_spread": 2.0, "primary_points": 100, "fallback_median": 12.0,
        "fallback_spread": 3.0, "fallback_points": 24,
    }  # fmt: skip
    return {**row, **overrides}


def test_baseline_primary_then_fallback_then_none():
    assert baselines.choose(_row(), 3).kind == "trailing_mean"
    short = baselines.choose(_row(history_days=2.0), 3)
    assert short.kind == baselines.FALLBACK_KIND and short.z(18.0) == pytest.approx(2.0)
    assert baselines.choose(_row(history_days=0.5), 3) is None  # a brand-new version


def test_notification_settings_from_the_environment():
    settings = Settings.from_env({
        "INFERWATCH_ALERT_EMAILS": "a@example.com, b@example.com",
        "INFERWATCH_SMTP_PORT": "2525", "INFERWATCH_ALERT_WEBHOOK_URL": " http://h/x ",
    })  # fmt: skip
    assert settings.alert_emails == ("a@example.com", "b@example.com")
    assert settings.smtp_port == 2525 and settings.smtp_host == "127.0.0.1"
    assert settings.alert_webhook_url == "http://h/x" and settings.report_emails == ()
    assert Settings.from_env({}).alert_rules_path == DEFAULT_ALERT_RULES
