"""Griffe extension: render the reST habits of our docstrings as Markdown.

The package's docstrings are Google style with two reST habits that
Markdown does not know:

* roles such as ``:class:`~jobmon_gateway.routes.Call``` or ``:meth:`send```
  become cross-references (optional ones: a target that is not documented on
  the site, like ``ssl.SSLContext``, renders as plain code instead of a
  broken link);
* a paragraph ending in ``::`` followed by an indented block becomes a
  fenced code block (Python when the block parses as Python, else text).

It also gives a pydantic field the ``description`` it has at run time when
griffe-pydantic could not read it from the source (a description built by
concatenation, for instance), so that no documented field is left blank.
"""

from __future__ import annotations

import ast
import html
import importlib
import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?P<role>class|meth|func|attr|data|mod|exc|obj):`(?P<tilde>~?)(?P<target>[\w.]+)`"
)
_SECTION_TITLE = re.compile(r"^\s*Examples?:\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


class RstToMarkdown(griffe.Extension):
    """Rewrite reST roles and ``::`` literal blocks in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring once the whole package is loaded."""
        _rewrite(obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the package's own docstring and fill blank field descriptions.

        Runs after griffe-pydantic's own ``on_package`` when listed after it.
        """
        _rewrite(pkg)
        for cls in _classes(pkg):
            if "pydantic-model" in cls.labels:
                _fill_field_descriptions(cls)


def _classes(obj: griffe.Object) -> Any:
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Class):
            yield member
        if isinstance(member, griffe.Module | griffe.Class):
            yield from _classes(member)


def _fill_field_descriptions(cls: griffe.Class) -> None:
    runtime: Any = importlib.import_module(cls.module.path)
    for part in cls.path.removeprefix(cls.module.path + ".").split("."):
        runtime = getattr(runtime, part)
    for name, attribute in cls.attributes.items():
        if "pydantic-field" not in attribute.labels or attribute.docstring is not None:
            continue
        field = runtime.model_fields.get(name)
        if field is not None and field.description:
            attribute.docstring = griffe.Docstring(field.description, parent=attribute)


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is None:
        return
    text = _literal_blocks(obj.docstring.value)
    obj.docstring.value = _outside_fences(text, lambda part: _roles(obj, part))


def _literal_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.rstrip().endswith("::"):
            out.append(line)
            index += 1
            continue
        indent = len(line) - len(line.lstrip())
        block_start = index + 1
        while block_start < len(lines) and not lines[block_start].strip():
            block_start += 1
        block_end = block_start
        while block_end < len(lines) and (
            not lines[block_end].strip()
            or len(lines[block_end]) - len(lines[block_end].lstrip()) > indent
        ):
            block_end += 1
        block = "\n".join(lines[block_start:block_end]).rstrip()
        if not block:
            out.append(line)
            index += 1
            continue
        code = textwrap.dedent(block)
        lead = line.rstrip()[:-2].rstrip()
        heading = lead + ":" if lead.strip() else ""
        if heading and _SECTION_TITLE.match(heading):
            # A Google "Examples:" section: its content follows at once, indented.
            fence_indent = " " * (indent + 4)
            out.append(" " * indent + "Examples:")
        else:
            fence_indent = " " * indent
            if heading:
                out += [heading, ""]
        out.append(f"{fence_indent}```{_language(code)}")
        out += [fence_indent + code_line if code_line else "" for code_line in code.splitlines()]
        out += [f"{fence_indent}```", ""]
        index = block_end
    return "\n".join(out).rstrip() + "\n"


def _language(code: str) -> str:
    try:
        ast.parse(code)
    except SyntaxError:
        return "text"
    return "python"


def _outside_fences(text: str, rewrite: Any) -> str:
    parts: list[str] = []
    chunk: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            parts.append("\n".join(chunk) if fenced else rewrite("\n".join(chunk)))
            parts.append(line)
            chunk = []
            fenced = not fenced
            continue
        chunk.append(line)
    parts.append("\n".join(chunk) if fenced else rewrite("\n".join(chunk)))
    return "\n".join(part for part in parts)


def _roles(obj: griffe.Object, text: str) -> str:
    def crossref(match: re.Match[str]) -> str:
        target = match["target"]
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in ("meth", "func"):
            title += "()"
        identifier = _resolve(obj, target)
        return (
            f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    return _ROLE.sub(crossref, text)


def _resolve(obj: griffe.Object, target: str) -> str:
    first, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(first)
    except (griffe.NameResolutionError, AttributeError, KeyError):
        return target
    return f"{resolved}.{rest}" if rest else resolved
