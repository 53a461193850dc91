"""Save and load networks, layer stacks (:class:`snn.Network`) and graphs
(:class:`snn.Graph`): one ``.npz`` file, an exact round trip.

``save(network, path)`` then ``load(path)`` gives a network whose every
parameter array is bit-identical to the original's and whose runs give the
same spikes and counts. Loading rebuilds every object through its public
constructor (a graph through ``Graph.population``/``input``/``connect``/
``poisson_input``), so all of its validation runs again.

File format, version 1
----------------------
A numpy ``.npz`` archive (a zip of ``.npy`` files, nothing pickled; it is read
with ``allow_pickle=False``) holding

- ``manifest``: a 0-d unicode array, a JSON object ::

      {"format": "snn-zero-waste network", "format_version": 1,
       "snn_version": "0.1.0", "network": RECORD}

- the arrays of the records, each named ``<record path>.<array name>``,
  e.g. ``layer0.weight`` or ``layer2.v_init``.

A RECORD is a JSON object ``{"type": NAME, ...}``: ``NAME`` is a type
registered with :func:`register`, the other fields are the object's scalar
parameters and the records of its parts. The built-in types:

============  =============================================  ============================================
type          fields                                         arrays
============  =============================================  ============================================
Network       ``dtype`` ("float32"/"float64"), ``layers``    (those of ``layer0``, ``layer1``, ...)
              (a list of layer records, paths ``layer{k}``)
Linear        ``n_in, n_out``, common                        ``weight`` float32 [n_out, n_in], common
SparseLinear  ``n_in, n_out``, common                        ``rowptr`` int64 [n_in + 1], ``cols`` int32
                                                             [S], ``weights`` float32 [S], common
Conv2d        ``in_shape`` [C, H, W], ``out_channels``,      ``weight`` float32 [C_out, C / groups, kh,
              window, ``groups``, common                     kw], ``bias`` float64 [C_out], ``v_init``
AvgPool2d     ``in_shape``, window, common                   ``bias`` float64 [C], ``v_init``
MaxPool2d     ``in_shape``, ``kernel_size``, ``stride``,     none
              ``padding`` (pairs), ``name``; a square
              kernel with stride = kernel and no padding
              is written as ``kernel_size`` (int) alone,
              as before; a record without ``stride`` and
              ``padding``: stride = kernel, no padding
Neuron        ``beta, alpha, threshold, reset, v_reset,``    none
              ``refractory, name`` (``alpha`` null without
              a current; an infinite threshold is "inf")
Graph         ``dt`` (seconds), ``dtype``, ``populations``,  those of its sub-records (below)
              ``projections``, ``sources`` (lists of
              sub-records, below)
============  =============================================  ============================================

common: ``mode``, ``name`` (null when unnamed), ``neuron`` (a Neuron record,
path ``<layer>.neuron``); arrays ``bias`` float64 [n_out] (per channel for the
convolutions) and ``v_init`` float64 [n_out]. window: ``kernel_size``,
``stride``, ``padding``, ``dilation``, each a pair [y, x].

A Graph's sub-records are plain JSON objects (not registered types), in the
graph's order, with their arrays under their own path:

- ``populations[k]``, path ``population{k}``: ``name``, ``n``, ``neuron`` (a
  Neuron record, path ``population{k}.neuron``; null for an input
  population, which has no arrays), ``mode`` (neuron populations); arrays
  ``bias`` and ``v_init`` float64 [n].
- ``projections[k]``, path ``projection{k}``: ``name``, ``source`` and
  ``target`` (population names), ``weight`` (the weight every synapse shares;
  null when each synapse has its own), ``delays`` (one per delay group,
  strictly increasing). Group ``g`` of delay ``delays[g]`` (synapses stored as
  CSR by presynaptic neuron) has arrays ``group{g}.rowptr`` int64
  [n_source + 1], ``group{g}.cols`` int32 [S_g] (target indices) and, when
  ``weight`` is null, ``group{g}.weights`` float32 [S_g].
- ``sources[k]`` (Poisson inputs, no arrays): ``target`` (a population name),
  ``n_trains``, ``rate`` (Hz), ``weight``.
- a max-pool gate (``Graph.max_pool``) is a population with ``neuron`` null
  and ``pool``: ``source`` (a population name), ``kernel_size``, ``stride``,
  ``padding`` (pairs); its projection is written ``kind`` "maxpool" with
  ``name``, ``source``, ``target`` and no arrays.
- a population made with a shape has ``shape`` [C, H, W]; a convolution
  (``Graph.conv``) is a projection with ``kind`` "conv", one delay in
  ``delays``, the window fields ``kernel_size``, ``stride``, ``padding``,
  ``dilation`` (pairs) and ``groups``, and the array ``kernel`` float32
  [C_out, C_in / groups, kh, kw].

A graph is rebuilt with one ``connect`` per projection, the groups merged
back into one CSR (per presynaptic neuron: group 0's synapses, then group
1's...) with a delay per synapse, which ``connect`` splits into the same
groups again.

Every record is checked against its type's schema (the JSON type of each
field) before its constructor runs. A manifest nests at most ``MAX_DEPTH``
(32) levels, JSON integers fit an int64, NaN/Infinity are not JSON, and a
size no array of the file backs (an input population, a first layer's
``in_shape``) is at most ``MAX_SIZE`` (2**31 - 1, what the kernels index);
each ``.npy`` entry's header must declare exactly the bytes it holds. So a
crafted file gives a :class:`FileFormatError`, never a ``RecursionError``
nor an allocation of what it does not hold.

A reader refuses a file whose ``format_version`` is newer than it knows; a
change that old readers would misread increments the version (a new type,
such as Graph, does not: an older reader refuses it as an unknown type).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable

import numpy as np

from .model.conv import AvgPool2d, Conv2d, MaxPool2d
from .model.graph import Graph
from .model.layers import Linear, SparseLinear
from .model.network import Network
from .model.neurons import Neuron

FORMAT = "snn-zero-waste network"
FORMAT_VERSION = 1


class FileFormatError(ValueError):
    """A file that is not a valid snn network file; the message names the file
    and what is wrong with it."""


# -- the registry of saveable types ------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Codec:
    cls: type
    to_record: Callable
    from_record: Callable
    network: bool
    fields: dict | None = None


_REGISTRY: dict[str, _Codec] = {}

# Limits of what a file may declare. A manifest nests a few levels (network,
# layer, neuron); a size that no array of the file backs (an input
# population, a pooling window's input) is at most what the kernels index
# (int32 neuron indices), so a small crafted file cannot make load() allocate
# terabytes; every JSON integer fits an int64.
MAX_DEPTH = 32
MAX_SIZE = 2**31 - 1
_INT64 = 2**63

# Field kinds of a record's schema (see register): the JSON type each field must have.
_KINDS: dict[str, tuple[Callable, str]] = {
    "int": (lambda v: _is_int(v), "an integer"),
    "size": (lambda v: _is_int(v) and v <= MAX_SIZE, f"an integer of at most {MAX_SIZE}"),
    "number": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "null": (lambda v: v is None, "null"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
    "pair": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_int, v)), "a pair of integers"),
    "shape3": (
        lambda v: (
            isinstance(v, list)
            and len(v) == 3
            and all(_is_int(d) and d >= 1 for d in v)
            and math.prod(v) <= MAX_SIZE
        ),
        f"three positive integers [C, H, W] of product at most {MAX_SIZE}",
    ),
}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 < value < _INT64


def register(
    cls: type,
    to_record: Callable,
    from_record: Callable,
    *,
    network: bool = False,
    fields: dict | None = None,
) -> None:
    """Make instances of ``cls`` saveable, under the type name ``cls.__name__``.

    Parameters
    ----------
    cls : the exact class (subclasses need their own entry).
    to_record : ``(obj, out: Writer) -> dict``, the object's scalar
        parameters as JSON values (finite numbers, strings, None, lists,
        dicts); arrays go through ``out.array`` and registered parts (layers,
        neurons) through ``out.part``, whose returned record goes into the dict;
        sub-records that are not registered types through ``out.child``.
        ``load`` refuses a file holding an array that no ``from_record``
        reads, so every array stored must be read back.
    from_record : ``(src: Reader) -> obj``, rebuilds the object through its
        public constructor from ``src[field]``, ``src.array(...)``,
        ``src.part(...)`` and ``src.child(...)``; a ``TypeError``/``ValueError`` it raises is
        reported as a :class:`FileFormatError` naming the file and the record.
    network : whether the type is a whole network, which ``save`` accepts
        and ``load`` returns.
    fields : optional schema ``{field: kind or tuple of kinds}`` checked
        before ``from_record`` runs, so that it gets fields of the right JSON
        types (a field absent from the record is reported when read). Kinds:
        ``"int"``, ``"size"`` (an integer of at most ``MAX_SIZE``; the
        constructor refuses one < 1), ``"number"``,
        ``"str"``, ``"null"``, ``"list"``, ``"object"``, ``"pair"`` (two
        integers), ``"shape3"`` (``[C, H, W]``, product at most ``MAX_SIZE``).

    Raises
    ------
    ValueError : the name is registered for another class.
    """
    old = _REGISTRY.get(cls.__name__)
    if old is not None and _qualified(old.cls) != _qualified(cls):
        raise ValueError(f"type name {cls.__name__!r} is already registered for {_qualified(old.cls)}")
    unknown = {kind for kinds in (fields or {}).values() for kind in _kinds(kinds)} - set(_KINDS)
    if unknown:
        raise ValueError(f"unknown field kind(s) {sorted(unknown)}; known: {sorted(_KINDS)}")
    _REGISTRY[cls.__name__] = _Codec(cls, to_record, from_record, network, fields)


def _kinds(kinds) -> tuple:
    return (kinds,) if isinstance(kinds, str) else tuple(kinds)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _codec_of(obj) -> _Codec:
    codec = _REGISTRY.get(type(obj).__name__)
    if codec is None or codec.cls is not type(obj):
        raise TypeError(
            f"cannot save a {_qualified(type(obj))}: its type is not registered; register it with "
            "snn.io.register(cls, to_record, from_record) (see the snn.io docstring)"
        )
    return codec


class Writer:
    """Where a ``to_record`` function stores its arrays and its parts.

    ``location`` is the record's path in the file (``""`` for the network,
    ``"layer0"``, ``"layer0.neuron"``...); its arrays are named
    ``<location>.<name>``."""

    def __init__(self, arrays: dict[str, np.ndarray], location: str):
        self._arrays = arrays
        self.location = location

    def array(self, name: str, value: np.ndarray) -> None:
        """Store ``value`` as array ``name`` of this record, dtype and shape as they are."""
        self._arrays[_join(self.location, name)] = np.asarray(value)

    def part(self, key: str, obj) -> dict:
        """The record of ``obj`` (a registered type), its arrays stored under ``<location>.<key>``."""
        return _encode(obj, Writer(self._arrays, _join(self.location, key)))

    def child(self, key: str) -> Writer:
        """A writer for a sub-record that is not a registered type (e.g. a
        graph's population), its arrays stored under ``<location>.<key>``."""
        return Writer(self._arrays, _join(self.location, key))


class Reader:
    """What a ``from_record`` function reads: the fields of its record, its
    arrays (type-checked) and its parts. Every problem is raised as a
    :class:`FileFormatError` naming the file and the record's location."""

    def __init__(
        self, path: str, arrays: dict[str, np.ndarray], record, location: str, used: set | None = None
    ):
        self._path = path
        self._arrays = arrays
        self.record = record
        self.location = location
        self._used = set() if used is None else used  # names of the arrays read, shared by all readers

    def error(self, message: str) -> FileFormatError:
        return FileFormatError(f"{self._path}: {self.location or 'network'}: {message}")

    def __getitem__(self, field: str):
        if field not in self.record:
            kind = self.record.get("type")
            kind = f"{kind} " if isinstance(kind, str) else ""
            raise self.error(f"the {kind}record has no field {field!r}")
        return self.record[field]

    def array(self, name: str, dtype, ndim: int) -> np.ndarray:
        """Array ``name`` of this record, refused unless its dtype is exactly
        ``dtype`` and it has ``ndim`` dimensions (the constructor that takes
        it checks the sizes)."""
        key = _join(self.location, name)
        if key not in self._arrays:
            raise self.error(f"array {key!r} is missing from the file")
        arr = self._arrays[key]
        self._used.add(key)
        if arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
            raise self.error(
                f"array {key!r} is {arr.dtype} of shape {arr.shape}, expected "
                f"{np.dtype(dtype)} with {ndim} dimension(s)"
            )
        return arr

    def part(self, key: str, record):
        """The object rebuilt from ``record``, a part stored under ``<location>.<key>``."""
        return _decode(Reader(self._path, self._arrays, record, _join(self.location, key), self._used))

    def child(self, key: str, record) -> Reader:
        """A reader of ``record``, a sub-record written by :meth:`Writer.child`
        under ``<location>.<key>``; refused unless it is a JSON object."""
        child = Reader(self._path, self._arrays, record, _join(self.location, key), self._used)
        if not isinstance(record, dict):
            raise child.error(f"expected a JSON object, got {record!r}")
        return child

    def check(self, fields: dict) -> Reader:
        """Refuse the record unless each field of the schema ``fields`` that
        it has is of its kind (see :func:`register`); returns ``self``."""
        for field, kinds in fields.items():
            if field not in self.record:
                continue
            value = self.record[field]
            if not any(_KINDS[kind][0](value) for kind in _kinds(kinds)):
                expected = " or ".join(_KINDS[kind][1] for kind in _kinds(kinds))
                raise self.error(f"field {field!r} must be {expected}, got {_short(value)}")
        return self

    def list_field(self, field: str) -> list:
        """Field ``field``, refused unless it is a JSON list."""
        value = self[field]
        if not isinstance(value, list):
            raise self.error(f"field {field!r} must be a list, got {value!r}")
        return value


def _join(location: str, name: str) -> str:
    return f"{location}.{name}" if location else name


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _encode(obj, out: Writer) -> dict:
    codec = _codec_of(obj)
    return {"type": type(obj).__name__, **codec.to_record(obj, out)}


def _decode(src: Reader):
    if not isinstance(src.record, dict):
        raise src.error(f"expected a JSON object (a record), got {src.record!r}")
    name = src.record.get("type")
    codec = _REGISTRY.get(name) if isinstance(name, str) else None
    if codec is None:
        raise src.error(
            f"unknown type {name!r} (known: {', '.join(sorted(_REGISTRY))}); a type of a "
            "plug-in must be registered with snn.io.register before loading"
        )
    if codec.fields is not None:
        src.check(codec.fields)
    try:
        return codec.from_record(src)
    except FileFormatError:
        raise
    except (TypeError, ValueError, OverflowError) as err:
        raise src.error(f"cannot rebuild the {name}: {err}") from err


# -- save and load -------------------------------------------------------------


def save(network: Network | Graph, path) -> None:
    """Write ``network`` (an :class:`snn.Network` or an :class:`snn.Graph`)
    to the file ``path`` (an ``.npz`` archive, written at exactly ``path``:
    no suffix is added), replacing it if it exists. A graph may be saved
    before or after runs: its file is the same.

    Raises
    ------
    TypeError : ``network`` or one of its parts is of an unregistered type.
    ValueError : a convolution's bias varies within an output channel (its
        constructor takes one bias per channel).
    """
    if not _codec_of(network).network:
        raise TypeError(
            f"snn.save takes a network (snn.Network or snn.Graph), got a {type(network).__name__}"
        )
    arrays: dict[str, np.ndarray] = {}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "snn_version": _snn_version(),
        "network": _encode(network, Writer(arrays, "")),
    }
    text = json.dumps(manifest, allow_nan=False)
    with open(path, "wb") as file:  # a file object: np.savez would append ".npz" to a path
        np.savez(file, manifest=np.array(text), **arrays)


