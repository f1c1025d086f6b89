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


@dataclass(frozen=True)
class Route:
    prefix: str
    adapter: str = CONTRACT
    model: str | None = None
    model_version: str | None = None
    endpoint: str | None = None

    def path_names(self, key: str) -> tuple[str | None, str | None]:
        """The first two folders under the prefix, before any ``yyyy/`` partition.

        For SageMaker's capture layout ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/file``
        these are the endpoint and variant names.
        """
        folders = key[len(self.prefix) :].split("/")[:-1]
        names: list[str] = []
        for folder in folders:
            if _DATE_PART.match(folder) or len(names) == 2:
                break
            if folder:
                names.append(folder)
        names += [None] * (2 - len(names))
        return names[0], names[1]


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
