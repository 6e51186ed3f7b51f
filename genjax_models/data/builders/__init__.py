"""TFDS dataset builders shipped with ``genjax_models`` (generated offline, no network).

Builder modules import ``tensorflow_datasets`` at module level, so they are imported
lazily by :mod:`genjax_models.data.pipeline` only; this package itself imports nothing.
"""
