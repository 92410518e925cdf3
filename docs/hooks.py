"""MkDocs hooks: the Schemas section, generated from the models at build time.

For every model in :data:`jobmon_gateway.schemas.RESPONSE_MODELS` the build
gets a page ``schemas/<Model>.md`` (its fields, its JSON Schema and the
answers recorded from real servers) and a download ``schemas/<Model>.json``
holding exactly what ``export_schemas`` writes. Nothing is checked in: the
pages are made from the installed package each time the site is built.

The recorded answers are read from ``../shared/wire`` beside the repository,
or from the directory named by ``JOBMON_WIRE_DIR``. Without them the pages
say so, and the build still succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel

from jobmon_gateway.schemas import (
    RESPONSE_MODELS,
    WIRE_ROUTES,
    model_for_route,
    schema_of,
    schema_text,
)

log = logging.getLogger("mkdocs.hooks.schemas")

SCHEMAS_SECTION = "Schemas"
SCHEMAS_DIR = "schemas"
TABLE_MARKER = "<!-- schema-table -->"
RECORDINGS_MARKER = "<!-- recordings -->"


@dataclass(frozen=True)
class Recording:
    """One recorded 2xx answer of a real server."""

    server: str
    file: str
    method: str
    route: str
    query: dict[str, Any]
    body: Any


def _wire_dir(config: MkDocsConfig) -> Path | None:
    candidates = []
    if os.environ.get("JOBMON_WIRE_DIR"):
        candidates.append(Path(os.environ["JOBMON_WIRE_DIR"]))
    repo = Path(config.config_file_path).resolve().parent
    candidates.append(repo.parent / "shared" / "wire")
    return next((path for path in candidates if path.is_dir()), None)


def _recordings(config: MkDocsConfig) -> dict[str, list[Recording]]:
    wire = _wire_dir(config)
    found: dict[str, list[Recording]] = defaultdict(list)
    if wire is None:
        log.info("no recorded wire pairs found: the schema pages will have no examples")
        return found
    # Newest server first: its answers are the ones a current client sees.
    for path in sorted(
        wire.glob("*/*.json"), key=lambda p: (p.parent.name != "jobmon-server-3.6", p)
    ):
        recording = json.loads(path.read_text(encoding="utf-8"))
        if not 200 <= recording["status"] < 300:
            continue
        model = model_for_route(recording["method"], recording["route"])
        if model is None:
            continue
        found[model.__name__].append(
            Recording(
                server=str(recording.get("server") or path.parent.name),
                file=f"{path.parent.name}/{path.name}",
                method=recording["method"],
                route=recording["route"],
                query=dict(recording.get("query") or {}),
                body=json.loads(recording["response_text"]),
            )
        )
    return found


# -- turning a schema into words -----------------------------------------------------


def _def_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _wire_type(node: dict[str, Any]) -> str:
    """A short, readable name for the wire form a schema node accepts."""
    if "$ref" in node:
        return f"`{_def_name(node['$ref'])}`"
    if "anyOf" in node:
        return " or ".join(_wire_type(option) for option in node["anyOf"])
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        if "prefixItems" in node:
            items = ", ".join(_item_name(item) for item in node["prefixItems"])
            return f"list `[{items}]`"
        if node.get("maxItems") == 0:
            return "empty list `[]`"
        return f"list of {_wire_type(node.get('items') or {})}"
    if kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, dict) and values:
            keys = "task id" if "propertyNames" in node else "string"
            return f"object: {keys} → {_wire_type(values)}"
        return "object"
    if kind == "string":
        if "pattern" in node:
            return f"string matching `{node['pattern']}`"
        if node.get("contentMediaType") == "application/json":
            return "JSON-encoded string"
        if "contentMediaType" in node:
            return f"string holding {node['contentMediaType']} text"
        return "string"
    if kind == "integer":
        return "integer"
    if kind == "number":
        return "number"
    if kind == "null":
        return "`null`"
    if kind == "boolean":
        return "boolean"
    return "any JSON value"


def _item_name(item: dict[str, Any]) -> str:
    title = str(item.get("title") or "value")
    return title.lower().replace(" ", "_")


_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_ROLE = re.compile(r":[a-z]+:`~?([\w.]+)`")


def _markdown(text: str) -> str:
    """The reST habits of the models' text as Markdown: ``literal`` and :role:`~a.Name`."""
    text = _RST_ROLE.sub(lambda match: f"`{match[1].rsplit('.', 1)[-1]}`", text)
    return _RST_LITERAL.sub(r"`\1`", text)


