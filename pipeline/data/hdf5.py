"""Reading fields of the sources' HDF5 files (NWB sessions, BData) with h5py, text decoded.

Written once for every source: a missing field is an error naming the file, the field and the
layout the reader expected.
"""

from __future__ import annotations

import h5py
import numpy as np


def strings(values) -> np.ndarray:
    """Text values as a str array: bytes decoded (UTF-8), anything else through `str`."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v)
                     for v in np.atleast_1d(values)])


def read(f: h5py.File, key: str, path, *, expected: str = "") -> np.ndarray:
    """The field `key` of an open HDF5 file as a numpy array; text fields decoded to str.

    Parameters
    ----------
    f : h5py.File
        The open file.
    key : str
        Path of the dataset inside the file.
    path : path-like
        The file's name, for the error message.
    expected : str
        What kind of file the caller expects, named in the error (e.g. "an Allen Neuropixels
        session file").

    Raises
    ------
    ValueError
        Naming `path` and `key` when the field is missing.
    """
    if key not in f:
        raise ValueError(f"{path}: NWB field {key!r} missing"
                         + (f"; expected {expected}" if expected else ""))
    values = f[key][()]
    if isinstance(values, bytes):
        return np.asarray(values.decode())
    values = np.asarray(values)
    if values.dtype.kind in "OS":
        values = strings(values).reshape(values.shape)
    return values


def text(f: h5py.File, key: str, path, *, default: str | None = None, expected: str = "") -> str:
    """A scalar field as text; `default` when the field is missing and a default is given."""
    if key not in f and default is not None:
        return str(default)
    return str(read(f, key, path, expected=expected).item())
