"""Which adapter reads which lake prefix: the INFERWATCH_PRODUCERS mapping.

The mapping (a YAML or JSON file, or inline JSON in the variable) names a lake prefix and the
adapter that reads the objects under it, optionally with the model metadata the producer's
records lack::

    raw/sagemaker/: sagemaker_capture
    raw/kserve/: {adapter: kserve, model_version: v3}
    raw/llm-gateway/: {adapter: openai_usage, endpoint: chat}

The longest matching prefix wins; objects under no prefix are contract v1 (``contract``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from inferwatch.adapters.base import Adapter
from inferwatch.adapters.kserve import KServe
from inferwatch.adapters.openai_usage import OpenAIUsage
from inferwatch.adapters.sagemaker import SageMakerCapture
from inferwatch.adapters.seldon import Seldon
from inferwatch.adapters.vertex import VertexAI

CONTRACT = "contract"

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (SageMakerCapture(), KServe(), Seldon(), OpenAIUsage(), VertexAI())
}

#: Options a prefix may set: fallbacks for what the producer's records do not carry.
OPTIONS = ("model", "model_version", "endpoint")

_DATE_PART = re.compile(r"^[0-9]{4}$")
_MONTH_PART = re.compile(r"^[0-9]{2}$")


@dataclass(frozen=True)
class Route:
    prefix: str
    adapter: str = CONTRACT
    model: str | None = None
    model_version: str | None = None
    endpoint: str | None = None

    def path_names(self, key: str) -> tuple[str | None, str | None]:
        """The two folders right before the ``yyyy/mm/…`` partition, wherever it sits.

        SageMaker writes ``<any prefix, any depth>/<endpoint>/<variant>/yyyy/mm/dd/hh/file``:
        these are the endpoint and variant names, however deep the prefix the team chose (the
        lake's ``raw/`` root is never one of them). A key without a date partition gives the
        first two folders under the route's prefix.
        """
        folders = key.split("/")[1:-1]
        for i in range(len(folders) - 1, -1, -1):
            if _DATE_PART.match(folders[i]) and _MONTH_PART.match(
                folders[i + 1] if i + 1 < len(folders) else ""
            ):
                before = [f for f in folders[:i] if f]
                return (before[-2], before[-1]) if len(before) >= 2 else (None, None)
        under = [f for f in key[len(self.prefix) :].split("/")[:-1] if f][:2]
        under += [None] * (2 - len(under))
        return under[0], under[1]


@dataclass(frozen=True)
class ProducerMap:
    routes: tuple[Route, ...] = ()

    def route(self, key: str) -> Route:
        best = Route(prefix="")
        for route in self.routes:
            if key.startswith(route.prefix) and len(route.prefix) > len(best.prefix):
                best = route
        return best

    @property
    def adapts_anything(self) -> bool:
        return any(r.adapter != CONTRACT for r in self.routes)

    @classmethod
    def from_mapping(cls, mapping: dict) -> ProducerMap:
        if not isinstance(mapping, dict):
            raise ValueError("INFERWATCH_PRODUCERS must be a mapping of lake prefix → adapter")
        routes = []
        for prefix, spec in mapping.items():
            options = {"adapter": spec} if isinstance(spec, str) else dict(spec or {})
            adapter = options.pop("adapter", None)
            unknown = set(options) - set(OPTIONS)
            if unknown:
                raise ValueError(
                    f"INFERWATCH_PRODUCERS[{prefix!r}]: unknown option(s) {sorted(unknown)}; "
                    f"known: adapter, {', '.join(OPTIONS)}"
                )
            if adapter != CONTRACT and adapter not in ADAPTERS:
                raise ValueError(
                    f"INFERWATCH_PRODUCERS[{prefix!r}]: unknown adapter {adapter!r}; "
                    f"known: {', '.join([CONTRACT, *ADAPTERS])}"
                )
            if not str(prefix).startswith("raw/"):
                raise ValueError(
                    f"INFERWATCH_PRODUCERS: prefix {prefix!r} must be a lake key under raw/"
                )
            routes.append(
                Route(
                    prefix=str(prefix), adapter=adapter, **{k: str(v) for k, v in options.items()}
                )
            )
        return cls(routes=tuple(routes))

    @classmethod
    def load(cls, spec: str | Path | None) -> ProducerMap:
        """From a YAML/JSON file's path or inline JSON (starting with ``{``); None → empty."""
        if spec is None or not str(spec).strip():
            return cls()
        text = str(spec).strip()
        if not text.startswith("{"):
            text = Path(text).read_text()
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError:
            import yaml

            mapping = yaml.safe_load(text)
        return cls.from_mapping(mapping or {})
