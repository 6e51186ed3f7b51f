"""Offline data layer: TFDS image and text splits in memory and exactly resumable batches.

Importing this package does not import TensorFlow or ``tensorflow_datasets``; they are
imported on the first :func:`load_image_dataset` / :func:`load_feature_dataset` /
:func:`load_text_pairs` / :func:`load_texts` call (install ``genjax-models[data]``).
"""

from genjax_models.data.features import (
    FeatureArrays,
    labelled_fraction,
    load_feature_dataset,
    load_labelled_dataset,
)
from genjax_models.data.lm_batches import PackedLMBatcher
from genjax_models.data.pipeline import (
    EpochBatcher,
    ImageArrays,
    load_image_dataset,
    pad_or_resize,
    validate_image_size,
)
from genjax_models.data.text import DEFAULT_BUCKETS, PackedSeq2SeqBatcher, Seq2SeqBatcher
from genjax_models.data.text_corpus import TextSource, load_texts, parse_corpus_spec
from genjax_models.data.text_pairs import TextPairs, encode_pairs, load_text_pairs
from genjax_models.data.tfds_access import (
    KNOWN_OFFLINE_DATASETS,
    DatasetNotFoundError,
    default_data_dir,
    prepared_builder,
)
from genjax_models.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ByteTokenizer,
    SequenceTooLongError,
    Tokenizer,
    UnknownTokenizerError,
    decode_batch,
    encode_batch,
    load_tokenizer,
)

__all__ = [
    "BOS_ID",
    "DEFAULT_BUCKETS",
    "EOS_ID",
    "KNOWN_OFFLINE_DATASETS",
    "PAD_ID",
    "ByteTokenizer",
    "DatasetNotFoundError",
    "EpochBatcher",
    "FeatureArrays",
    "ImageArrays",
    "PackedLMBatcher",
    "PackedSeq2SeqBatcher",
    "Seq2SeqBatcher",
    "SequenceTooLongError",
    "TextPairs",
    "TextSource",
    "Tokenizer",
    "UnknownTokenizerError",
    "decode_batch",
    "default_data_dir",
    "encode_batch",
    "encode_pairs",
    "labelled_fraction",
    "load_feature_dataset",
    "load_image_dataset",
    "load_labelled_dataset",
    "load_text_pairs",
    "load_texts",
    "load_tokenizer",
    "pad_or_resize",
    "parse_corpus_spec",
    "prepared_builder",
    "validate_image_size",
]
