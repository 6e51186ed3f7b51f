"""Access to TFDS datasets without downloads: the packaged builders (generated into
``data_dir`` on first use), prepared copies of any other TFDS dataset, and one-line errors for
everything else.

TensorFlow and ``tensorflow_datasets`` are imported lazily inside the functions that need them,
so importing this module costs nothing beyond the standard library.
"""

from __future__ import annotations

import os
from typing import Any

KNOWN_OFFLINE_DATASETS: tuple[str, ...] = (
    "digits",
    "number_words",
    "elephants_mice",
    "python_docs",
)
"""TFDS builders shipped with this package; generated into ``data_dir`` on first use."""

_BUILDER_MODULES = {
    "digits": "genjax_models.data.builders.digits",
    "number_words": "genjax_models.data.builders.number_words",
    "elephants_mice": "genjax_models.data.builders.elephants_mice",
    "python_docs": "genjax_models.data.builders.python_docs",
}


class DatasetNotFoundError(ValueError):
    """A dataset is unknown to TFDS or not prepared in ``data_dir`` (never downloaded)."""


def default_data_dir() -> str:
    """``$TFDS_DATA_DIR`` if set (and non-empty), else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets"
    )


def dataset_base_name(name: str) -> str:
    """The TFDS name of ``name`` without ``/config`` and ``:version``, lower-cased
    (``"Digits:1.0.0"`` -> ``"digits"``)."""
    return name.split(":")[0].split("/")[0].lower()


def prepared_builder(name: str, data_dir: str | os.PathLike[str] | None = None) -> Any:
    """A ``tfds`` builder for ``name`` whose data is prepared in ``data_dir``; never downloads.

    Packaged datasets (:data:`KNOWN_OFFLINE_DATASETS`, any config such as
    ``number_words/en_fr``) are generated into ``data_dir`` on first use; any other dataset
    must already be prepared there. ``data_dir=None`` means :func:`default_data_dir`.

    Raises:
      DatasetNotFoundError: ``name`` is unknown, or not prepared in ``data_dir``.
      ValueError: ``data_dir`` is a file.
    """
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir or default_data_dir())))
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"data_dir {data_dir!r} is a file: pass a directory (--data-dir)")
    _import_tf()  # hide GPUs from TF before tfds imports it
    return _prepared_builder(_import_tfds(), name, data_dir)


def _quiet_tf_logs() -> None:
    # oneDNN's numerics notice ignores TF_CPP_MIN_LOG_LEVEL; TF only reads data here, so
    # turning its oneDNN custom ops off costs nothing.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _import_tf() -> Any:
    """Imports TensorFlow quietly and hides GPUs from it (they belong to JAX)."""
    _quiet_tf_logs()
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TensorFlow is needed to load datasets: pip install 'genjax-models[data]'"
        ) from e
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass  # TF already initialised its devices elsewhere: leave them as they are
    return tf


def _import_tfds() -> Any:
    _quiet_tf_logs()
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "tensorflow_datasets is needed to load datasets: pip install 'genjax-models[data]'"
        ) from e
    return tfds


def _is_prepared(builder: Any) -> bool:
    # Checking existence first avoids tfds' "Variant folder ... has no dataset_info.json" warning.
    return builder.data_path.exists() and builder.is_prepared()


def _builder(tfds: Any, name: str, data_dir: str) -> Any:
    """``tfds.builder(name)``; an unknown config or version of a known dataset (TFDS raises a
    ValueError or AssertionError with a long message) becomes a one-line
    :class:`DatasetNotFoundError` listing the valid ones."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except (ValueError, AssertionError) as error:
        if isinstance(error, tfds.core.DatasetNotFoundError):
            raise
        base = dataset_base_name(name)
        try:
            cls = tfds.builder_cls(base)
        except Exception:  # noqa: BLE001 - any failure here: report TFDS's own first line
            raise DatasetNotFoundError(
                f"dataset {name!r} cannot be built: {str(error).splitlines()[0]}"
            ) from None
        configs = [config.name for config in getattr(cls, "BUILDER_CONFIGS", None) or []]
        versions = sorted({str(cls.VERSION), *map(str, getattr(cls, "SUPPORTED_VERSIONS", []))})
        valid = [f"versions {', '.join(versions)}"]
        if configs:
            valid.insert(0, "configs " + ", ".join(f"{base}/{c}" for c in configs))
        raise DatasetNotFoundError(
            f"dataset {name!r} has no such config or version: use one of its {'; '.join(valid)}"
        ) from None


def _prepared_builder(tfds: Any, name: str, data_dir: str) -> Any:
    """A TFDS builder for ``name`` whose data is prepared in ``data_dir`` (never downloads)."""
    base_name = dataset_base_name(name)
    if base_name in _BUILDER_MODULES:
        import importlib

        importlib.import_module(_BUILDER_MODULES[base_name])  # registers the builder
        builder = _builder(tfds, name, data_dir)
        if not _is_prepared(builder):
            config = tfds.download.DownloadConfig(try_download_gcs=False)
            try:
                builder.download_and_prepare(download_config=config)
            except Exception:
                # Another process may have finished preparing the same directory first.
                builder = tfds.builder(name, data_dir=data_dir)
                if not _is_prepared(builder):
                    raise
        return builder

    offline = ", ".join(KNOWN_OFFLINE_DATASETS)
    try:
        builder = _builder(tfds, name, data_dir)
    except tfds.core.DatasetNotFoundError:
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}: not a TFDS dataset and no prepared copy in data_dir "
            f"{data_dir!r} (available offline: {offline})"
        ) from None
    if not _is_prepared(builder):
        raise DatasetNotFoundError(
            f"dataset {name!r} is not prepared in data_dir {data_dir!r} and will not be "
            f"downloaded: run `tfds build {name} --data_dir {data_dir}` on a machine with "
            f"network and copy the directory over (available offline: {offline})"
        )
    return builder