def load(path) -> Network | Graph:
    """The network saved in the file ``path`` by :func:`save`: an
    :class:`snn.Network` or an :class:`snn.Graph`, whichever was saved.

    Raises
    ------
    FileNotFoundError : no file at ``path``.
    FileFormatError (a ValueError) : not an ``.npz`` archive, a truncated or
        corrupted one, not an snn network file, a newer format version, a
        malformed manifest (nested too deeply, a field of the wrong JSON
        type, a size beyond ``MAX_SIZE``), an ``.npy`` header declaring more
        or fewer bytes than it holds, an array of objects, a missing array, an
        array of the wrong dtype or shape, an array no record reads, or
        parameters the constructors
        refuse (for a graph also: a projection or source naming an unknown
        population, delay groups that do not match their arrays); the
        message names the file and what is wrong.
    """
    name = os.fspath(path)
    arrays = _read_npz(name)
    manifest = _read_manifest(name, arrays)
    src = Reader(name, arrays, manifest["network"], "")
    try:
        network = _decode(src)
    except MemoryError as err:  # a last resort: the size limits above should keep every allocation small
        raise FileFormatError(f"{name}: the file declares sizes too large to allocate ({err})") from err
    if not _codec_of(network).network:
        raise src.error(f"holds a {type(network).__name__}, not a network")
    unused = sorted(set(arrays) - src._used)
    if unused:  # e.g. a record edited to have fewer parts than its arrays
        raise FileFormatError(f"{name}: the file has arrays that no record reads: {', '.join(unused)}")
    return network


