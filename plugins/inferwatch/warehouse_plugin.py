"""A dbt-duckdb plugin (profiles.yml, ``plugins:``) that creates the warehouse file's folder.

DuckDB creates a missing database file but not its folder, so a plain ``dbt build`` in a fresh
checkout (no ``data/`` yet) would stop on "Cannot open file". Only dbt imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

_NOT_FILES = (":memory:", "md:", "motherduck:")


class Plugin(BasePlugin):
    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        path = str(creds.path or "")
        if path and not path.startswith(_NOT_FILES) and "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
