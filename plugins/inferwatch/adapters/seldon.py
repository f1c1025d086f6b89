"""Seldon Core request logger (CloudEvents, structured JSON) → contract v1.

Types ``io.seldon.serving.inference.request`` / ``.response``; the model is ``modelid`` (the
model's name in the graph), else ``inferenceservicename`` (the deployment). The request and
the response have ids of their own and share ``requestid`` (``ce-requestid``): they are joined
on it, and it is the contract's ``event_id`` and ``request_id``. Bodies are SeldonMessages
(``data.names`` + ``data.ndarray`` or ``data.tensor``, ``jsonData``, ``strData``). The join is
in :mod:`inferwatch.adapters.cloudevents`.
"""

from __future__ import annotations

from inferwatch.adapters.cloudevents import CloudEventsAdapter


class Seldon(CloudEventsAdapter):
    name = "seldon"
    model_attributes = ("modelid", "inferenceservicename")
    kept_attributes = ("namespace", "predictor", "source", "inferenceservicename")
    join_attributes = ("requestid", "id")
