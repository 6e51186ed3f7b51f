"""``number_words``: translation pairs of cardinal numbers written out by ``num2words``, as TFDS.

Everything is generated locally with the ``num2words`` package, so preparing this dataset needs
no network. Importing this module registers the builder under the TFDS name ``number_words``;
:func:`genjax_models.data.load_text_pairs` does that lazily and prepares the requested config
(``number_words/en_fr``, ``number_words/digits_en``, ...) into ``data_dir`` on first use.

Examples are stored in split order (``disable_shuffling``), with integer keys giving the
position inside the split, so the on-disk order is exactly :func:`split_numbers`' order.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

NUMBER_RANGE = 1_000_000
"""Numbers are drawn from ``0 .. NUMBER_RANGE - 1`` (0 to 999,999)."""

SPLIT_SIZES: dict[str, int] = {"test": 5_000, "validation": 5_000, "train": 80_000}
"""Examples per split; the seeded permutation is cut in this order (test first)."""

SPLIT_SEED = 0
LANGUAGES: dict[str, str | None] = {"digits": None, "en": "en", "fr": "fr", "de": "de"}
"""Side name -> ``num2words`` ``lang`` code (``None``: the decimal digits themselves)."""

PAIRS: tuple[tuple[str, str], ...] = (
    ("en", "fr"),  # the default config
    ("digits", "en"),
    ("digits", "fr"),
    ("digits", "de"),
    ("en", "de"),
    ("de", "en"),
    ("fr", "en"),
    ("en", "digits"),
)
CONFIG_NAMES: tuple[str, ...] = tuple(f"{src}_{tgt}" for src, tgt in PAIRS)

_DESCRIPTION = f"""\
Cardinal numbers written out in words by the `num2words` package (generated with version
0.5.14), as translation pairs: `source` text -> `target` text, plus the `number` itself.

Numbers: {len(SPLIT_SIZES)} disjoint splits of one permutation of 0..{NUMBER_RANGE - 1:,}
(`numpy.random.default_rng({SPLIT_SEED}).permutation({NUMBER_RANGE})`): its first
{SPLIT_SIZES["test"]:,} numbers are `test`, the next {SPLIT_SIZES["validation"]:,} `validation`,
the next {SPLIT_SIZES["train"]:,} `train` (the other numbers are unused). No number is in two
splits, and every config uses the same numbers in the same order. Sampling is uniform, so about
90% of the numbers have six digits and only about 1% are below 10,000.

Texts, per side (config `SRC_TGT`, e.g. `en_fr`: English words -> French words):
* `digits`: the plain decimal digits, no separators or sign ("412", "0", "999999").
* `en`: `num2words(n, lang="en")`, British style: lower case, hyphens inside 21..99, "and"
  before a last group below 100, a comma after "thousand" when hundreds follow
  ("one thousand, two hundred and thirty-four", "seventy-one thousand and seventy-one").
* `fr`: `num2words(n, lang="fr")`, traditional (pre-1990) spelling: hyphens only below 100,
  "et" in 21, 31, ..., 71, plural "quatre-vingts"/"deux cents" only when final, invariable
  "mille" ("quatre cent douze", "soixante et onze", "quatre-vingt mille", "zéro").
* `de`: `num2words(n, lang="de")`, lower case, one compound word without spaces
  ("eintausendzweihundertvierunddreißig", "eins", "null").
