"""Adapters: other producers' log records → contract v1 lines, before the one parse step.

One module per producer (``sagemaker``, ``kserve``, ``seldon``, ``openai_usage``, ``vertex``),
the prefix → adapter mapping in ``registry``, and the ingest hook in ``apply``. Samples of each
producer's records are in ``samples/``; docs/producers.md documents every field mapping.
"""

from inferwatch.adapters.registry import ADAPTERS, CONTRACT, ProducerMap, Route

__all__ = ["ADAPTERS", "CONTRACT", "ProducerMap", "Route"]
