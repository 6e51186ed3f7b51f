"""mkdocs hooks of the site.

- Every module of the package has a page in the API reference. The API pages list their modules by hand (``::: genjax_models.train.steps``), in the order a
reader wants them; this warns (an error under ``mkdocs build --strict``) about a module that no
page names, so a new module cannot be left out of the reference. (A directive that names no
module already fails: mkdocstrings cannot collect it.)
- The pictures of ``experiments/`` are served from where they are, without copies (below).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.api_coverage")
_DIRECTIVE = re.compile(r"^:::\s+(genjax_models[\w.]*)\s*$", re.M)


def _modules(root: Path) -> set[str]:
    names = set()
    for path in (root / "genjax_models").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):  # __main__ and private modules
            continue
        names.add(".".join(parts))
    return names


def on_pre_build(config, **kwargs) -> None:
    root = Path(config.config_file_path).parent
    api = Path(config.docs_dir) / "api"
    named = {m for page in api.glob("*.md") for m in _DIRECTIVE.findall(page.read_text())}
    modules = _modules(root)
    for missing in sorted(modules - named):
        log.warning("API reference: no page of docs/api/ has '::: %s'", missing)


# The guides show the pictures of experiments/ where they are (no copies under docs/): a guide
# links them relative to itself, ``../../experiments/<run>/<picture>.png``, which GitHub shows;
# the site serves the same files at ``experiments/<run>/<picture>.png`` and the links are
# rewritten to point there.
_PICTURE = re.compile(r"\]\(((?:\.\./)+)experiments/([^)\s]+\.png)\)")


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    root = Path(config.config_file_path).parent
    for path in sorted((root / "experiments").rglob("*.png")):
        uri = path.relative_to(root).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    depth = page.file.src_uri.count("/")  # guides/gan.md: 1; index.md: 0

    def serve(match: re.Match) -> str:
        ups, picture = match.groups()
        if len(ups) // 3 != depth + 1:  # not a link from docs/ up to the repository's experiments/
            return match.group(0)
        return f"]({'../' * depth}experiments/{picture})"

    return _PICTURE.sub(serve, markdown)