def _snn_version() -> str:
    from . import __version__  # at call time: the package sets it after importing this module

    return __version__


def _read_npz(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise FileFormatError(f"{path}: not an .npz file (not a zip archive, or a truncated one)")
        file.seek(0)
        try:
            with zipfile.ZipFile(file) as archive:
                for info in archive.infolist():
                    _check_entry(path, archive, info)
            file.seek(0)
            with np.load(file, allow_pickle=False) as npz:
                entries = {key: npz[key] for key in npz.files}
        except FileFormatError:
            raise
        except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error) as err:
            raise FileFormatError(f"{path}: a corrupted .npz file ({err})") from err
        except (NotImplementedError, RuntimeError) as err:  # an unknown compression, an encrypted entry
            raise FileFormatError(f"{path}: an .npz entry that cannot be read ({err})") from err
    for key, value in entries.items():
        if not isinstance(value, np.ndarray):
            raise FileFormatError(f"{path}: entry {key!r} is not a numpy array")
    return entries


_DEFLATE_RATIO = 1032  # the most deflate can compress: a larger declared size is a lie


def _check_entry(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse an entry whose declared sizes are not backed by its bytes,
    before anything is allocated for it: an uncompressed size beyond what its
    compressed bytes can hold, or an ``.npy`` header declaring more (or
    fewer) bytes than the entry holds; and arrays of Python objects."""
    if (
        info.compress_type != zipfile.ZIP_STORED
        and info.file_size > _DEFLATE_RATIO * info.compress_size + 1024
    ):
        raise FileFormatError(
            f"{path}: entry {info.filename!r} declares {info.file_size:,} bytes, more than its "
            f"{info.compress_size:,} compressed bytes can hold"
        )
    if not info.filename.endswith(".npy"):
        return
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise FileFormatError(
                f"{path}: entry {info.filename!r} is an .npy of version {version}, not 1.0 or 2.0"
            )
        header = member.tell()
    name = info.filename[: -len(".npy")]
    if dtype.hasobject:
        raise FileFormatError(f"{path}: array {name!r} holds Python objects ({dtype}); refused")
    expected = math.prod(shape) * dtype.itemsize
    if expected != info.file_size - header:
        raise FileFormatError(
            f"{path}: array {name!r} declares {dtype} of shape {shape} ({expected:,} bytes) but the file "
            f"holds {info.file_size - header:,} bytes of it"
        )


def _read_manifest(path: str, arrays: dict[str, np.ndarray]) -> dict:
    text = arrays.pop("manifest", None)
    if text is None or text.dtype.kind != "U" or text.ndim != 0:
        raise FileFormatError(f"{path}: not an snn network file (no JSON 'manifest' entry)")
    try:
        manifest = json.loads(str(text), parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{path}: the manifest is not valid JSON ({err})") from err
    except RecursionError as err:
        raise FileFormatError(f"{path}: the manifest nests deeper than {MAX_DEPTH} levels") from err
    except ValueError as err:  # a non-standard constant
        raise FileFormatError(f"{path}: the manifest is not valid JSON ({err})") from err
    if _depth(manifest) > MAX_DEPTH:
        raise FileFormatError(f"{path}: the manifest nests deeper than {MAX_DEPTH} levels")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise FileFormatError(f"{path}: not an snn network file (format {found!r}, expected {FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FileFormatError(f"{path}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise FileFormatError(
            f"{path}: written by snn {manifest.get('snn_version')} in format version {version}, newer than "
            f"this snn ({_snn_version()}) reads (up to {FORMAT_VERSION}); upgrade snn to load it"
        )
    if "network" not in manifest:
        raise FileFormatError(f"{path}: the manifest has no 'network' record")
    return manifest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (save writes no NaN or infinity)")


def _depth(value) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


# -- the built-in types ---------------------------------------------------------


def _network_to_record(network: Network, out: Writer) -> dict:
    return {
        "dtype": np.dtype(network.dtype).name,
        "layers": [out.part(f"layer{k}", layer) for k, layer in enumerate(network.layers)],
    }


def _network_from_record(src: Reader) -> Network:
    """Layer by layer; each layer's declared input size is checked against the
    previous layer's output before it is built (nothing is allocated for a
    size the file does not back)."""
    layers = []
    for k, record in enumerate(src["layers"]):
        n_in = _declared_n_in(record)
        if layers and n_in is not None and n_in != layers[-1].n_out:
            raise src.error(
                f"cannot rebuild the Network: layers do not chain: layer {k} takes {n_in} inputs but "
                f"layer {k - 1} gives {layers[-1].n_out} outputs"
            )
        layers.append(src.part(f"layer{k}", record))
    return Network(layers, dtype=src["dtype"])


def _declared_n_in(record) -> int | None:
    """The input size a layer record declares (``n_in`` or ``in_shape``), if well-formed."""
    if not isinstance(record, dict):
        return None
    if _KINDS["size"][0](record.get("n_in")):
        return record["n_in"]
    if _KINDS["shape3"][0](record.get("in_shape")):
        return math.prod(record["in_shape"])
    return None


def _neuron_to_record(neuron: Neuron, out: Writer) -> dict:
    """All fields of the (dataclass) neuron (``Neuron`` stores plain Python
    numbers, so JSON holds them exactly)."""
    record = {f.name: _python_scalar(getattr(neuron, f.name)) for f in dataclasses.fields(neuron)}
    if record["threshold"] == math.inf:
        record["threshold"] = "inf"  # JSON has no infinity
    return record


def _neuron_from_record(src: Reader) -> Neuron:
    values = {f.name: src[f.name] for f in dataclasses.fields(Neuron)}
    if values["threshold"] == "inf":
        values["threshold"] = math.inf
    return Neuron(**values)


def _python_scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def _common_to_record(layer, out: Writer, bias: np.ndarray) -> dict:
    """Fields and arrays every layer with neurons has; ``bias`` as its constructor takes it."""
    out.array("bias", bias)
    out.array("v_init", np.asarray(layer.v_init, np.float64))
    return {"mode": layer.mode, "name": layer.name, "neuron": out.part("neuron", layer.neuron)}


def _common_from_record(src: Reader) -> dict:
    """Keyword arguments of every layer constructor with neurons."""
    return {
        "neuron": src.part("neuron", src["neuron"]),
        "bias": src.array("bias", np.float64, 1),
        "v_init": src.array("v_init", np.float64, 1),
        "mode": src["mode"],
        "name": src["name"],
    }


def _bias_per_neuron(layer) -> np.ndarray:
    return np.asarray(layer.bias, np.float64)


def _linear_to_record(layer: Linear, out: Writer) -> dict:
    out.array("weight", layer.weight)
    return {
        "n_in": layer.n_in,
        "n_out": layer.n_out,
        **_common_to_record(layer, out, _bias_per_neuron(layer)),
    }


def _linear_from_record(src: Reader) -> Linear:
    return Linear(
        src["n_in"], src["n_out"], weight=src.array("weight", np.float32, 2), **_common_from_record(src)
    )


def _sparse_to_record(layer: SparseLinear, out: Writer) -> dict:
    out.array("rowptr", layer.rowptr)
    out.array("cols", layer.cols)
    out.array("weights", layer.weights)
    return {
        "n_in": layer.n_in,
        "n_out": layer.n_out,
        **_common_to_record(layer, out, _bias_per_neuron(layer)),
    }


def _sparse_from_record(src: Reader) -> SparseLinear:
    return SparseLinear(
        src["n_in"],
        src["n_out"],
        rowptr=src.array("rowptr", np.int64, 1),
        cols=src.array("cols", np.int32, 1),
        weights=src.array("weights", np.float32, 1),
        **_common_from_record(src),
    )


def _channel_bias(layer: Conv2d) -> np.ndarray:
    """The bias per output channel, the only form (besides a scalar) the
    convolution constructors take; refused if it varies within a channel."""
    bias = _bias_per_neuron(layer)
    per_channel = bias.reshape(layer.out_shape[0], -1)[:, 0]
    if np.repeat(per_channel, bias.size // per_channel.size).tobytes() != bias.tobytes():
        raise ValueError(
            f"cannot save {layer!r} exactly: its bias varies within an output channel, "
            "and a convolution is built from one bias per channel"
        )
    return per_channel


def _window(layer: Conv2d) -> dict:
    kh, kw, sy, sx, py, px, dy, dx = (int(g) for g in layer.geom[6:14])
    return {
        "in_shape": list(layer.in_shape),
        "kernel_size": [kh, kw],
        "stride": [sy, sx],
        "padding": [py, px],
        "dilation": [dy, dx],
    }


def _window_from_record(src: Reader) -> dict:
    return {"stride": src["stride"], "padding": src["padding"], "dilation": src["dilation"]}


def _conv_to_record(layer: Conv2d, out: Writer) -> dict:
    out.array("weight", layer.weight)
    return {
        **_window(layer),
        "out_channels": layer.out_shape[0],
        "groups": int(layer.geom[14]),
        **_common_to_record(layer, out, _channel_bias(layer)),
    }


def _conv_from_record(src: Reader) -> Conv2d:
    return Conv2d(
        src["in_shape"],
        src["out_channels"],
        src["kernel_size"],
        groups=src["groups"],
        weight=src.array("weight", np.float32, 4),
        **_window_from_record(src),
        **_common_from_record(src),
    )


def _avgpool_to_record(layer: AvgPool2d, out: Writer) -> dict:
    """Its weights (``1 / (kh * kw)``) and groups (one per channel) follow from the window."""
    return {**_window(layer), **_common_to_record(layer, out, _channel_bias(layer))}


def _avgpool_from_record(src: Reader) -> AvgPool2d:
    return AvgPool2d(
        src["in_shape"], src["kernel_size"], **_window_from_record(src), **_common_from_record(src)
    )


def _maxpool_to_record(layer: MaxPool2d, out: Writer) -> dict:
    """The window of a square kernel with stride = kernel and no padding as
    one int, the record readers before stride and padding read; any other
    window as pairs, with ``stride`` and ``padding``: such a reader refuses
    it (``kernel_size`` is not an int) instead of ignoring the two fields."""
    (kh, kw), stride, padding = layer.kernel_size, layer.stride, layer.padding
    record = {"in_shape": list(layer.in_shape), "kernel_size": kh, "name": layer.name}
    if kh != kw or stride != (kh, kw) or padding != (0, 0):
        record.update(kernel_size=[kh, kw], stride=list(stride), padding=list(padding))
    return record


def _maxpool_from_record(src: Reader) -> MaxPool2d:
    """Without ``stride`` and ``padding`` (older files): stride = kernel, no padding."""
    return MaxPool2d(
        src["in_shape"],
        src["kernel_size"],
        src.record.get("stride"),
        src.record.get("padding", 0),
        name=src["name"],
    )


# -- graphs ---------------------------------------------------------------------


def _graph_to_record(graph: Graph, out: Writer) -> dict:
    """The graph's populations, projections (delay groups as they are) and
    Poisson sources, in order. Arrays are written as they are, views
    included (after a run, a projection's arrays are views into the compiled
    plan's): nothing per synapse is copied or looped over in Python."""
    populations = []
    for k, pop in enumerate(graph.populations):
        record = {"name": pop.name, "n": pop.n, "neuron": None}
        if pop.shape is not None:
            record["shape"] = list(pop.shape)
        if pop.pool is not None:  # a max-pool gate: its source and windows
            (source,) = (p.source.name for p in graph.projections if p.target is pop)
            record["pool"] = {
                "source": source,
                "kernel_size": list(pop.pool.kernel_size),
                "stride": list(pop.pool.stride),
                "padding": list(pop.pool.padding),
            }
        if pop.has_neurons:
            sub = out.child(f"population{k}")
            sub.array("bias", np.asarray(pop.bias, np.float64))
            sub.array("v_init", np.asarray(pop.v_init, np.float64))
            record["neuron"] = sub.part("neuron", pop.neuron)
            record["mode"] = pop.mode
        populations.append(record)
    projections = []
    for k, proj in enumerate(graph.projections):
        sub = out.child(f"projection{k}")
        if proj.kind == "maxpool":  # made with its gate (see the gate's "pool")
            projections.append(
                {"kind": "maxpool", "name": proj.name, "source": proj.source.name, "target": proj.target.name}
            )
            continue
        if proj.kind == "conv":
            projections.append(_conv_projection_to_record(proj, sub))
            continue
        if proj.rows is not None:  # fully connected: its rows, not a CSR of every pair
            sub.array("rows", proj.rows)
            projections.append(
                {
                    "kind": "all",
                    "name": proj.name,
                    "source": proj.source.name,
                    "target": proj.target.name,
                    "weight": None,
                    "delays": [int(d) for d in proj.delays],
                }
            )
            continue
        for g, (_, rowptr, cols, weights) in enumerate(proj.groups):
            sub.array(f"group{g}.rowptr", rowptr)
            sub.array(f"group{g}.cols", cols)
            if weights is not None:
                sub.array(f"group{g}.weights", weights)
        projections.append(
            {
                "name": proj.name,
                "source": proj.source.name,
                "target": proj.target.name,
                "weight": proj.weight,
                "delays": [int(d) for d in proj.delays],
            }
        )
    sources = [
        {"target": s.target.name, "n_trains": s.n_trains, "rate": s.rate, "weight": s.weight}
        for s in graph.sources
    ]
    return {
        "dt": graph.dt,
        "dtype": np.dtype(graph.dtype).name,
        "populations": populations,
        "projections": projections,
        "sources": sources,
    }


def _graph_from_record(src: Reader) -> Graph:
    graph = Graph(src["dt"], src["dtype"])
    for k, record in enumerate(src.list_field("populations")):
        sub = src.child(f"population{k}", record).check(_POPULATION)
        n, name = sub["n"], sub["name"]
        shape = sub.record.get("shape")
        if shape is not None:
            if int(np.prod(shape)) != n:
                raise sub.error(f"its shape {shape} does not hold its {n} neurons")
            n = tuple(shape)
        neuron = None if sub["neuron"] is None else sub.part("neuron", sub["neuron"])
        state = (
            {}
            if neuron is None
            else {
                "bias": sub.array("bias", np.float64, 1),
                "v_init": sub.array("v_init", np.float64, 1),
                "mode": sub["mode"],
            }
        )
        try:
            if "pool" in sub.record:
                pool = sub.child("pool", sub["pool"]).check(_POOL)
                source = _population(graph, pool, "source")
                graph.max_pool(source, pool["kernel_size"], pool["stride"], pool["padding"], name=name)
                if graph[name].n != sub["n"] or list(graph[name].shape) != sub.record.get("shape"):
                    raise ValueError(f"its windows give {graph[name].shape}, not {sub.record.get('shape')}")
            elif neuron is None:
                graph.input(n, name=name)
            else:
                graph.population(n, neuron, name=name, **state)
        except (TypeError, ValueError) as err:
            raise sub.error(f"cannot rebuild the population: {err}") from err
    in_order = []  # the projections in the record's order (a gate's is made with the gate)
    for k, record in enumerate(src.list_field("projections")):
        sub = src.child(f"projection{k}", record).check(_PROJECTION)
        source, target = (_population(graph, sub, role) for role in ("source", "target"))
        if sub.record.get("kind", "csr") == "maxpool":  # made with its gate: check it is that one
            made = [p for p in graph.projections if p.kind == "maxpool" and p.target is target]
            if not made or made[0].source is not source:
                raise sub.error(
                    f"a max-pool projection must join a gate's source to the gate {target.name!r}"
                )
            in_order.append(made[0])
            continue
        if sub.record.get("kind", "csr") == "conv":
            _conv_projection_from_record(graph, sub, source, target)
            in_order.append(graph.projections[-1])
            continue
        if sub.record.get("kind", "csr") == "all":
            rows, delays = sub.array("rows", np.float32, 2), sub.list_field("delays")
            if rows.shape != (source.n, target.n) or len(delays) != 1 or not isinstance(delays[0], int):
                raise sub.error(
                    f"a fully connected projection needs rows [{source.n}, {target.n}] and one delay, got "
                    f"{rows.shape} and {delays!r}"
                )
            try:
                graph.connect(
                    source,
                    target,
                    rows.T,
                    connectivity="all",
                    delay=delays[0],
                    name=_free(graph, sub["name"]),
                )
            except (TypeError, ValueError) as err:
                raise sub.error(f"cannot rebuild the projection: {err}") from err
            in_order.append(graph.projections[-1])
            continue
        rowptr, cols, weights, delay = _merged_groups(sub, source.n)
        try:
            graph.connect(
                source,
                target,
                sub["weight"] if weights is None else weights,
                connectivity=(rowptr, cols),
                delay=delay,
                name=_free(graph, sub["name"]),
            )
        except (TypeError, ValueError) as err:
            raise sub.error(f"cannot rebuild the projection: {err}") from err
        in_order.append(graph.projections[-1])
    if len(in_order) != len(graph.projections):
        raise src.error("a max-pool gate's projection is missing from its projections")
    graph.projections[:] = in_order
    for k, record in enumerate(src.list_field("sources")):
        sub = src.child(f"source{k}", record).check(_SOURCE)
        target, n_trains, rate, weight = (
            _population(graph, sub, "target"),
            sub["n_trains"],
            sub["rate"],
            sub["weight"],
        )
        try:
            graph.poisson_input(target, n_trains, rate, weight)
        except (TypeError, ValueError) as err:
            raise sub.error(f"cannot rebuild the Poisson source: {err}") from err
    return graph


def _conv_projection_to_record(proj, out: Writer) -> dict:
    kh, kw, sy, sx, py, px, dy, dx = (int(g) for g in proj.geom[6:14])
    out.array("kernel", proj.kernel)
    return {
        "kind": "conv",
        "name": proj.name,
        "source": proj.source.name,
        "target": proj.target.name,
        "delays": [proj.delay],
        "kernel_size": [kh, kw],
        "stride": [sy, sx],
        "padding": [py, px],
        "dilation": [dy, dx],
        "groups": int(proj.geom[14]),
    }


def _conv_projection_from_record(graph: Graph, src: Reader, source, target) -> None:
    delays = src.list_field("delays")
    if len(delays) != 1:
        raise src.error(f"a convolution has one delay, got {delays!r}")
    kernel = src.array("kernel", np.float32, 4)
    if list(kernel.shape[2:]) != src["kernel_size"]:
        raise src.error(f"its kernel {kernel.shape} does not match kernel_size {src['kernel_size']}")
    try:
        graph.conv(
            source,
            target,
            kernel,
            stride=src["stride"],
            padding=src["padding"],
            dilation=src["dilation"],
            groups=src["groups"],
            delay=delays[0],
            name=_free(graph, src["name"]),
        )
    except (TypeError, ValueError) as err:
        raise src.error(f"cannot rebuild the convolution: {err}") from err


def _population(graph: Graph, src: Reader, role: str):
    name = src[role]
    found = [p for p in graph.populations if p.name == name]
    if not found:
        raise src.error(
            f"its {role} names an unknown population {name!r} "
            f"(the graph has {[p.name for p in graph.populations]})"
        )
    return found[0]


def _merged_groups(src: Reader, n_source: int):
    """A projection's delay groups merged into one CSR ``(rowptr, cols,
    weights or None, delay)``, ``delay`` a scalar for a single group, else one
    per synapse; per presynaptic neuron, group 0's synapses come first, then
    group 1's..., so ``connect`` splits them back into the same groups."""
    delays = src.list_field("delays")
    if not delays or any(isinstance(d, bool) or not isinstance(d, int) for d in delays):
        raise src.error(f"delays must be a non-empty list of integers (one per group), got {delays!r}")
    if any(a >= b for a, b in itertools.pairwise(delays)):
        raise src.error(f"delays must be strictly increasing (one group per distinct delay), got {delays}")
    shared = src["weight"] is not None
    groups = []
    for g in range(len(delays)):
        rowptr = src.array(f"group{g}.rowptr", np.int64, 1)
        cols = src.array(f"group{g}.cols", np.int32, 1)
        weights = None if shared else src.array(f"group{g}.weights", np.float32, 1)
        where = f"group {g} (delay {delays[g]})"
        if (
            rowptr.shape != (n_source + 1,)
            or rowptr[0] != 0
            or np.any(np.diff(rowptr) < 0)
            or rowptr[-1] != len(cols)
        ):
            raise src.error(
                f"{where}: rowptr must be non-decreasing offsets [n_source + 1 = {n_source + 1}] "
                f"from 0 to len(cols) = {len(cols)}"
            )
        if weights is not None and weights.shape != cols.shape:
            raise src.error(f"{where}: weights has shape {weights.shape}, cols {cols.shape}")
        if len(delays) > 1 and not len(cols):
            raise src.error(f"{where} has no synapses: a projection has one group per delay it uses")
        groups.append((delays[g], rowptr, cols, weights))
    if len(groups) == 1:
        return groups[0][1], groups[0][2], groups[0][3], delays[0]
    rowptr = np.sum([r for _, r, _, _ in groups], axis=0, dtype=np.int64)
    n_syn = int(rowptr[-1])
    cols = np.empty(n_syn, np.int32)
    weights = None if shared else np.empty(n_syn, np.float32)
    delay = np.empty(n_syn, np.int64)
    start = rowptr[:-1].copy()  # where the next group's synapses of each row go
    for d, group_rowptr, group_cols, group_weights in groups:
        counts = np.diff(group_rowptr)
        dest = np.repeat(start - group_rowptr[:-1], counts) + np.arange(len(group_cols), dtype=np.int64)
        cols[dest] = group_cols
        if weights is not None:
            weights[dest] = group_weights
        delay[dest] = d
        start += counts
    return rowptr, cols, weights, delay


# -- the schemas of the built-in records -----------------------------------------

_NAME = ("str", "null")
_COMMON = {"mode": "str", "name": _NAME, "neuron": "object"}
_WINDOW = {
    "in_shape": "shape3",
    "kernel_size": "pair",
    "stride": "pair",
    "padding": "pair",
    "dilation": "pair",
}
_POPULATION = {
    "name": _NAME,
    "n": "size",
    "neuron": ("object", "null"),
    "mode": "str",
    "shape": "shape3",
    "pool": "object",
}
_POOL = {"source": "str", "kernel_size": "pair", "stride": "pair", "padding": "pair"}
_PROJECTION = {
    "name": _NAME,
    "source": "str",
    "target": "str",
    "weight": ("number", "null"),
    "delays": "list",
    "kind": "str",  # "conv" a convolution (with the window fields below), "all" fully connected; absent: CSR
    "kernel_size": "pair",
    "stride": "pair",
    "padding": "pair",
    "dilation": "pair",
    "groups": "size",
}
_SOURCE = {"target": "str", "n_trains": "size", "rate": "number", "weight": "number"}

register(
    Network, _network_to_record, _network_from_record, network=True, fields={"dtype": "str", "layers": "list"}
)
register(
    Neuron,
    _neuron_to_record,
    _neuron_from_record,
    fields={
        "beta": "number",
        "alpha": ("number", "null"),
        "threshold": ("number", "str"),
        "reset": "str",
        "v_reset": "number",
        "refractory": "int",
        "name": _NAME,
    },
)
register(Linear, _linear_to_record, _linear_from_record, fields={"n_in": "size", "n_out": "size", **_COMMON})
register(
    SparseLinear, _sparse_to_record, _sparse_from_record, fields={"n_in": "size", "n_out": "size", **_COMMON}
)
register(
    Conv2d,
    _conv_to_record,
    _conv_from_record,
    fields={**_WINDOW, "out_channels": "size", "groups": "size", **_COMMON},
)
register(AvgPool2d, _avgpool_to_record, _avgpool_from_record, fields={**_WINDOW, **_COMMON})
register(
    MaxPool2d,
    _maxpool_to_record,
    _maxpool_from_record,
    fields={
        "in_shape": "shape3",
        "kernel_size": ("size", "pair"),
        "stride": "pair",
        "padding": "pair",
        "name": _NAME,
    },
)
register(
    Graph,
    _graph_to_record,
    _graph_from_record,
    network=True,
    fields={"dt": "number", "dtype": "str", "populations": "list", "projections": "list", "sources": "list"},
)


def _free(graph, name):
    """A saved projection's name, or None (a default name, made unique) if
    the graph has one of that name: files saved before projection names had
    to be unique may hold the same default name twice."""
    return None if any(p.name == name for p in graph.projections) else name
