"""Griffe extension for the API reference: the package's docstrings, written with Sphinx roles
and a few reStructuredText constructs, rendered as the Markdown that mkdocstrings reads.

- ``:func:`name``` (also ``:class:``, ``:mod:``, ``:meth:``, ``:data:``, ``:attr:``, ``:exc:``,
  ``:obj:``) becomes a cross-reference to the object that ``name`` means where the docstring is
  (its module's imports and members, as Python would resolve it), so a reference to a name that
  does not exist fails ``mkdocs build --strict``. ``~a.b.c`` shows ``c``. Names outside
  ``genjax_models`` (``jax.jit``) become plain code, since the site is built offline, with no
  inventories of other projects, and so do private names (``_x``), which the reference leaves out.
- A paragraph ending in ``::`` ends in ``:`` (the indented block after it is already code).
- ``a, b: what`` in an ``Args:`` section is one entry per name (Google style has one name an
  entry), each with the same description.
- A class's ``Attributes:`` entries document its attributes, each of which the reference lists
  with its type and default (no table repeating them); the undocumented fields of a standard
  dataclass are left out (the class's signature shows them).
- Special methods other than ``__call__``, and Flax's undocumented ``setup``, are left out.
- A simple table (rows between ``=====  =====`` rules) becomes a Markdown table.

The package's sources are not changed; this runs while mkdocstrings loads them.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|data|attr|exc|obj|const):`(~?)([^`<>]+?)`")
_RULE = re.compile(r"^(\s*)(=+)((?:\s+=+)+)\s*$")
_PACKAGE = "genjax_models"


def _target(obj: griffe.Object, name: str) -> str | None:
    """The full path that ``name`` means in ``obj``'s scope, or None outside the package."""
    if name.startswith(_PACKAGE + ".") or name == _PACKAGE:
        return name
    head, _, rest = name.partition(".")
    try:
        resolved = obj.resolve(head)
    except Exception:  # a name Python would not find here: leave it for autorefs to report
        return f"{obj.path}.{name}" if obj.is_module else f"{obj.parent.path}.{name}"  # type: ignore[union-attr]
    full = f"{resolved}.{rest}" if rest else resolved
    if not (full == _PACKAGE or full.startswith(_PACKAGE + ".")):
        return None
    if any(part.startswith("_") and not part.startswith("__") for part in full.split(".")):
        return None  # a private name: not in the reference (the filters leave out ``_*``)
    return full


def _roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        _, short, name = match.groups()
        name = name.strip()
        shown = name.rsplit(".", 1)[-1] if short else name
        target = _target(obj, name)
        if target is None:
            return f"`{shown}`"
        return f"[`{shown}`][{target}]"

    return _ROLE.sub(replace, text)


def _literal_markers(text: str) -> str:
    """``text::`` -> ``text:`` and a lone ``::`` line -> nothing (reST literal-block markers)."""
    lines = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped.strip() == "::":
            lines.append("")
        elif stripped.endswith("::"):
            lines.append(stripped[:-1])
        else:
            lines.append(line)
    return "\n".join(lines)


_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Attributes):\s*$")
_GROUPED = re.compile(r"^(\s+)(\w+(?:\s*,\s*\w+)+)(\s*(?:\([^)]*\))?:.*)$")


def _grouped_params(text: str) -> str:
    """``a, b: what`` in an ``Args:`` section -> one entry per name, each with the description."""
    lines = text.split("\n")
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _SECTION.match(line)
        indent = len(line) - len(line.lstrip())
        if header:
            section_indent = len(header.group(1))
        elif line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        block = [grouped.group(3)]
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            block.append(lines[i])
            i += 1
        while len(block) > 1 and not block[-1].strip():  # blank lines stay between entries
            block.pop()
            i -= 1
        for name in re.split(r"\s*,\s*", grouped.group(2)):
            out.append(grouped.group(1) + name + block[0])
            out.extend(block[1:])
    return "\n".join(out)


def _split_row(line: str, starts: list[int]) -> list[str]:
    cells = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(line)
        cells.append(line[start:end].strip().replace("|", "\\|"))
    return cells


