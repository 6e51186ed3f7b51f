"""The training engine: states, pure steps, the optimizers, the non-finite guard, the loop and
checkpoints. It imports no data pipeline, no ready-made run and no command line: bring your own
modules and batches, wrap a step with a plan of :mod:`genjax_models.parallel`, and drive it with
:func:`run_loop` (or your own loop).

Every step is ``step(state, batch, rng, *, axis_name=None) -> (new_state, metrics)``.
"""

from genjax_models.train.checkpoint import Checkpointer, CheckpointError
from genjax_models.train.gan_steps import make_gan_step
from genjax_models.train.loop import TrainingInterrupted, run_loop
from genjax_models.train.nonfinite import NonFiniteError
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
)

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "GANState",
    "NonFiniteError",
    "TrainState",
    "TrainingInterrupted",
    "init_gan_state",
    "init_train_state",
    "jit_step",
    "make_classifier_eval_step",
    "make_classifier_step",
    "make_gan_step",
    "make_lm_eval_step",
    "make_lm_step",
    "make_seq2seq_eval_step",
    "make_seq2seq_step",
    "run_loop",
    "step_rng",
]
