"""KServe inference logger (CloudEvents 1.0, structured JSON) → contract v1.

Types ``org.kubeflow.serving.inference.request`` / ``.response``, sharing ``id``; the model is
``inferenceservicename`` (spec-0.2 loggers: ``inferenceservice``, values quoted), the endpoint
``endpoint`` (``default`` or ``canary``). The join of
request and response is in :mod:`inferwatch.adapters.cloudevents`.
"""

from __future__ import annotations

from inferwatch.adapters.cloudevents import CloudEventsAdapter


class KServe(CloudEventsAdapter):
    name = "kserve"
    model_attributes = ("inferenceservicename", "inferenceservice")
    kept_attributes = ("namespace", "component", "source", "inferenceservicename", "specversion")
