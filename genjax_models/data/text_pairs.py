"""Offline translation data: the parallel texts of a TFDS split, in memory, and their token ids.

TensorFlow is only imported by :func:`load_text_pairs`.
"""

from __future__ import annotations

import dataclasses
import os

from genjax_models.data.tfds_access import DatasetNotFoundError, prepared_builder
from genjax_models.data.tokenizer import Tokenizer

_READ_BATCH = 8192


@dataclasses.dataclass(frozen=True)
class TextPairs:
    """Parallel texts of one split: ``sources[i]`` translates to ``targets[i]`` (stored order)."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    name: str
    split: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "targets", tuple(self.targets))
        if len(self.sources) != len(self.targets):
            raise ValueError(
                f"{len(self.sources)} sources but {len(self.targets)} targets: pairs must align"
            )

    def __len__(self) -> int:
        return len(self.sources)


def load_text_pairs(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source_key: str = "source",
    target_key: str = "target",
) -> TextPairs:
    """Loads a whole TFDS translation split as Python strings, in stored order.

    ``number_words`` configs (``"number_words/en_fr"``, ``"number_words/digits_en"``, ...;
    plain ``"number_words"`` is ``en_fr``) are generated into ``data_dir`` on first use,
    offline. Any other dataset with two ``Text`` features must already be prepared there
    (nothing is downloaded); name its features with ``source_key``/``target_key``, e.g.
    ``load_text_pairs("wmt14_translate/de-en", "train", source_key="de", target_key="en")``
    (TFDS translation datasets key texts by language code).

    Args:
      name: TFDS name, optionally ``name/config:version``.
      split: any TFDS split string, e.g. ``"train"``, ``"validation[:1000]"``.
      data_dir: TFDS data directory; ``None`` means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      source_key, target_key: the ``Text`` features to read as sources and targets.

    Raises:
      DatasetNotFoundError: unknown dataset or config, or not prepared in ``data_dir``.
      ValueError: ``source_key``/``target_key`` is not a ``Text`` feature of the dataset.
    """
    base, _, config = name.split(":")[0].partition("/")
    if base.lower() == "number_words" and config:
        from genjax_models.data.builders.number_words import CONFIG_NAMES

        if config not in CONFIG_NAMES:
            raise DatasetNotFoundError(
                f"unknown number_words config {config!r}: use one of "
                + ", ".join(f"number_words/{c}" for c in CONFIG_NAMES)
            )
    builder = prepared_builder(name, data_dir)
    import tensorflow_datasets as tfds  # imported (quietly) by prepared_builder

    features = builder.info.features
    for key in (source_key, target_key):
        if key not in features or not isinstance(features[key], tfds.features.Text):
            raise ValueError(
                f"dataset {name!r} has no Text feature {key!r} (features: {list(features)}): "
                f"pass source_key=/target_key= naming two of them"
            )
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    dataset = dataset.map(lambda ex: (ex[source_key], ex[target_key])).batch(_READ_BATCH)
    sources: list[str] = []
    targets: list[str] = []
    for source_bytes, target_bytes in tfds.as_numpy(dataset):
        sources.extend(text.decode("utf-8") for text in source_bytes)
        targets.extend(text.decode("utf-8") for text in target_bytes)
    return TextPairs(sources=tuple(sources), targets=tuple(targets), name=name, split=split)


def encode_pairs(pairs: TextPairs, tokenizer: Tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """``(sources_ids, targets_ids)``: every text encoded with a final ``EOS_ID``."""
    return (
        [tokenizer.encode(text, add_eos=True) for text in pairs.sources],
        [tokenizer.encode(text, add_eos=True) for text in pairs.targets],
    )
