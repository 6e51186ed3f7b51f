"""The ids and file format every tokenizer of this package shares (no tokenizer code here).

``PAD_ID = 0`` (padding), ``BOS_ID = 1`` (first decoder input, never stored in data),
``EOS_ID = 2`` (ends every source and target), as :mod:`genjax_models.models.transformer` uses
them. Tokenizer files are JSON with ``"kind"`` and ``"version" = FORMAT_VERSION``.
"""

from __future__ import annotations

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
FORMAT_VERSION = 1


class UnknownTokenizerError(ValueError):
    """A tokenizer file whose ``kind`` or ``version`` this package cannot read."""
