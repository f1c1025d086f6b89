"""Serve: the local Superset, and dashboards-as-code synced into it."""
