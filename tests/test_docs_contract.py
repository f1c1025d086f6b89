"""The repository's own documentation: the contract's field table agrees with the JSON Schema,
links between the pages resolve, and no file sends a reader to a document outside the repository.

Reads files only (no pipeline, no fixtures): well under a second.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import jsonschema
import pytest

from inferwatch.ingest.bronze import parse_lines
from inferwatch.ingest.lines import BOM, decompress, lines_table

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_DOC = ROOT / "docs" / "contract.md"
SCHEMA_PATH = ROOT / "plugins" / "inferwatch" / "schemas" / "inference_log.v1.json"
#: The words the field table's type column uses for JSON Schema's types (`any`: no type given).
TYPE_WORDS = ("string", "number", "integer", "boolean", "object", "array", "null", "any")
#: Documents that live outside the repository (spelled in pieces, so this file holds none).
OUTSIDE_DOCUMENTS = ("DESIGN" + ".md", "STACK" + "_NOTES", ".." + "/shared")


@dataclass(frozen=True)
class Field:
    types: frozenset[str]
    required: bool
    minimum: float | None = None
    maximum: float | None = None


# ---------------------------------------------------------------- the schema's side
def _schema_types(spec: dict) -> frozenset[str]:
    declared = spec.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    if "enum" in spec or "const" in spec:
        values = spec.get("enum", [spec.get("const")])
        return frozenset(_json_type(value) for value in values)
    branches = spec.get("oneOf") or spec.get("anyOf")
    if branches:
        return frozenset().union(*(_schema_types(branch) for branch in branches))
    return frozenset({"any"})


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def _schema_field(spec: dict, required: bool) -> Field:
    return Field(_schema_types(spec), required, spec.get("minimum"), spec.get("maximum"))


def schema_fields(schema: dict) -> dict[str, Field]:
    """Every property, and every member property of an object property (also inside its
    oneOf/anyOf branches) as ``parent.member``."""
    fields = {}
    required = set(schema.get("required", []))
    for name, spec in schema["properties"].items():
        fields[name] = _schema_field(spec, name in required)
        for branch in (spec, *spec.get("oneOf", []), *spec.get("anyOf", [])):
            inner = set(branch.get("required", []))
            for member, member_spec in branch.get("properties", {}).items():
                fields[f"{name}.{member}"] = _schema_field(member_spec, member in inner)
    return fields


# ---------------------------------------------------------------- the document's side
def _section(markdown: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section '## {heading}'"
    return match.group(1)


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split(" | ")]


def _doc_field(type_cell: str, required_cell: str) -> Field:
    minimum = maximum = None
    if match := re.search(r"in \[(-?[\d.e]+), (-?[\d.e]+)\]", type_cell):
        minimum, maximum = float(match.group(1)), float(match.group(2))
    if match := re.search(r"≥ (-?[\d.e]+)", type_cell):
        minimum = float(match.group(1))
    if match := re.search(r"≤ (-?[\d.e]+)", type_cell):
        maximum = float(match.group(1))
    words = re.sub(r"\(.*?\)|in \[.*?\]", "", type_cell)
    types = frozenset(w for w in re.findall(r"[a-z]+", words) if w in TYPE_WORDS)
    assert required_cell in ("yes", "no"), f"required is yes or no, not {required_cell!r}"
    return Field(types, required_cell == "yes", minimum, maximum)


def doc_fields(markdown: str) -> dict[str, Field]:
    """The field table of the "Fields" section: ``| `name` | type | yes/no | notes |``."""
    rows = [line for line in _section(markdown, "Fields").splitlines() if line.startswith("|")]
    assert _cells(rows[0])[:3] == ["field", "type", "required"], rows[0]
    fields = {}
    for row in rows[2:]:
        name, type_cell, required_cell, *_ = _cells(row)
        assert re.fullmatch(r"`[a-z_.]+`", name), f"a field is written `name`: {row}"
        assert name.strip("`") not in fields, f"documented twice: {name}"
        fields[name.strip("`")] = _doc_field(type_cell, required_cell)
    return fields


def mismatches(documented: dict[str, Field], schema: dict[str, Field]) -> list[str]:
    problems = [f"{name}: in the schema, not in docs/contract.md" for name in schema.keys()
                - documented.keys()]  # fmt: skip
    problems += [f"{name}: in docs/contract.md, not in the schema" for name in documented.keys()
                 - schema.keys()]  # fmt: skip
    for name in sorted(documented.keys() & schema.keys()):
        doc, truth = documented[name], schema[name]
        for aspect in ("types", "required", "minimum", "maximum"):
            said, is_ = getattr(doc, aspect), getattr(truth, aspect)
            if aspect == "types":
                said, is_ = sorted(said), sorted(is_)
            if said != is_:
                problems.append(f"{name}: {aspect} is {is_} in the schema, {said} in the doc")
    return sorted(problems)


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def documented() -> dict[str, Field]:
    return doc_fields(CONTRACT_DOC.read_text())


def test_the_field_table_agrees_with_the_json_schema(schema, documented):
    assert mismatches(documented, schema_fields(schema)) == []


def test_the_check_sees_an_undocumented_field_and_a_wrong_row(schema, documented):
    """The comparison is not vacuous: a new schema property without a row, a changed range,
    a changed type or a changed required list are each reported."""
    changed = copy.deepcopy(schema)
    changed["properties"]["shadow_score"] = {"type": "number", "minimum": 0}
    changed["properties"]["confidence"]["maximum"] = 100
    changed["properties"]["latency_ms"]["type"] = "integer"
    changed["required"].append("endpoint")
    changed["properties"]["usage"]["properties"]["cached_tokens"] = {"type": "integer"}
    assert mismatches(documented, schema_fields(changed)) == [
        "confidence: maximum is 100 in the schema, 1.0 in the doc",
        "endpoint: required is True in the schema, False in the doc",
        "latency_ms: types is ['integer'] in the schema, ['number'] in the doc",
        "shadow_score: in the schema, not in docs/contract.md",
        "usage.cached_tokens: in the schema, not in docs/contract.md",
    ]


# ---------------------------------------------------------------- the documented examples
def _example_lines() -> list[str]:
    """The log lines the pages show (JSON blocks holding a ``timestamp``)."""
    lines = []
    for page in ("contract.md", "lake.md"):
        for block in re.findall(r"^```json\n(.*?)^```", (ROOT / "docs" / page).read_text(),
                                re.M | re.S):  # fmt: skip
            lines += [line for line in block.splitlines() if '"timestamp"' in line]
    return lines


def _parsed(data: bytes) -> list[dict]:
    with duckdb.connect() as con:
        decoded = decompress("raw/example.jsonl", data)
        parse_lines(con, lines_table([decoded]), [decoded.key], None, b"k" * 32)
        rows = con.sql("select * from parsed order by line_number")
        return [dict(zip(rows.columns, row, strict=True)) for row in rows.fetchall()]


def test_the_documented_example_lines_are_valid_and_read_as_documented(schema):
    """The pages' example lines pass the schema and the reader; the defaults they state hold:
    the `_v<digits>` split, status ok, and an absent event_id is the SHA-256 of the line
    without its line end (LF or CRLF) and without the object's byte-order mark."""
    lines = _example_lines()
    assert len(lines) >= 3
    validator = jsonschema.Draft202012Validator(schema)
    for line in lines:
        assert list(validator.iter_errors(json.loads(line))) == [], line
    # a BOM before the first line, CRLF after it, LF after the others
    data = BOM + lines[0].encode() + b"\r\n" + "\n".join(lines[1:]).encode() + b"\n"
    rows = _parsed(data)
    assert [row["reason"] for row in rows] == [None] * len(lines)
    article = rows[0]
    assert (article["model"], article["model_version"], article["status"]) == (
        "customer_churn", "v2", "ok"
    )  # fmt: skip
    for line, row in zip(lines, rows, strict=True):
        written = json.loads(line).get("event_id")
        assert row["event_id"] == (written or hashlib.sha256(line.encode()).hexdigest())


# ---------------------------------------------------------------- links and outside documents
def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _outside_code(markdown), re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _outside_code(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def _markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_links_between_the_pages_resolve():
    """Every relative link of README.md and docs/*.md names a file of the repository, and an
    anchor into a Markdown page names one of its headings."""
    broken = []
    for page in _markdown_pages():
        text = _outside_code(page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_readme_links_the_documentation_pages():
    readme = (ROOT / "README.md").read_text()
    for page in ("contract.md", "lake.md", "definitions.md"):
        assert f"](docs/{page}" in readme, f"README.md does not link docs/{page}"


def _repository_files() -> list[Path]:
    """Tracked files plus new ones not ignored (so the check also sees uncommitted pages)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return [ROOT / name for name in sorted(set(listed.decode().split("\0"))) if name]


def test_no_file_refers_to_a_document_outside_the_repository():
    """Users only have the repository: no page, comment or message may send them elsewhere."""
    found = []
    for path in _repository_files():
        if not path.is_file():
            continue  # listed but deleted in the working tree
        data = path.read_bytes()
        for name in OUTSIDE_DOCUMENTS:
            if name.encode() in data:
                found.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == []
