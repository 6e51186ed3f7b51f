"""Unlabeled text corpora: the documents of one or several TFDS text features, in memory.

A corpus is named by a spec: comma-separated ``NAME[@FEATURE]`` items, e.g. ``"python_docs"``
(feature ``text``), ``"lm1b"`` (any TFDS text dataset already prepared in the data_dir), or
``"python_docs,number_words/en_fr@source"`` (the Python help topics, then the English side of the
number pairs as separate documents: their pairing is not used). TensorFlow is only imported by
:func:`load_texts`.
"""

from __future__ import annotations

import dataclasses
import os

from genjax_models.data.tfds_access import DatasetNotFoundError, prepared_builder

DEFAULT_TEXT_FEATURE = "text"
_READ_BATCH = 8192


@dataclasses.dataclass(frozen=True)
class TextSource:
    """One item of a corpus spec: TFDS ``name`` (``name/config:version`` ok) and its feature."""

    name: str
    feature: str = DEFAULT_TEXT_FEATURE


def parse_corpus_spec(spec: str) -> tuple[TextSource, ...]:
    """``"a,b@feature"`` -> ``(TextSource("a", "text"), TextSource("b", "feature"))``.

    Raises ValueError (one line, with an example) for an empty spec or item.
    """
    items = [item.strip() for item in spec.split(",")] if isinstance(spec, str) else [""]
    sources = []
    for item in items:
        name, _, feature = item.partition("@")
        if not name.strip() or (item.count("@") and not feature.strip()) or item.count("@") > 1:
            raise ValueError(
                f"bad text dataset {spec!r}: expected NAME[@FEATURE] items separated by commas, "
                "e.g. python_docs,number_words/en_fr@source"
            )
        sources.append(TextSource(name.strip(), feature.strip() or DEFAULT_TEXT_FEATURE))
    return tuple(sources)


def load_texts(
    spec: str, split: str, *, data_dir: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """Every document of ``split`` of each source in ``spec`` (see the module doc), in order.

    Packaged datasets (``python_docs``, ``number_words/...``) are generated into ``data_dir`` on
    first use, offline; any other must already be prepared there (nothing is downloaded).

    Args:
      spec: corpus spec, e.g. ``"python_docs"`` or ``"python_docs,number_words/en_fr@source"``.
      split: a TFDS split string every source has, e.g. ``"train"``, ``"validation[:50%]"``.
      data_dir: TFDS data directory; ``None`` means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

    Raises:
      DatasetNotFoundError: a dataset is unknown or not prepared, or has no such split.
      ValueError: a bad spec, or a feature that is not a ``Text`` feature of its dataset.
    """
    texts: list[str] = []
    for source in parse_corpus_spec(spec):
        builder = prepared_builder(source.name, data_dir)
        import tensorflow_datasets as tfds  # imported (quietly) by prepared_builder

        features = builder.info.features
        feature = features[source.feature] if source.feature in features else None
        if not isinstance(feature, tfds.features.Text):
            names = [k for k in features if isinstance(features[k], tfds.features.Text)]
            raise ValueError(
                f"dataset {source.name!r} has no Text feature {source.feature!r}: name one with "
                f"{source.name}@FEATURE (its Text features: {', '.join(names) or 'none'})"
            )
        for part in split.split("+"):  # TFDS split strings: "train[:10%]+validation", "all"
            base_split = part.split("[")[0].strip()
            if base_split != "all" and base_split not in builder.info.splits:
                raise DatasetNotFoundError(
                    f"dataset {source.name!r} has no split {base_split!r} "
                    f"(splits: {', '.join(builder.info.splits)})"
                )
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        dataset = dataset.map(lambda ex, key=source.feature: ex[key]).batch(_READ_BATCH)
        for batch in tfds.as_numpy(dataset):
            texts.extend(text.decode("utf-8") for text in batch)
    return tuple(texts)
