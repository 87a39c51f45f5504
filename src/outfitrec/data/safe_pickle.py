"""A restricted reader for `.npy` files that hold pickled Python objects.

The DiFashion release stores dicts and lists through ``numpy.save`` with
dtype object, i.e. as a pickle after the ``.npy`` header. ``np.load(...,
allow_pickle=True)`` would run whatever that pickle names, so this module
parses the ``.npy`` header itself and unpickles the payload with an
Unpickler that admits only the few classes such files need (numpy's array
reconstruction, numpy scalars, dtypes, and builtin containers). Anything
else is refused with a DataError that names the file and the class; the
refused object is never imported, let alone called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from outfitrec.data.outfits import DataError

# (module, name) pairs the unpickler may resolve. numpy 2 renamed numpy.core to
# numpy._core; files written by numpy 1 name the old module, so both are allowed.
_NUMPY_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
) | {("numpy", "ndarray"), ("numpy", "dtype")}

_BUILTINS_ALLOWED: frozenset[str] = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bool", "bytearray"}
)


def _resolve_numpy(module: str, name: str) -> Any:
    """Return the numpy object for an allowed (module, name), without importing by string."""
    if name == "ndarray":
        return np.ndarray
    if name == "dtype":
        return np.dtype
    # numpy.core is a deprecated alias in numpy 2: resolve both names to the real functions.
    from numpy._core import multiarray  # type: ignore[attr-defined]

    return getattr(multiarray, name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed numpy classes and builtin containers."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_ALLOWED:
            return _resolve_numpy(module, name)
        # numpy 2 pickles dtypes as numpy.dtypes.<Name>DType classes; admit those dtype classes only.
        if module == "numpy.dtypes" and name.endswith("DType"):
            import numpy.dtypes

            cls = getattr(numpy.dtypes, name, None)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                return cls
        if module == "builtins" and name in _BUILTINS_ALLOWED:
            import builtins

            return getattr(builtins, name)
        raise DataError(f"{self.source}: refused to unpickle {module}.{name} (not in the allowed set of classes)")


def loads_restricted(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` with the restricted unpickler; `source` names it in errors."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or corrupt pickle: one clear line, not a deep traceback
        raise DataError(f"{source}: cannot unpickle ({type(exc).__name__}: {exc})") from None


def load_pickled_npy(path: str | Path) -> Any:
    """Load a `.npy` file holding a pickled object (dtype object) safely.

    Returns the object inside: for a 0-d object array (what ``np.save(dict)``
    writes) the dict itself, otherwise the object array. Plain numeric arrays
    are read without pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as fh:
        try:
            version = npy_format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
            else:
                raise DataError(f"{path}: unsupported .npy version {version}")
        except DataError:
            raise
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: not a .npy file ({exc})") from None
        payload = fh.read()
    if not dtype.hasobject:
        try:
            count = int(np.prod(shape))
            arr = np.frombuffer(payload, dtype=dtype, count=count)
        except ValueError as exc:
            raise DataError(f"{path}: truncated array data ({exc})") from None
        return arr.reshape(shape, order="F" if fortran else "C")
    obj = loads_restricted(payload, str(path))
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype.hasobject:
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.reshape(shape, order="F" if fortran else "C") if obj.size == int(np.prod(shape)) else obj
    return obj
