"""Training: states, pure steps, checkpoints, the loop and ready-made runs."""

from genjax_models.train.checkpoint import Checkpointer, CheckpointError
from genjax_models.train.class_conditional_run import (
    ClassConditionalRun,
    load_class_conditional,
    train_class_conditional,
)
from genjax_models.train.classifier_run import load_classifier, train_classifier
from genjax_models.train.evaluation import evaluate_gan
from genjax_models.train.gan_run import (
    generate_images,
    load_gan,
    sample_gan,
    sample_gan_grid,
    train_gan,
)
from genjax_models.train.init_from import RestoreReport, init_params_from
from genjax_models.train.lm_run import LMRun, generate_text, load_lm, train_lm
from genjax_models.train.loop import TrainingInterrupted, run_loop
from genjax_models.train.pretrain_run import train_span_corruption
from genjax_models.train.seq2seq_run import (
    Seq2SeqRun,
    evaluate_seq2seq,
    load_seq2seq,
    train_seq2seq,
)
from genjax_models.train.sequence_steps import (
    make_lm_eval_step,
    make_lm_step,
    make_seq2seq_eval_step,
    make_seq2seq_step,
)
from genjax_models.train.state import (
    GANState,
    TrainState,
    init_gan_state,
    init_train_state,
    step_rng,
)
from genjax_models.train.steps import (
    jit_step,
    make_classifier_eval_step,
    make_classifier_step,
    make_gan_step,
)
from genjax_models.train.translation import translate_texts
from genjax_models.train.workdir import WorkdirError

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ClassConditionalRun",
    "GANState",
    "LMRun",
    "RestoreReport",
    "Seq2SeqRun",
    "TrainState",
    "TrainingInterrupted",
    "WorkdirError",
    "evaluate_gan",
    "evaluate_seq2seq",
    "generate_images",
    "generate_text",
    "init_gan_state",
    "init_params_from",
    "init_train_state",
    "jit_step",
    "load_class_conditional",
    "load_classifier",
    "load_gan",
    "load_lm",
    "load_seq2seq",
    "make_classifier_eval_step",
    "make_classifier_step",
    "make_gan_step",
    "make_lm_eval_step",
    "make_lm_step",
    "make_seq2seq_eval_step",
    "make_seq2seq_step",
    "run_loop",
    "sample_gan",
    "sample_gan_grid",
    "step_rng",
    "train_class_conditional",
    "train_classifier",
    "train_gan",
    "train_lm",
    "train_seq2seq",
    "train_span_corruption",
    "translate_texts",
]
