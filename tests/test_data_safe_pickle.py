"""The restricted .npy unpickler: admits numpy arrays/scalars and builtin containers, refuses the rest."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from numpy.lib import format as npy_format

from outfitrec.data.outfits import DataError
from outfitrec.data.safe_pickle import load_pickled_npy


def _npy_with_payload(path, payload: bytes) -> None:
    """A .npy file whose header says dtype object, followed by an arbitrary pickle."""
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    path.write_bytes(buf.getvalue() + payload)


def test_loads_what_numpy_save_writes(tmp_path):
    obj = {
        "uids": [0, 1, 2],
        "nested": {5: [np.int64(7), np.int32(3)], "name": "dress"},
        "arr": np.arange(4, dtype=np.float32),
        "tuple": (1.5, True, None),
    }
    np.save(tmp_path / "x.npy", obj, allow_pickle=True)
    loaded = load_pickled_npy(tmp_path / "x.npy")
    assert loaded["uids"] == [0, 1, 2]
    assert loaded["nested"][5] == [7, 3] and isinstance(loaded["nested"][5][0], np.integer)
    assert loaded["nested"]["name"] == "dress"
    np.testing.assert_array_equal(loaded["arr"], np.arange(4, dtype=np.float32))
    assert loaded["tuple"] == (1.5, True, None)


def test_plain_numeric_npy_needs_no_pickle(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(load_pickled_npy(tmp_path / "a.npy"), np.arange(6).reshape(2, 3))


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_os_system_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    _npy_with_payload(path, pickle.dumps({"uids": [0], "x": _Evil(str(marker))}, protocol=3))
    with pytest.raises(DataError) as err:
        load_pickled_npy(path)
    message = str(err.value)
    assert str(path) in message and "system" in message and "refused" in message
    assert not marker.exists()


def test_refuses_other_numpy_callables(tmp_path):
    path = tmp_path / "evil2.npy"

    class Sneaky:
        def __reduce__(self):
            return (np.load, ("/etc/passwd",))

    _npy_with_payload(path, pickle.dumps(Sneaky(), protocol=3))
    with pytest.raises(DataError, match="refused to unpickle numpy"):
        load_pickled_npy(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_pickled_npy(tmp_path / "nope.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(DataError, match="not a .npy file"):
        load_pickled_npy(tmp_path / "text.npy")
    good = io.BytesIO()
    np.save(good, {"a": list(range(100))}, allow_pickle=True)
    (tmp_path / "cut.npy").write_bytes(good.getvalue()[:-30])
    with pytest.raises(DataError, match="cannot unpickle"):
        load_pickled_npy(tmp_path / "cut.npy")