Configs: {", ".join(CONFIG_NAMES)}. Generated offline; deterministic.
"""


def split_numbers() -> dict[str, np.ndarray]:
    """The fixed, disjoint numbers of each split.

    Returns:
      ``{'train': int64[80000], 'validation': int64[5000], 'test': int64[5000]}``: consecutive
      slices (test, validation, train) of ``default_rng(0).permutation(NUMBER_RANGE)``.
    """
    perm = np.random.default_rng(SPLIT_SEED).permutation(NUMBER_RANGE).astype(np.int64)
    out, start = {}, 0
    for split, size in SPLIT_SIZES.items():
        out[split] = perm[start : start + size]
        start += size
    return {split: out[split] for split in ("train", "validation", "test")}


class UnknownLanguageError(ValueError):
    """A side name that is not in :data:`LANGUAGES`."""


def number_texts(numbers: Sequence[int] | np.ndarray, language: str) -> list[str]:
    """Writes each number on one side of a pair, exactly as ``num2words(n, lang=...)`` does.

    Uses a copy of the ``num2words`` converter made about 30x faster without changing its
    output (see :func:`_fast_converter`; the tests compare it with ``num2words`` itself).

    Args:
      numbers: integers in ``0 .. NUMBER_RANGE - 1``.
      language: a key of :data:`LANGUAGES` (``"digits"``, ``"en"``, ``"fr"``, ``"de"``).

    Returns:
      one string per number.
    """
    if language not in LANGUAGES:
        raise UnknownLanguageError(
            f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}"
        )
    values = [int(n) for n in numbers]
    bad = [n for n in values if not 0 <= n < NUMBER_RANGE]
    if bad:
        raise ValueError(f"number {bad[0]} is outside 0..{NUMBER_RANGE - 1}")
    lang = LANGUAGES[language]
    if lang is None:
        return [str(n) for n in values]
    converter = _fast_converter(lang)
    return [converter.to_cardinal(n) for n in values]


def _fast_converter(lang: str) -> Any:
    """A copy of ``num2words``' converter for ``lang`` that gives the same strings, faster.

    ``to_cardinal(n)`` builds a tree of number names with ``splitnum`` (trying every name in
    ``cards``, biggest first) and reduces it with ``clean``, a pure function of each subtree.
    The copy drops names above ``NUMBER_RANGE`` (``splitnum`` skips them for smaller values)
    and memoises the reduced subtree of each value below 1,000 (``clean`` unwraps a
    one-element list exactly as it would have reduced the full subtree).
    """
    from num2words import CONVERTER_CLASSES

    converter = copy.copy(CONVERTER_CLASSES[lang])  # never mutate num2words' shared instance
    converter.cards = collections.OrderedDict(
        (value, name) for value, name in converter.cards.items() if value <= NUMBER_RANGE
    )
    full_splitnum = converter.splitnum  # bound to the copy: its recursion uses the cache below
    reduced: dict[int, Any] = {}

    def splitnum(value: int) -> list:
        if value >= 1000:
            return full_splitnum(value)
        if value not in reduced:
            reduced[value] = converter.clean(full_splitnum(value))
        return [reduced[value]]

    converter.splitnum = splitnum
    return converter


@dataclasses.dataclass(eq=False)
class NumberWordsConfig(tfds.core.BuilderConfig):
    """A language pair: ``source`` and ``target`` are keys of :data:`LANGUAGES`."""

    source: str = "en"
    target: str = "fr"


def _config(source: str, target: str) -> NumberWordsConfig:
    def side(name: str) -> str:
        return "digits" if name == "digits" else f"{name} words (num2words lang={name!r})"

    return NumberWordsConfig(
        name=f"{source}_{target}",
        description=f"{side(source)} -> {side(target)}",
        source=source,
        target=target,
    )


class NumberWords(tfds.core.GeneratorBasedBuilder):
    """Number translation pairs; splits ``train`` (80,000), ``validation`` and ``test`` (5,000)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 0..999,999, seeded disjoint splits, num2words."}
    BUILDER_CONFIGS = [_config(source, target) for source, target in PAIRS]
    # See digits.py: tfds 4.9.10's default `code_path` needs an undeclared backport.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "source": tfds.features.Text(),
                    "target": tfds.features.Text(),
                    "number": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("source", "target"),
            homepage="https://github.com/savoirfairelinux/num2words",
            # Write examples sorted by their integer key == split_numbers() order (see digits.py).
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # everything is generated locally
        return {
            split: self._generate_examples(numbers) for split, numbers in split_numbers().items()
        }

    def _generate_examples(self, numbers: np.ndarray) -> Iterator[tuple[int, dict]]:
        """Yields ``(position_in_split, {'source': str, 'target': str, 'number': int})``."""
        config = self.builder_config
        assert config is not None  # BUILDER_CONFIGS is not empty: TFDS always picks one
        sources = number_texts(numbers, config.source)
        targets = number_texts(numbers, config.target)
        for position, (number, source, target) in enumerate(
            zip(numbers.tolist(), sources, targets, strict=True)
        ):
            yield position, {"source": source, "target": target, "number": number}