def _tables(text: str) -> str:
    """reST simple tables (a rule, a header row, a rule, rows, a rule) -> Markdown tables."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        rule = _RULE.match(lines[i])
        closing = None
        if rule and i + 2 < len(lines) and _RULE.match(lines[i + 2]):
            closing = next((j for j in range(i + 3, len(lines)) if _RULE.match(lines[j])), None)
        if rule is None or closing is None:
            out.append(lines[i])
            i += 1
            continue
        indent = rule.group(1)
        starts = [m.start() for m in re.finditer(r"=+", lines[i])]
        header = _split_row(lines[i + 1], starts)
        rows = [_split_row(line, starts) for line in lines[i + 3 : closing] if line.strip()]
        out.append(indent + "| " + " | ".join(header) + " |")
        out.append(indent + "|" + " --- |" * len(header))
        out.extend(indent + "| " + " | ".join(row) + " |" for row in rows)
        i = closing + 1
    return "\n".join(out)


_ENTRY = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s?(.*)$")


def _attributes_to_members(cls: griffe.Object) -> None:
    """A class's ``Attributes:`` entries become the docstrings of the attributes they describe.

    mkdocstrings lists a class's attributes as entries of their own (with their types and
    defaults), and an ``Attributes:`` table besides would say everything twice. An entry whose
    attribute has a docstring of its own, or is no member of the class, stays in the table.
    """
    if cls.docstring is None:
        return
    lines = cls.docstring.value.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = re.match(r"^(\s*)Attributes:\s*$", lines[i])
        if header is None:
            out.append(lines[i])
            i += 1
            continue
        section_indent = len(header.group(1))
        kept = [lines[i]]
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > section_indent
        ):
            line = lines[i]
            indent = len(line) - len(line.lstrip())
            entry = _ENTRY.match(line.strip())
            i += 1
            if not line.strip() or entry is None:
                kept.append(line)
                continue
            body = [entry.group(2)]
            while (
                i < len(lines)
                and lines[i].strip()
                and len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                body.append(lines[i].strip())
                i += 1
            member = cls.members.get(entry.group(1))
            if member is None or member.is_alias or not member.is_attribute or member.docstring:
                kept.append(line)
                kept.extend(" " * (indent + 2) + b for b in body[1:])
                continue
            member.docstring = griffe.Docstring(
                " ".join(body), lineno=cls.docstring.lineno, parent=member
            )
        if any(k.strip() for k in kept[1:]):
            out.extend(kept)
    cls.docstring.value = "\n".join(out).rstrip()


def _hide_undocumented_fields(cls: griffe.Object) -> None:
    """The undocumented fields of a standard dataclass are left out of the reference: the class's
    signature (its generated ``__init__``, merged into the class) already shows each with its type
    and default. The fields of other classes (Flax modules, ``flax.struct`` dataclasses) stay."""
    if not any(d.callable_path == "dataclasses.dataclass" for d in cls.decorators):  # type: ignore[union-attr]
        return
    for member in cls.members.values():
        if member.is_alias or not member.is_attribute or member.docstring:
            continue
        if member.annotation is not None and "ClassVar" not in str(member.annotation):  # type: ignore[union-attr]
            member.public = False


def _hide_hooks(cls: griffe.Object) -> None:
    """Special methods other than ``__call__`` (a Flax module's forward pass) and Flax's
    undocumented ``setup`` hooks are not part of the reference (``filters: public`` keeps them)."""
    for name, member in cls.members.items():
        if member.is_alias:
            continue
        dunder = name.startswith("__") and name.endswith("__") and name != "__call__"
        if dunder or (name == "setup" and not member.docstring):
            member.public = False


def _convert(obj: griffe.Object, text: str) -> str:
    return _roles(obj, _grouped_params(_tables(_literal_markers(text))))


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the loaded package once the object tree is complete."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != _PACKAGE:
            return
        seen: set[str] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.path in seen:
                continue
            seen.add(obj.path)
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value)
            if obj.is_class:
                _attributes_to_members(obj)
                _hide_undocumented_fields(obj)
                _hide_hooks(obj)
            stack.extend(m for m in obj.members.values() if not m.is_alias)  # type: ignore[misc]
