"""Build and run edge-prune's output on a real Cortex-M build of TFLM (Arm GNU toolchain, QEMU).

No TensorFlow here. The library the cost model and benches call:

- :func:`resolve_toolchain` -> :class:`Toolchain` (arm-none-eabi-gcc/g++/ar/size, qemu-system-arm)
- :meth:`TflmTree.from_path` -> :class:`TflmTree` (``.commit``)
- :class:`DeviceConfig` (core, kernels, build_type)
- :func:`runtime_flash_for_ops` -> :class:`RuntimeLink` (``runtime_flash_bytes``,
  ``runtime_ram_bytes``, ``sections``: list of :class:`Section` (object, name, size, region))
- :func:`measure` -> :class:`DeviceResult`: a model's firmware built, run in QEMU, compared
  with the host TFLM, its flash split, smallest arena and instructions per inference
"""

from edge_prune.measurement.device.config import DeviceConfig, core_from_target
from edge_prune.measurement.device.mapfile import Section
from edge_prune.measurement.device.measure import DeviceResult, measure
from edge_prune.measurement.device.runtime import RuntimeLink, runtime_flash_for_ops
from edge_prune.measurement.device.toolchain import TflmTree, Toolchain, resolve_toolchain

__all__ = [
    "DeviceConfig",
    "DeviceResult",
    "RuntimeLink",
    "Section",
    "TflmTree",
    "Toolchain",
    "core_from_target",
    "measure",
    "resolve_toolchain",
    "runtime_flash_for_ops",
]
