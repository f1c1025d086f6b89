"""Alerting: rules as code (``rules``), baselines (``baselines``), evaluation (``evaluate``),
the alert log with its dedupe (``log``), delivery by e-mail and Slack-format webhook
(``delivery``), the pipeline step that ties them (``step``), retraining requests
(``retraining``) and the Airflow notifier for failed or held-back runs (``airflow_notifier``,
the only module here that imports Airflow)."""
