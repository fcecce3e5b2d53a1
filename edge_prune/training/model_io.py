"""Load a user's saved Keras model safely: inspect its config before anything is deserialized.

A ``Lambda`` layer stores Python bytecode that runs when the model is loaded, so a model file
holding one is refused unless the caller opts in (``allow_lambda=True``). Models saved by
Keras 3 (``import keras``) are refused with the way out: tfmot needs ``tf_keras``.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from edge_prune.errors import UnsupportedModelError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
# Attribute of a loaded model: why its saved compile settings were not restored.
COMPILE_NOT_RESTORED = "_edge_prune_compile_not_restored"


def describe_saved_model(path: str | Path) -> dict:
    """The model config stored in ``path`` (.keras zip, .h5, or SavedModel dir), unexecuted."""
    path = Path(path)
    if not path.exists():
        raise UnsupportedModelError(f"{path}: no such model file or directory")
    if path.is_dir():
        return _saved_model_config(path)
    from edge_prune.input_files import check_regular

    check_regular(path, error=UnsupportedModelError)  # a FIFO or a device: refused unread
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
    code = _stored_code(info.get("config"))
    if code and not allow_lambda:
        raise UnsupportedModelError(
            f"{path}: has {'; '.join(code)}, whose code would run on load; "
            "refused unless you trust the file and pass --allow-lambda"
        )
    return info


def load_saved_model(path: str | Path, allow_lambda: bool = False):
    """Load a tf_keras model after :func:`check_saved_model`.

    The model comes back compiled as it was saved (optimizer, loss) when tf_keras can restore
    that, so training can use the user's own settings; otherwise uncompiled (e.g. a custom loss
    that is not registered): the weights and graph are what edge-prune needs, and
    :func:`compile_not_restored` says why the settings were dropped.
    """
    check_saved_model(path, allow_lambda)
    from edge_prune.training._tf import keras

    options = {"safe_mode": not allow_lambda} if Path(path).suffix == ".keras" else {}
    try:
        return keras.models.load_model(path, compile=True, **options)
    except Exception as e:  # noqa: BLE001 - only the compile settings are optional
        # Safe to go on without them: the uncompiled load below reads the same graph and
        # weights (and fails, naming the file, if those are what is broken); the reason the
        # settings were dropped stays on the model for the training report.
        not_restored = _first_line(e)
    try:
        model = keras.models.load_model(path, compile=False, **options)
    except Exception as e:  # a foreign loader fails in many ways; name the file and the cause
        raise UnsupportedModelError(
            f"{path}: tf_keras could not load the model ({_first_line(e)})"
        ) from e
    setattr(model, COMPILE_NOT_RESTORED, not_restored)
    return model


def compile_not_restored(model) -> str | None:
    """Why the model's saved compile settings (optimizer, loss) could not be restored by
    :func:`load_saved_model`, or None when they were (or the model was not loaded by it)."""
    return getattr(model, COMPILE_NOT_RESTORED, None)


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'}"


def _keras_zip_config(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            config = _json(z.read("config.json"))
            metadata = _json(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise UnsupportedModelError(
            f"{path}: not a Keras .keras archive (expected a zip with config.json: {e})"
        ) from None
    version = metadata.get("keras_version", "") if isinstance(metadata, dict) else ""
    return {"config": config, "keras_version": str(version)}


def _json(raw: bytes | str):
    """Parse JSON text; ``ValueError`` also for bytes that are not UTF-8 or nesting too deep."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise UnsupportedModelError(f"{path}: not an HDF5 model file ({e})") from None
    if raw is None:
        raise UnsupportedModelError(
            f"{path}: HDF5 file without a model config (weights only?); save the whole model"
        )
    if not isinstance(raw, (bytes, str)):
        raise UnsupportedModelError(
            f"{path}: HDF5 attribute model_config holds {type(raw).__name__}, expected JSON text"
        )
    try:
        config = _json(raw)
    except ValueError as e:
        raise UnsupportedModelError(f"{path}: HDF5 model_config is not valid JSON ({e})") from None
    version = version.decode("utf-8", "replace") if isinstance(version, bytes) else version
    return {"config": config, "keras_version": str(version)}


def _saved_model_config(path: Path) -> dict:
    metadata = path / "keras_metadata.pb"
    if not (path / "saved_model.pb").exists():
        raise UnsupportedModelError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
    if not metadata.exists():
        raise UnsupportedModelError(
            f"{path}: SavedModel without Keras metadata; save it from tf_keras (model.save)"
        )
    blob = metadata.read_bytes()
    # The metadata is a protobuf holding JSON; code shows up as a Lambda class name, a serialized
    # "__lambda__" object or a "..._type": "lambda" entry.
    has_code = any(pattern.search(blob) for pattern in _CODE_IN_JSON_BYTES)
    config = {"layers": [{"class_name": "Lambda", "name": "?"}]} if has_code else None
    return {"config": config, "keras_version": ""}


_CODE_IN_JSON_BYTES = (
    re.compile(rb'"class_name"\s*:\s*"(?:Lambda|__lambda__)"'),
    re.compile(rb'_type"\s*:\s*"lambda"'),
)


def _stored_code(config) -> list[str]:
    """What in a model config would run stored Python code when tf_keras deserializes it.

    Lambda layers (their function is marshalled bytecode), objects serialized as
    ``"__lambda__"`` (e.g. an activation), and ``"<name>_type": "lambda"`` entries (Lambda's
    output_shape, RNN cell wrappers' residual_fn / dropout filter). Walked without recursion:
    the config comes from the file and can nest arbitrarily deep.
    """
    lambda_layers, lambdas = [], []
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            class_name = node.get("class_name")
            if class_name == "Lambda":
                inner = node.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                lambda_layers.append(str(name or node.get("name", "?")))
            elif class_name == "__lambda__":
                lambdas.append("__lambda__")
            lambdas += [
                str(k) for k, v in node.items() if str(k).endswith("_type") and v == "lambda"
            ]
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    found = []
    if lambda_layers:
        found.append(f"Lambda layer(s) {', '.join(lambda_layers)}")
    if lambdas:
        found.append(f"serialized Python lambda(s) ({', '.join(sorted(set(lambdas)))})")
    return found
