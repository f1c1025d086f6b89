"""sqlfluff's stand-in for dbt's `adapter` (it has none): `adapter.dispatch('x', ...)` returns
the macro `duckdb__x` (else `default__x`), so that lint reads the models as DuckDB renders them."""

from jinja2 import pass_context


@pass_context
def dispatch(context, macro_name, macro_namespace=None):
    for prefix in ("duckdb__", "default__"):
        if f"{prefix}{macro_name}" in context:
            return context[f"{prefix}{macro_name}"]
    raise KeyError(f"no duckdb__ or default__ variant of macro {macro_name}")
