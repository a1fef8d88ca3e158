"""util.py -- what the oracle scripts share: safetensors files read and
written in plain Python (byte for byte as the safetensors package writes
them, so compare.py and model_files.py need neither torch nor numpy), the
repository's paths and the versions a script ran with."""
import importlib.metadata
import json
import os
import platform
import struct

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(TOP, "data")
TESTDATA = os.path.join(TOP, "tests", "data")

# safetensors lays tensors out by dtype (this order, last first), then by name.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
               "I32", "U32", "F32", "F64", "I64", "U64"]
# struct formats of the dtypes compare.py reads as numbers
FORMATS = {"BOOL": "?", "U8": "B", "I8": "b", "I16": "h", "U16": "H", "I32": "i", "U32": "I",
           "I64": "q", "U64": "Q", "F16": "e", "F32": "f", "F64": "d"}
SIZES = {"BF16": 2, **{k: struct.calcsize("<" + v) for k, v in FORMATS.items()}}


def st_load(path):
    """{name: (dtype, shape, raw bytes)} and the __metadata__ (or None)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        tensors[name] = (t["dtype"], list(t["shape"]), data[base + begin:base + end])
    return tensors, meta


def st_dump(tensors, metadata=None):
    """The bytes of a safetensors file of {name: (dtype, shape, raw bytes)}."""
    names = sorted(tensors, key=lambda n: (-DTYPE_ORDER.index(tensors[n][0]), n))
    header = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for n in names:
        dtype, shape, raw = tensors[n]
        header[n] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(tensors[n][2] for n in names)


def values(dtype, raw):
    """The elements of a tensor as Python numbers (BF16 widened to float)."""
    if dtype == "BF16":
        return [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
    return list(struct.unpack("<%d%s" % (len(raw) // SIZES[dtype], FORMATS[dtype]), raw))


def write_text(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def versions():
    """"python 3.12.3, torch 2.11.0, ..." for the packages the oracles use."""
    out = ["python " + platform.python_version()]
    for pkg in ("torch", "transformers", "tokenizers", "safetensors"):
        try:
            out.append(pkg + " " + importlib.metadata.version(pkg))
        except importlib.metadata.PackageNotFoundError:
            out.append(pkg + " (not installed)")
    return ", ".join(out)
