"""Ready-made runs, with their side effects (data loading, workdirs, checkpoints, logs, images):
one module per model family, each with its ``train_*`` / ``load_*`` and what the family does
with a trained run (sample, evaluate, translate, generate).

- :mod:`~genjax_models.runs.gan`: :func:`train_gan`, :func:`load_gan`, :func:`sample_gan`,
  :func:`sample_gan_grid`, :func:`generate_images`; :mod:`~genjax_models.runs.gan_evaluation`:
  :func:`evaluate_gan` (Frechet distance, KID, precision/recall, density/coverage,
  recognisable rate); :mod:`~genjax_models.runs.latents` (truncated latents)
- :mod:`~genjax_models.runs.classifier`: :func:`train_classifier`, :func:`load_classifier`;
  :mod:`~genjax_models.runs.class_conditional`: :func:`train_class_conditional`,
  :func:`load_class_conditional`
- :mod:`~genjax_models.runs.seq2seq`: :func:`train_seq2seq`, :func:`load_seq2seq`,
  :func:`evaluate_seq2seq`; :mod:`~genjax_models.runs.translation`: :func:`translate_texts`
- :mod:`~genjax_models.runs.span_corruption`: :func:`train_span_corruption` (T5-style pretraining)
- :mod:`~genjax_models.runs.lm`: :func:`train_lm`, :func:`load_lm`, :func:`generate_text`
- shared: :mod:`~genjax_models.runs.execution` (one run from set-up to its last checkpoint),
  :mod:`~genjax_models.runs.workdir`, :mod:`~genjax_models.runs.init_from`,
  :mod:`~genjax_models.runs.images`, :mod:`~genjax_models.runs.plots`
"""

from genjax_models.runs.class_conditional import (
    ClassConditionalRun,
    load_class_conditional,
    train_class_conditional,
)
from genjax_models.runs.classifier import load_classifier, train_classifier
from genjax_models.runs.gan import (
    generate_images,
    load_gan,
    sample_gan,
    sample_gan_grid,
    train_gan,
)
from genjax_models.runs.gan_evaluation import evaluate_gan
from genjax_models.runs.init_from import RestoreReport, init_params_from
from genjax_models.runs.lm import LMRun, generate_text, load_lm, train_lm
from genjax_models.runs.seq2seq import Seq2SeqRun, evaluate_seq2seq, load_seq2seq, train_seq2seq
from genjax_models.runs.span_corruption import train_span_corruption
from genjax_models.runs.translation import translate_texts
from genjax_models.runs.workdir import WorkdirError

__all__ = [
    "ClassConditionalRun",
    "LMRun",
    "RestoreReport",
    "Seq2SeqRun",
    "WorkdirError",
    "evaluate_gan",
    "evaluate_seq2seq",
    "generate_images",
    "generate_text",
    "init_params_from",
    "load_class_conditional",
    "load_classifier",
    "load_gan",
    "load_lm",
    "load_seq2seq",
    "sample_gan",
    "sample_gan_grid",
    "train_class_conditional",
    "train_classifier",
    "train_gan",
    "train_lm",
    "train_seq2seq",
    "train_span_corruption",
    "translate_texts",
]
