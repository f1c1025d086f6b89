"""Deliver alerts: one e-mail (SMTP) and one Slack-compatible webhook post per run.

The webhook body carries ``text`` (for any Slack-compatible receiver), ``blocks`` (Slack's
layout) and ``attachments`` (Mattermost, Rocket.Chat, older Slack apps), each alert with its
model, metric, value, threshold, baseline kind and a link to its Superset dashboard.

Alert text holds names from log lines (model, version) that an older bronze may have let in
with any character, so each channel gets it escaped its own way: control characters (CR, LF,
…) shown as ``\\n``-style escapes everywhere (an e-mail header then cannot be split into two,
a log line stays one line), the subject RFC 2047-encoded by ``email``, Slack's ``& < >``
entity-escaped (a name cannot ping ``<!channel>`` or forge a link), the body JSON-encoded.
A channel that fails for any reason is reported as failed, never raised.
"""

from __future__ import annotations

import json
import logging
import smtplib
import unicodedata
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

from inferwatch.config import Settings

log = logging.getLogger(__name__)

#: Slack allows 50 blocks a message: a digest shows this many alerts and counts the rest.
MAX_ALERTS_SHOWN = 20
TIMEOUT_S = 10
#: An e-mail subject longer than this is cut (a header line should stay under 998 bytes).
MAX_SUBJECT_CHARS = 200
#: Fields that are no text from data: links built from the configuration.
_NOT_TEXT = ("dashboard_url",)


def plain(text: str) -> str:
    """``text`` on one line: control characters and line separators as visible escapes."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in ("Cc", "Zl", "Zp")
        else char
        for char in text
    )


def _slack(text: str) -> str:
    """Slack's control characters entity-escaped, on one line."""
    return plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escaped(alert: dict, escape: Callable[[str], str]) -> dict:
    return {key: escape(value) if isinstance(value, str) and key not in _NOT_TEXT else value
            for key, value in alert.items()}  # fmt: skip


def log_line(alert: dict) -> str:
    """One alert as one line of the task log."""
    return _line(_escaped(alert, plain))


def _number(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _subject_of(alert: dict) -> str:
    version = f" {alert['model_version']}" if alert.get("model_version") else ""
    return f"{alert['rule']}: {alert.get('model') or 'pipeline'}{version}"


def _line(alert: dict) -> str:
    return (f"[{alert['severity']}] {_subject_of(alert)} at {alert['period_start']} — "
            f"{alert['metric']} = {_number(alert['value'])}, threshold "
            f"{_number(alert['threshold'])}, baseline {alert['baseline_kind']}: "
            f"{alert['message']}")  # fmt: skip


def slack_payload(alerts: list[dict]) -> dict:
    alerts = [_escaped(alert, _slack) for alert in alerts]
    shown, rest = alerts[:MAX_ALERTS_SHOWN], len(alerts) - MAX_ALERTS_SHOWN
    text = f"InferWatch: {len(alerts)} new alert(s)"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": text}}]
    attachments = []
    for alert in shown:
        fields = {
            "Model": f"{alert.get('model') or '–'} {alert.get('model_version') or ''}".strip(),
            "Metric": alert["metric"],
            "Value": _number(alert["value"]),
            "Threshold": _number(alert["threshold"]),
            "Baseline": alert["baseline_kind"],
            "Period": f"{alert['period_grain']} {alert['period_start']}",
        }
        blocks.append({
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{_subject_of(alert)}*\n{alert['message']}"},
            "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()],
        })  # fmt: skip
        blocks.append({
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Dashboard"},
                          "url": alert["dashboard_url"]}],
        })  # fmt: skip
        attachments.append({
            "color": "#d00000" if alert["severity"] == "critical" else "#e8a317",
            "title": _subject_of(alert), "title_link": alert["dashboard_url"],
            "text": alert["message"], "fallback": _line(alert),
            "fields": [{"title": k, "value": v, "short": True} for k, v in fields.items()],
        })  # fmt: skip
    if rest > 0:
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": f"…and {rest} more"}]})  # fmt: skip
    body = "\n".join(f"• {_line(a)} <{a['dashboard_url']}|dashboard>" for a in shown)
    return {"text": f"{text}\n{body}", "blocks": blocks, "attachments": attachments}


def post_webhook(url: str, alerts: list[dict]) -> None:
    data = json.dumps(slack_payload(alerts), default=str).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (configured URL)
        if response.status >= 300:
            raise OSError(f"webhook answered HTTP {response.status}")


def email_message(settings: Settings, alerts: list[dict]) -> EmailMessage:
    message = EmailMessage()
    alerts = [_escaped(alert, plain) for alert in alerts]
    first = _subject_of(alerts[0])
    if len(first) > MAX_SUBJECT_CHARS:
        first = first[: MAX_SUBJECT_CHARS - 1] + "…"
    more = f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""
    message["Subject"] = f"[InferWatch] {first}{more}"
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(settings.alert_emails)
    lines = [f"{_line(a)}\n  dashboard: {a['dashboard_url']}" for a in alerts]
    message.set_content(f"InferWatch raised {len(alerts)} new alert(s):\n\n" + "\n\n".join(lines))
    return message


def send_email(settings: Settings, alerts: list[dict]) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
        smtp.send_message(email_message(settings, alerts))


def channels(settings: Settings) -> list[str]:
    out = []
    if settings.alert_emails:
        out.append("email")
    if settings.alert_webhook_url:
        out.append("webhook")
    return out


def deliver(settings: Settings, alerts: list[dict]) -> dict[str, str | None]:
    """Send on every configured channel; returns channel → error text (None when delivered)."""
    outcome: dict[str, str | None] = {}
    senders = {"email": lambda: send_email(settings, alerts),
               "webhook": lambda: post_webhook(settings.alert_webhook_url, alerts)}  # fmt: skip
    for channel in channels(settings):
        try:
            senders[channel]()
            outcome[channel] = None
        # Whatever goes wrong (a refused connection, a bad URL, a header the library refuses),
        # the alerts are still logged, as failed, and retried next run: never a crashed step.
        except Exception as error:  # noqa: BLE001
            outcome[channel] = plain(f"{type(error).__name__}: {error}")
            log.warning("alert delivery by %s failed: %s", channel, outcome[channel])
    return outcome
