"""The audit trail (README: governance): who opened, ran, triggered or changed what.

``mart_audit_log`` is an append-only, hash-chained table kept by the pipeline's ``audit`` task
(never rebuilt by dbt: a chain is sequential). Sources, each read incrementally from its own
watermark: Superset's action log and SQL Lab queries (REST), Airflow's event log and finished
DAG runs (its metadata database), and the pipeline's own run records. :mod:`.ledger` keeps and
verifies the chain, :mod:`.sources` reads the sources, :mod:`.collect` ties them together and
publishes ``audit.duckdb`` for the Admin-only Superset dashboard.
"""
