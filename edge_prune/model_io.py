"""Load a user's saved Keras model safely: inspect its config before anything is deserialized.

A ``Lambda`` layer stores Python bytecode that runs when the model is loaded, so a model file
holding one is refused unless the caller opts in (``allow_lambda=True``). Models saved by
Keras 3 (``import keras``) are refused with the way out: tfmot needs ``tf_keras``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edge_prune.errors import UnsupportedModelError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def describe_saved_model(path: str | Path) -> dict:
    """The model config stored in ``path`` (.keras zip, .h5, or SavedModel dir), unexecuted."""
    path = Path(path)
    if not path.exists():
        raise UnsupportedModelError(f"{path}: no such model file or directory")
    if path.is_dir():
        return _saved_model_config(path)
    if path.suffix == ".keras":
        return _keras_zip_config(path)
    if path.suffix in (".h5", ".hdf5"):
        return _h5_config(path)
    raise UnsupportedModelError(
        f"{path}: unknown model format; expected a tf_keras .keras or .h5 file or a SavedModel "
        "directory"
    )


def check_saved_model(path: str | Path, allow_lambda: bool = False) -> dict:
    """Raise ``UnsupportedModelError`` for Keras 3 files or (without opt-in) Lambda layers."""
    info = describe_saved_model(path)
    version = str(info.get("keras_version", ""))
    if version.startswith("3."):
        raise UnsupportedModelError(
            f"{path}: saved by Keras {version} (import keras); tfmot pruning needs a Keras 2 "
            "model: rebuild it with `import tf_keras as keras` and save it again"
        )
    lambdas = _layers_of_class(info.get("config"), "Lambda")
    if lambdas and not allow_lambda:
        raise UnsupportedModelError(
            f"{path}: has Lambda layer(s) {', '.join(lambdas)}, whose code would run on load; "
            "refused unless you trust the file and pass --allow-lambda"
        )
    return info


def load_saved_model(path: str | Path, allow_lambda: bool = False):
    """Load a tf_keras model after :func:`check_saved_model`; returns an uncompiled model."""
    check_saved_model(path, allow_lambda)
    from edge_prune._tf import keras

    try:
        if Path(path).suffix == ".keras":
            return keras.models.load_model(path, compile=False, safe_mode=not allow_lambda)
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # a foreign loader fails in many ways; name the file and the cause
        raise UnsupportedModelError(
            f"{path}: tf_keras could not load the model ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no message'})"
        ) from e


def _keras_zip_config(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            metadata = (
                json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
            )
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as e:
        raise UnsupportedModelError(
            f"{path}: not a Keras .keras archive (expected a zip with config.json: {e})"
        ) from None
    return {"config": config, "keras_version": metadata.get("keras_version", "")}


def _h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
    except OSError as e:
        raise UnsupportedModelError(f"{path}: not an HDF5 model file ({e})") from None
    if raw is None:
        raise UnsupportedModelError(
            f"{path}: HDF5 file without a model config (weights only?); save the whole model"
        )
    raw = raw.decode() if isinstance(raw, bytes) else raw
    version = version.decode() if isinstance(version, bytes) else version
    return {"config": json.loads(raw), "keras_version": str(version)}


def _saved_model_config(path: Path) -> dict:
    metadata = path / "keras_metadata.pb"
    if not (path / "saved_model.pb").exists():
        raise UnsupportedModelError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
    if not metadata.exists():
        raise UnsupportedModelError(
            f"{path}: SavedModel without Keras metadata; save it from tf_keras (model.save)"
        )
    blob = metadata.read_bytes()
    # The metadata is a protobuf holding JSON; Lambda layers show up as their class name.
    config = (
        {"config": {"layers": [{"class_name": "Lambda", "name": "?"}]}}
        if (b'"class_name": "Lambda"' in blob)
        else {}
    )
    return {"config": config.get("config"), "keras_version": ""}


def _layers_of_class(config, class_name: str) -> list[str]:
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == class_name:
                found.append(str(node.get("config", {}).get("name", node.get("name", "?"))))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found