def _cell(text: str) -> str:
    return _markdown(text).replace("|", "\\|").replace("\n", " ")


def _field_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = ["| Field | On the wire | Required | Description |", "|---|---|---|---|"]
    for name, node in schema.get("properties", {}).items():
        lines.append(
            f"| `{name}` | {_cell(_wire_type(node))} | {'yes' if name in required else 'no'}"
            f" | {_cell(str(node.get('description', '')))} |"
        )
    if schema.get("additionalProperties") is True:
        lines.append(
            "| any other | any JSON value | no | A field a newer server adds: kept, as"
            " decoded JSON, in the model's `model_extra`. |"
        )
    return lines


def _row_table(row: dict[str, Any]) -> list[str]:
    lines = ["| Position | Field | On the wire | Description |", "|---|---|---|---|"]
    for index, node in enumerate(row["prefixItems"]):
        lines.append(
            f"| {index} | `{_item_name(node)}` | {_cell(_wire_type(node))}"
            f" | {_cell(str(node.get('description', '')))} |"
        )
    return lines


def _nested_rows(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Positional rows (lists of named fields) anywhere in the schema, with a heading each."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, definition in schema.get("$defs", {}).items():
        if "prefixItems" in definition:
            rows.append((f"`{name}`, a positional list", definition))
    for name, node in schema.get("properties", {}).items():
        for option in node.get("anyOf", []):
            if "prefixItems" in option:
                rows.append((f"`{name}`, a positional list", option))
        values = node.get("additionalProperties")
        if isinstance(values, dict) and "prefixItems" in values:
            rows.append((f"Each value of `{name}`, a positional list", values))
    return rows


def _docstring_markdown(model: type[BaseModel]) -> str:
    # The models' docstrings use reST ``literals``; Markdown wants single backticks.
    text = (model.__doc__ or "").strip()
    lines = text.splitlines()
    return _markdown("\n".join(line.strip() for line in lines))


def _compact_json(value: Any, indent: int = 0) -> str:
    """JSON with objects spread over lines and lists of plain values kept on one.

    A task row or a list of ids reads best on one line, as the server sent it.
    """
    pad = " " * indent
    if isinstance(value, dict) and value:
        items = [
            f"{pad}  {json.dumps(key, ensure_ascii=False)}: {_compact_json(item, indent + 2)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        items = [f"{pad}  {_compact_json(item, indent + 2)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def _json_block(value: Any) -> list[str]:
    return ["``` json", *_compact_json(value).splitlines(), "```"]


def _indented(lines: list[str], prefix: str = "    ") -> list[str]:
    return [prefix + line if line else line for line in lines]


def _model_page(model: type[BaseModel], recordings: list[Recording]) -> str:
    name = model.__name__
    schema = schema_of(model)
    routes = [route for route in WIRE_ROUTES if route.model is model]
    lines = [f"# {name}", "", _docstring_markdown(model), ""]
    for route in routes:
        call = route.gateway_call
        lines.append(
            f"- Answer of `{route.method} {route.template}`, sent by"
            f" [`ServerGateway.{call}`][jobmon_gateway.ServerGateway.{call}] and `{call}_sync`."
        )
    lines += [
        f"- The model: [`{name}`][jobmon_gateway.models.{name}].",
        f"- The schema as a file: [`{name}.json`]({name}.json)"
        f" (the same bytes as `python -m jobmon_gateway schema {name}` prints).",
        "",
        '!!! note "This is the schema of the wire payload"',
        "    It describes the JSON the server sends, quirks included, and was generated"
        f" from `{name}` when this site was built. What the model hands back to you is"
        " on its [API page][jobmon_gateway.models." + name + "].",
        "",
        "## Fields",
        "",
        '<div class="schema-fields" markdown>',
        "",
        *_field_table(schema),
        "",
    ]
    for heading, row in _nested_rows(schema):
        lines += [f"### {heading}", "", *_row_table(row), ""]
    lines += ["</div>", ""]
    lines += [
        "## Schema and a recorded answer",
        "",
        '<div class="grid schema-side-by-side" markdown>',
        "",
        '<div class="schema-json" markdown>',
        "",
        f"**JSON Schema** of `{name}`",
        "",
        "``` json",
        *schema_text(model).rstrip("\n").splitlines(),
        "```",
        "",
        "</div>",
        "",
        '<div class="wire-example" markdown>',
        "",
    ]
    if recordings:
        lines += ["**Recorded answers** of real servers", ""]
        for recording in recordings:
            query = "".join(
                f"{'&' if index else '?'}{key}={value}"
                for index, (key, value) in enumerate(recording.query.items())
            )
            lines += [
                f'=== "{recording.server} · {Path(recording.file).stem}"',
                "",
                f"    `{recording.method} {recording.route}{query}` → 200,"
                f" recorded in `{recording.file}`",
                "",
                *_indented(_json_block(recording.body)),
                "",
            ]
    else:
        lines += [
            "**Recorded answers**",
            "",
            "No recorded answers were available when this site was built"
            " (they are read from `../shared/wire` or `$JOBMON_WIRE_DIR`).",
            "",
        ]
    lines += ["</div>", "", "</div>", ""]
    return "\n".join(lines)


def _schemas_table() -> str:
    lines = ["| Model | Route | Gateway call |", "|---|---|---|"]
    for route in WIRE_ROUTES:
        name = route.model.__name__
        lines.append(
            f"| [`{name}`]({name}.md) | `{route.method} {route.template}`"
            f" | `{route.gateway_call}` / `{route.gateway_call}_sync` |"
        )
    return "\n".join(lines)


def _recordings_note(recordings: dict[str, list[Recording]]) -> str:
    every = [recording for found in recordings.values() for recording in found]
    if not every:
        return (
            "This site was built without recorded answers (they are read from"
            " `../shared/wire` or `$JOBMON_WIRE_DIR`): its schema pages show the schemas only."
        )
    # Newest server first, as the recordings are read.
    servers = dict.fromkeys(recording.server for recording in every)
    return (
        f"This site was built with {len(every)} recorded"
        f" answer{'' if len(every) == 1 else 's'}, from Jobmon servers"
        f" {' and '.join(f'`{server}`' for server in servers)}; a model without one says"
        " so on its page."
    )


# -- the hooks ----------------------------------------------------------------------------


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Add a nav entry per model under the ``Schemas`` section."""
    nav = config.nav or []
    for item in nav:
        if isinstance(item, dict) and SCHEMAS_SECTION in item:
            section = item[SCHEMAS_SECTION]
            section.extend(
                {model.__name__: f"{SCHEMAS_DIR}/{model.__name__}.md"} for model in RESPONSE_MODELS
            )
            return config
    log.warning(
        "mkdocs.yml has no %r section in its nav; schema pages are unlisted", SCHEMAS_SECTION
    )
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Generate one page and one JSON file per response model."""
    recordings = _recordings(config)
    for model in RESPONSE_MODELS:
        name = model.__name__
        files.append(
            File.generated(
                config,
                f"{SCHEMAS_DIR}/{name}.md",
                content=_model_page(model, recordings.get(name, [])),
            )
        )
        files.append(
            File.generated(config, f"{SCHEMAS_DIR}/{name}.json", content=schema_text(model))
        )
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill the schema index's table of routes and its note on the recorded answers."""
    if TABLE_MARKER in markdown:
        markdown = markdown.replace(TABLE_MARKER, _schemas_table())
    if RECORDINGS_MARKER in markdown:
        markdown = markdown.replace(RECORDINGS_MARKER, _recordings_note(_recordings(config)))
    return markdown
