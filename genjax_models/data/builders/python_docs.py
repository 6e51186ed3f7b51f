"""``python_docs``: unlabeled English prose from Python's own documentation, as a TFDS builder.

Every CPython ships the text of its language reference topics in ``pydoc_data.topics`` (what
``help("for")`` prints): about 0.47 MB of prose and code in 79 topics for Python 3.11. Each topic
is one document. Generating this dataset needs no network. Importing this module registers the
builder under the TFDS name ``python_docs``; :func:`genjax_models.data.load_texts` prepares it
into ``data_dir`` on first use.

Examples are stored in split order (``disable_shuffling``), with integer keys giving the
position inside the split, so the on-disk order is exactly :func:`split_topics`' order.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterator

import tensorflow_datasets as tfds
from etils import epath

VALIDATION_FRACTION = 0.08
"""Validation gets whole topic groups until it holds at least this fraction of the characters."""
SHARED_PARAGRAPH_CHARS = 40
"""Topics sharing a paragraph of at least this many characters are kept in one split."""

_DESCRIPTION = f"""\
The language reference topics of Python's built-in help (`pydoc_data.topics`, generated here
from Python {platform.python_version()}): one document per topic (`title`: the topic name, e.g.
"for"; `text`: its plain text, e.g. 'The "for" statement ...'). No labels.

Split (deterministic, no network): several topics repeat whole paragraphs of others (e.g.
"compound" contains the text of "for" and "while"), so topics are first grouped, transitively,
by shared paragraphs of at least {SHARED_PARAGRAPH_CHARS} characters; no paragraph is in both
splits. Groups are ordered by the SHA-256 of their sorted topic names, and the first groups in
that order, skipping any larger than a tenth of the corpus, go to `validation` until it holds at
least {VALIDATION_FRACTION:.0%} of the characters; the other groups are `train`. Documents keep
the sorted order of their titles within a split. The text differs between Python versions.
"""


def _paragraphs(text: str) -> set[str]:
    return {p.strip() for p in text.split("\n\n") if len(p.strip()) >= SHARED_PARAGRAPH_CHARS}


def split_topics(topics: dict[str, str]) -> dict[str, list[str]]:
    """Topic titles of each split: ``{"train": [...], "validation": [...]}``, each sorted.

    Topics that share a paragraph (transitively) stay in one split; see the dataset description
    for the rule. A pure function of ``topics`` (title -> text).
    """
    titles = sorted(topics)
    parent = {title: title for title in titles}

    def root(title: str) -> str:
        while parent[title] != title:
            parent[title] = parent[parent[title]]
            title = parent[title]
        return title

    first_owner: dict[str, str] = {}
    for title in titles:
        for paragraph in _paragraphs(topics[title]):
            owner = first_owner.setdefault(paragraph, title)
            parent[root(title)] = root(owner)
    groups: dict[str, list[str]] = {}
    for title in titles:
        groups.setdefault(root(title), []).append(title)
    total = sum(len(text) for text in topics.values())
    ordered = sorted(
        groups.values(), key=lambda g: hashlib.sha256("\n".join(g).encode()).hexdigest()
    )
    validation: list[str] = []
    size = 0
    for group in ordered:
        if size >= VALIDATION_FRACTION * total:
            break
        chars = sum(len(topics[title]) for title in group)
        if chars <= total / 10:
            validation += group
            size += chars
    held_out = set(validation)
    return {
        "train": [title for title in titles if title not in held_out],
        "validation": sorted(validation),
    }


def python_doc_topics() -> dict[str, str]:
    """``pydoc_data.topics.topics``: topic title -> plain text (this Python's copy)."""
    from pydoc_data.topics import topics

    return dict(topics)


class PythonDocs(tfds.core.GeneratorBasedBuilder):
    """Python's help topics as unlabeled documents; splits ``train`` and ``validation``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: pydoc_data topics, paragraph-disjoint split."}
    # See digits.py: tfds 4.9.10's default `code_path` needs an undeclared backport.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {"title": tfds.features.Text(), "text": tfds.features.Text()}
            ),
            homepage="https://docs.python.org/3/reference/",
            disable_shuffling=True,  # stored in split_topics() order (see digits.py)
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # everything ships with Python
        topics = python_doc_topics()
        return {
            split: self._generate_examples(topics, titles)
            for split, titles in split_topics(topics).items()
        }

    def _generate_examples(
        self, topics: dict[str, str], titles: list[str]
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """Yields ``(position_in_split, {"title": str, "text": str})``."""
        for position, title in enumerate(titles):
            yield position, {"title": title, "text": topics[title]}
