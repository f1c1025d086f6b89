"""KServe inference logger (CloudEvents 1.0, structured JSON) → contract v1.

Types ``org.kubeflow.serving.inference.request`` / ``.response``; the model is
``inferenceservicename``, the endpoint ``endpoint`` (``default`` or ``canary``). The join of
request and response is in :mod:`inferwatch.adapters.cloudevents`.
"""

from __future__ import annotations

from inferwatch.adapters.cloudevents import CloudEventsAdapter


class KServe(CloudEventsAdapter):
    name = "kserve"
    model_attributes = ("inferenceservicename",)
    kept_attributes = ("namespace", "component", "source", "inferenceservicename")
