"""Writing a flatbuffer the way TFLM reads it: a ``schema.ModelT`` serialised and re-laid with
TFLM's own buffer aligner. Used by every rewrite of a model (codecs, sparse operators)."""

from __future__ import annotations

import os
import tempfile


def pack(model) -> bytes:
    """Serialise a ``schema.ModelT`` with the buffer alignment TFLM expects."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return aligned(bytes(builder.Output()))


def aligned(model_bytes: bytes) -> bytes:
    """Re-lay the flatbuffer with the buffer alignment TFLM expects (TFLM's C++ aligner)."""
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory(prefix="edge-prune-pack-") as tmp:
        src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        with open(src, "wb") as f:
            f.write(model_bytes)
        tflite_flatbuffer_align_wrapper.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()
