"""Fuzzing the two loaders that read untrusted files: ``golden.load_model`` and ``golden.datasets.load``.

Property (design.md, "The integer model" and "Bad input"): a loader either returns what it documents
(a fully valid ``golden.Model``; integer arrays of the documented shapes and ranges) or raises its own
error type (``ModelError`` / ``DatasetError``). No other exception type may leak, whatever the bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import golden
from golden import Dense, Model, ModelError
from golden.datasets import DatasetError
from golden.model import CODING_ENCODINGS, CODING_READOUTS, CODINGS, signed_bits

def fuzz(n: int) -> settings:
    """Bounded, reproducible (derandomized, no example database) fuzzing with ``n`` examples."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ARRAYS = ("weight", "bias", "threshold", "v_init", "h")


# ------------------------------------------------------------------------------------------------
# model files


def _models() -> dict[str, Model]:
    rng = np.random.default_rng(7)
    w0, w1 = rng.integers(-20, 20, (5, 4)), rng.integers(-20, 20, (3, 5))
    return {
        "rate": Model([Dense(w0, 1, 40, -2), Dense(w1, 0, 30, 0)], T=4, input_max=16),
        "stcb": Model([Dense(w0, 0, 40, 0, h=[2, -1]), Dense(w1, 0, 30, 0, h=[1])], coding="stcb", T=4,
                      encoding="direct", input_max=16, readout="membrane"),
        "tsc": Model([Dense(w0, 3, 40, 0), Dense(w1, 0, 30, 0)], coding="tsc", T=5, encoding="tsc",
                     input_max=16, readout="membrane"),
    }


MODELS = _models()


@pytest.fixture(scope="module")
def work():
    d = Path(tempfile.mkdtemp(prefix="fuzz-loaders-"))
    good = {}
    for name, m in MODELS.items():
        golden.save_model(m, d / f"{name}.npz")
        good[name] = (d / f"{name}.npz").read_bytes()
    yield d, good
    shutil.rmtree(d, ignore_errors=True)


def entries(model_bytes: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(model_bytes), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compressed: bool = False) -> Path:
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_model(path: Path, files: dict, compressed: bool = False) -> Path:
    return write_zip(path, {f"{k}.npy": npy_bytes(v) for k, v in files.items()}, compressed)


def py_widths_ok(m: Model) -> None:
    """Independent width analysis in Python integers (docs/spec.md section 1): the declared v_bits
    holds every accumulator and membrane value, and every stored value."""
    lo_lim, hi_lim = -(1 << (m.v_bits - 1)), (1 << (m.v_bits - 1)) - 1
    for i, l in enumerate(m.layers):
        W = l.weight.astype(object)
        for name in ("bias", "threshold", "v_init"):
            vals = [int(v) for v in getattr(l, name)]
            assert all(lo_lim <= v <= hi_lim for v in vals), f"layer {i} {name} outside v_bits={m.v_bits}"
        if m.coding == "tsc":
            Q = m.T - 1
            for j in range(l.n_out):
                neg = sum(min(int(w), 0) for w in W[j]); pos = sum(max(int(w), 0) for w in W[j])
                b, th = int(l.bias[j]), int(l.threshold[j])
                hi = max(b + Q * pos, Q * th, b, pos); lo = min(b + Q * neg, b, neg, -1, -th)
                assert signed_bits(lo, hi) <= m.v_bits
            continue
        smax = m.input_max if (i == 0 and m.encoding == "direct") else 1
        h = [int(v) for v in l.h]
        for j in range(l.n_out):
            acc_lo = smax * sum(min(int(w), 0) for w in W[j]); acc_hi = smax * sum(max(int(w), 0) for w in W[j])
            b, th, v0 = int(l.bias[j]), int(l.threshold[j]), int(l.v_init[j])
            c_lo, c_hi = acc_lo + b, acc_hi + b
            if len(h) > 1 or h[0] != 1:
                c_lo, c_hi = (sum(min(k * c_lo, k * c_hi) for k in h), sum(max(k * c_lo, k * c_hi) for k in h))
            v_hi = max(max(v0, 0) + m.T * max(c_hi, 0), th, b, c_hi)
            v_lo = min(min(v0, 0) + m.T * min(c_lo, 0), b, c_lo, -th)
            assert signed_bits(v_lo, v_hi) <= m.v_bits, f"layer {i} neuron {j} needs more than v_bits={m.v_bits}"


def assert_valid(m: Model, tmp: Path) -> None:
    assert type(m) is Model
    assert m.coding in CODINGS and m.encoding in CODING_ENCODINGS[m.coding] and m.readout in CODING_READOUTS[m.coding]
    for v, lo, hi in ((m.T, 1, 1024), (m.input_max, 1, 65535), (m.weight_bits, 2, 16), (m.v_bits, 2, 48)):
        assert type(v) is int and lo <= v <= hi
    wlo, whi = -(1 << (m.weight_bits - 1)), (1 << (m.weight_bits - 1)) - 1
    for i, l in enumerate(m.layers):
        for name in ARRAYS:
            assert getattr(l, name).dtype == np.int64
        assert l.weight.ndim == 2 and l.bias.shape == l.threshold.shape == l.v_init.shape == (l.n_out,)
        assert (l.threshold > 0).all() and l.weight.min() >= wlo and l.weight.max() <= whi
        assert 1 <= len(l.h) <= 16
        if i:
            assert l.n_in == m.layers[i - 1].n_out
    py_widths_ok(m)
    golden.save_model(m, tmp / "roundtrip.npz")
    assert golden.load_model(tmp / "roundtrip.npz") == m


def check(path: Path, tmp: Path) -> str:
    """The property. Anything but a valid Model or a ModelError propagates and fails the test."""
    try:
        m = golden.load_model(path)
    except ModelError as e:
        assert str(e) and "\n" not in str(e).strip()
        return "rejected"
    assert_valid(m, tmp)
    return "loaded"


def test_good_files_load(work):
    d, good = work
    for name in MODELS:
        assert check(d / f"{name}.npz", d) == "loaded"


def test_every_truncation_is_rejected(work):
    """Every prefix length of a stored model file (one model; the others via hypothesis below)."""
    d, good = work
    data = good["stcb"]
    for n in range(len(data)):
        (d / "trunc.npz").write_bytes(data[:n])
        assert check(d / "trunc.npz", d) == "rejected", n


@fuzz(150)
@given(which=st.sampled_from(sorted(MODELS)), compressed=st.booleans(), data=st.data())
def test_truncated_compressed(work, which, compressed, data):
    d, good = work
    raw = good[which]
    if compressed:
        write_model(d / "c.npz", entries(raw), compressed=True)
        raw = (d / "c.npz").read_bytes()
    n = data.draw(st.integers(0, len(raw) - 1))
    (d / "t.npz").write_bytes(raw[:n])
    check(d / "t.npz", d)


@fuzz(300)
@given(which=st.sampled_from(sorted(MODELS)), compressed=st.booleans(), data=st.data())
def test_byte_flips(work, which, compressed, data):
    d, good = work
    raw = good[which]
    if compressed:
        write_model(d / "c.npz", entries(raw), compressed=True)
        raw = (d / "c.npz").read_bytes()
    buf = bytearray(raw)
    for pos, x in data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(1, 255)), min_size=1,
                                     max_size=8)):
        buf[pos] ^= x
    (d / "f.npz").write_bytes(bytes(buf))
    check(d / "f.npz", d)


def _wrong_dtype_array(shape, kind, draw):
    if kind == "float":
        vals = draw(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-50, 50).map(float)),
                             min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        with np.errstate(over="ignore"):
            return np.array(vals, dtype=draw(st.sampled_from([np.float16, np.float32, np.float64]))).reshape(shape)
    if kind == "bool":
        return np.ones(shape, dtype=bool)
    if kind == "complex":
        return np.full(shape, 1 + 2j)
    if kind == "str":
        return np.full(shape, "7")
    if kind == "bytes":
        return np.full(shape, b"7")
    if kind == "datetime":
        return np.full(shape, np.datetime64("2020-01-01"))
    if kind == "timedelta":
        return np.full(shape, np.timedelta64(3, "s"))
    if kind == "void":
        return np.zeros(shape, dtype=[("a", "<i8")])
    return np.full(shape, 7, dtype=object)   # object: written with pickle; the loader must refuse it


@fuzz(200)
@given(which=st.sampled_from(sorted(MODELS)), layer=st.integers(0, 1), name=st.sampled_from(ARRAYS),
       kind=st.sampled_from(["float", "bool", "complex", "str", "bytes", "datetime", "timedelta", "void", "object"]),
       data=st.data())
def test_wrong_dtypes_nan_inf(work, which, layer, name, kind, data):
    d, good = work
    files = entries(good[which])
    key = f"layer{layer}.{name}"
    shape = files[key].shape if key in files else (1,)
    files[key] = _wrong_dtype_array(shape, kind, data.draw)
    write_model(d / "dt.npz", files)
    assert check(d / "dt.npz", d) == "rejected"


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def int_array(draw, shape):
    dt = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dt)
    elem = st.one_of(st.integers(-40, 40), st.integers(int(info.min), int(info.max)),
                     st.sampled_from([int(info.min), int(info.max), 0, 1, -1]))
    vals = draw(st.lists(elem, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    vals = [min(max(v, int(info.min)), int(info.max)) for v in vals]
    return np.array(vals, dtype=dt).reshape(shape)


@fuzz(250)
@given(which=st.sampled_from(sorted(MODELS)), data=st.data())
def test_random_integer_values(work, which, data):
    """Same shapes, random integer values of every dtype, including int64/uint64 extremes (overflow)."""
    d, good = work
    files = entries(good[which])
    for key in data.draw(st.lists(st.sampled_from(sorted(k for k in files if k != "meta")), min_size=1, max_size=4)):
        files[key] = data.draw(int_array(files[key].shape))
    write_model(d / "iv.npz", files)
    check(d / "iv.npz", d)


def forged_npy(shape, descr="<i8", payload=b"\0" * 64, version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    hdr = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    (np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0)(buf, hdr)
    return buf.getvalue() + payload


@fuzz(150)
@given(which=st.sampled_from(sorted(MODELS)), key=st.sampled_from(["layer0.weight", "layer1.bias", "layer0.h", "meta"]),
       shape=st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2 ** 62)), min_size=0, max_size=4),
       descr=st.sampled_from(["<i8", "<i2", "|u1", ">i4", "<f8", "|b1"]), payload=st.binary(max_size=200),
       version=st.sampled_from([(1, 0), (2, 0)]))
def test_forged_headers_huge_shapes(work, which, key, shape, descr, payload, version):
    """.npy headers that claim huge (or merely different) shapes must not allocate, and must not leak MemoryError."""
    d, good = work
    members = {f"{k}.npy": npy_bytes(v) for k, v in entries(good[which]).items()}
    members[f"{key}.npy"] = forged_npy(shape, descr, payload, version)
    write_zip(d / "hs.npz", members)
    check(d / "hs.npz", d)


@fuzz(150)
@given(which=st.sampled_from(sorted(MODELS)), layer=st.integers(0, 2), n_in=st.integers(0, 12), n_out=st.integers(0, 12),
       big=st.sampled_from([0, 10 ** 6, 2 ** 31, 2 ** 63, 10 ** 30]), data=st.data())
def test_mismatched_shapes_and_huge_metadata(work, which, layer, n_in, n_out, big, data):
    d, good = work
    files = entries(good[which])
    meta = json.loads(str(files["meta"]))
    what = data.draw(st.sampled_from(["weight", "bias", "meta_n_in", "meta_n_out", "extra_layer", "drop"]))
    if what == "weight":
        files[f"layer{layer}.weight"] = np.ones((n_out, n_in), dtype=np.int64)
    elif what == "bias":
        files[f"layer{min(layer, 1)}.bias"] = np.ones(n_out, dtype=np.int64)
    elif what.startswith("meta"):
        meta["layers"][min(layer, 1)][what[5:]] = big or n_in
    elif what == "extra_layer":
        meta["layers"].append({"n_in": meta["layers"][-1]["n_out"], "n_out": big or n_out})
    else:
        files.pop(data.draw(st.sampled_from(sorted(files))))
    files["meta"] = np.array(json.dumps(meta))
    write_model(d / "ms.npz", files)
    check(d / "ms.npz", d)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2 ** 70, 2 ** 70),
                      st.sampled_from([10 ** 30, -(10 ** 30), 0, -1, 1, 2, 8, 16, 48, 49, 1024, 1025, 65535, 65536]),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                      st.sampled_from(["rate", "stcb", "tsc", "direct", "count", "membrane", "1", "8", ""]))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                        st.dictionaries(st.text(max_size=6), c, max_size=3)),
                          max_leaves=8)
META_KEYS = ("schema", "format", "coding", "T", "encoding", "input_max", "readout", "weight_bits", "v_bits", "layers")


@fuzz(250)
@given(which=st.sampled_from(sorted(MODELS)), data=st.data())
def test_metadata_fields(work, which, data):
    """Valid files whose metadata has random values (right and wrong types, huge ints, random names)."""
    d, good = work
    files = entries(good[which])
    meta = json.loads(str(files["meta"]))
    for k in data.draw(st.lists(st.sampled_from(META_KEYS), min_size=1, max_size=4, unique=True)):
        action = data.draw(st.sampled_from(["replace", "replace", "replace", "delete"]))
        if action == "delete":
            meta.pop(k)
        else:
            meta[k] = data.draw(json_value)
    if data.draw(st.booleans()):
        meta[data.draw(st.text(max_size=8))] = data.draw(json_value)
    files["meta"] = np.array(json.dumps(meta))
    write_model(d / "md.npz", files)
    check(d / "md.npz", d)


def as_schema1(files: dict) -> dict:
    """A dense model's entries in the schema-1 layout: no input_shape, layers {"n_in", "n_out"}."""
    meta = json.loads(str(files["meta"]))
    meta["schema"] = 1
    del meta["input_shape"]
    meta["layers"] = [{"n_in": l["n_in"], "n_out": l["n_out"]} for l in meta["layers"]]
    return {**files, "meta": np.array(json.dumps(meta))}


@fuzz(150)
@given(which=st.sampled_from(sorted(MODELS)), layout=st.sampled_from([1, 2]), schema=json_value)
def test_schema_versions(work, which, layout, schema):
    """A file loads only under the schema its layout is written in (2: what save_model writes)."""
    d, good = work
    files = entries(good[which])
    if layout == 1:
        files = as_schema1(files)
        assert golden.load_model(write_model(d / "s1.npz", files)) == MODELS[which]
    meta = json.loads(str(files["meta"]))
    meta["schema"] = schema
    files["meta"] = np.array(json.dumps(meta))
    write_model(d / "sv.npz", files)
    assert check(d / "sv.npz", d) == ("loaded" if type(schema) is int and schema == layout else "rejected")


@fuzz(150)
@given(meta=st.one_of(json_value, st.text(max_size=30).map(lambda s: ("raw", s)),
                      st.integers(1, 3000).map(lambda n: ("deep", n))),
       as_array=st.sampled_from(["0d-str", "1d-str", "bytes", "int", "raw-member"]))
def test_metadata_not_an_object(work, meta, as_array):
    d, good = work
    files = entries(good["rate"])
    if isinstance(meta, tuple) and meta[0] == "raw":
        text = meta[1]
    elif isinstance(meta, tuple):
        text = "[" * meta[1] + "]" * meta[1]
    else:
        text = json.dumps(meta)
    members = {f"{k}.npy": npy_bytes(v) for k, v in files.items() if k != "meta"}
    if as_array == "0d-str":
        members["meta.npy"] = npy_bytes(np.array(text))
    elif as_array == "1d-str":
        members["meta.npy"] = npy_bytes(np.array([text]))
    elif as_array == "bytes":
        members["meta.npy"] = npy_bytes(np.array(text.encode("utf-8", "surrogatepass")))
    elif as_array == "int":
        members["meta.npy"] = npy_bytes(np.array(len(text)))
    else:
        members["meta"] = text.encode("utf-8", "surrogatepass")   # a zip member that is not .npy
    write_zip(d / "mo.npz", members)
    assert check(d / "mo.npz", d) == "rejected"


@fuzz(150)
@given(names=st.lists(st.one_of(st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=12),
                                st.sampled_from(["meta", "layer0.weight", "layer0.bias", "layer1.weight", "weights",
                                                 "arr_0", "layer0.weight.npy"])),
                      min_size=0, max_size=6, unique=True),
       suffix=st.sampled_from([".npy", ".npy", "", ".txt"]), data=st.data())
def test_valid_npz_but_not_ours(work, names, suffix, data):
    d, good = work
    members = {}
    for n in names:
        arr = data.draw(st.one_of(st.just(np.arange(6).reshape(2, 3)), st.just(np.array("{}")),
                                  st.just(np.array(json.dumps({"schema": 1, "format": "spikeforge-integer-model"}))),
                                  st.just(np.zeros(0)), st.just(np.array(3.5))))
        members[n + suffix] = npy_bytes(arr)
    write_zip(d / "no.npz", members, compressed=data.draw(st.booleans()))
    assert check(d / "no.npz", d) == "rejected"


def test_zip_oddities(work):
    """Encrypted-flagged, unknown compression method, duplicate names, a directory, a missing file."""
    d, good = work
    files = entries(good["rate"])
    base = {f"{k}.npy": npy_bytes(v) for k, v in files.items()}
    raw = bytearray(write_zip(d / "z.npz", base).read_bytes())
    cases = {}
    enc = bytearray(raw)                      # set the "encrypted" flag bit in every header
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        i = enc.find(sig)
        while i >= 0:
            off = 6 if sig == b"PK\x03\x04" else 8
            enc[i + off] |= 1
            i = enc.find(sig, i + 4)
    cases["encrypted"] = bytes(enc)
    meth = bytearray(raw)                     # compression method 99 (AES) everywhere
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = meth.find(sig)
        while i >= 0:
            meth[i + off:i + off + 2] = (99).to_bytes(2, "little")
            i = meth.find(sig, i + 4)
    cases["method99"] = bytes(meth)
    for name, blob in cases.items():
        (d / f"{name}.npz").write_bytes(blob)
        assert check(d / f"{name}.npz", d) == "rejected", name
    with zipfile.ZipFile(d / "dup.npz", "w") as zf:
        for k, v in base.items():
            zf.writestr(k, v)
        with pytest.warns(UserWarning):
            zf.writestr("layer0.bias.npy", base["layer0.bias.npy"])
    assert check(d / "dup.npz", d) == "rejected"
    assert check(d, d) == "rejected"
    assert check(d / "missing.npz", d) == "rejected"


def test_regressions_found_by_fuzzing(work):
    """Each of these leaked a non-ModelError exception or loaded an invalid model before the fix."""
    d, good = work
    files = entries(good["rate"])
    # a zip member without .npy: np.load handed back bytes -> AttributeError
    members = {f"{k}.npy": npy_bytes(v) for k, v in files.items() if k != "meta"}
    members["meta"] = b'{"schema": 1}'
    write_zip(d / "r1.npz", members)
    with pytest.raises(ModelError, match="unexpected entry 'meta'"):
        golden.load_model(d / "r1.npz")
    # deeply nested JSON -> RecursionError
    write_model(d / "r2.npz", {**files, "meta": np.array("[" * 100000 + "]" * 100000)})
    with pytest.raises(ModelError, match="nested too deeply"):
        golden.load_model(d / "r2.npz")
    # a header claiming 8 TiB -> MemoryError
    members = {f"{k}.npy": npy_bytes(v) for k, v in files.items()}
    members["layer0.weight.npy"] = forged_npy((2 ** 20, 2 ** 20))
    write_zip(d / "r3.npz", members)
    with pytest.raises(ModelError, match="does not match its 64 data bytes"):
        golden.load_model(d / "r3.npz")
    # schema true / 1.0 were taken for 1
    for schema in (True, 1.0, 2.0):
        meta = {**json.loads(str(files["meta"])), "schema": schema}
        write_model(d / "r4.npz", {**files, "meta": np.array(json.dumps(meta))})
        with pytest.raises(ModelError, match="unsupported schema version"):
            golden.load_model(d / "r4.npz")
    # v_init = -2**63 wrapped the int64 width analysis, so a 9-bit model with it loaded
    for v in (-2 ** 63, 2 ** 63 - 1, -2 ** 47 - 1, 2 ** 47):
        write_model(d / "r5.npz", {**files, "layer0.v_init": np.full(5, v, dtype=np.int64)})
        with pytest.raises(ModelError, match="layer 0: v_init holds"):
            golden.load_model(d / "r5.npz")
    # n_in/n_out given as true/1.0 in the layer list matched a shape of 1
    m = Model([Dense([[3]], 0, 5, 0)], T=2, input_max=1)
    golden.save_model(m, d / "one.npz")
    f1 = entries((d / "one.npz").read_bytes())
    for v in (True, 1.0):
        for layout in (as_schema1(f1), f1):
            meta = json.loads(str(layout["meta"]))
            meta["layers"][0]["n_in"] = v
            write_model(d / "r6.npz", {**f1, "meta": np.array(json.dumps(meta))})
            with pytest.raises(ModelError, match="layer 0: n_in must be an integer, got"):
                golden.load_model(d / "r6.npz")


# ------------------------------------------------------------------------------------------------
# datasets


def idx_bytes(magic: int, dims, payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(int(x).to_bytes(4, "big") for x in dims) + payload


def check_dataset(name: str, directory: Path, n_in: int) -> str:
    try:
        x, y = golden.datasets.load(name, "test", directory)
    except DatasetError as e:
        assert str(e) and "\n" not in str(e).strip()
        return "rejected"
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    assert x.dtype == np.int64 and y.dtype == np.int64
    assert x.ndim == 2 and x.shape[1] == n_in and y.shape == (x.shape[0],)
    if x.size:
        assert x.min() >= 0 and x.max() <= golden.datasets.input_max(name)
    if y.size:
        assert y.min() >= 0 and y.max() <= 9
    return "loaded"


@st.composite
def idx_file(draw, images: bool):
    magic = 0x803 if images else 0x801
    n = draw(st.integers(0, 3))
    dims = [n, 28, 28] if images else [n]
    payload_len = n * 784 if images else n
    payload = draw(st.binary(min_size=payload_len, max_size=payload_len)) if not images else \
        bytes(draw(st.integers(0, 255)) for _ in range(1)) * payload_len
    if not images and draw(st.booleans()):
        payload = bytes(draw(st.integers(0, 9)) for _ in range(n))
    mut = draw(st.sampled_from(["none", "none", "magic", "dims", "ndim", "truncate", "append", "huge"]))
    if mut == "magic":
        magic = draw(st.one_of(st.integers(0, 2 ** 32 - 1), st.sampled_from([0x801, 0x803, 0x802, 0x903, 0x0D03])))
    elif mut == "dims":
        dims = draw(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2 ** 32 - 1)), min_size=len(dims),
                             max_size=len(dims)))
    elif mut == "ndim":
        k = draw(st.integers(0, 255))
        magic = (magic & ~0xFF) | k
        dims = draw(st.lists(st.integers(0, 30), min_size=min(k, 6), max_size=min(k, 6)))
    raw = idx_bytes(magic, dims, payload)
    if mut == "truncate":
        raw = raw[:draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif mut == "append":
        raw += draw(st.binary(min_size=1, max_size=10))
    elif mut == "huge":
        raw = idx_bytes(magic, [2 ** 32 - 1] + dims[1:], payload)
    return raw


@st.composite
def maybe_gzip(draw, raw: bytes):
    how = draw(st.sampled_from(["raw", "gz", "gz-trunc", "gz-flip", "both"]))
    if how == "raw":
        return {"": raw}
    gz = bytearray(gzip.compress(raw, mtime=0))
    if how == "gz-trunc":
        gz = gz[:draw(st.integers(0, len(gz) - 1))]
    elif how == "gz-flip":
        for pos, x in draw(st.lists(st.tuples(st.integers(0, len(gz) - 1), st.integers(1, 255)), min_size=1, max_size=4)):
            gz[pos] ^= x
    if how == "both":
        return {"": raw, ".gz": bytes(gz)}
    return {".gz": bytes(gz)}


@pytest.fixture(scope="module")
def ds_dir():
    d = Path(tempfile.mkdtemp(prefix="fuzz-datasets-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _fresh(d: Path) -> Path:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


@fuzz(250)
@given(name=st.sampled_from(["mnist", "fashion-mnist"]), data=st.data())
def test_idx_fuzz(ds_dir, name, data):
    d = _fresh(ds_dir / "idx")
    for base, images in (("t10k-images-idx3-ubyte", True), ("t10k-labels-idx1-ubyte", False)):
        if data.draw(st.integers(0, 20)) == 0:
            continue                              # a missing file
        raw = data.draw(idx_file(images))
        for suffix, blob in data.draw(maybe_gzip(raw)).items():
            (d / (base + suffix)).write_bytes(blob)
    check_dataset(name, d, 784)


def test_idx_empty_split_loads(ds_dir):
    """0 images and 0 labels is a consistent (empty) split; reshape(0, -1) raised ValueError."""
    d = _fresh(ds_dir / "idx-empty")
    (d / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(0x803, (0, 28, 28), b""))
    (d / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(0x801, (0,), b""))
    x, y = golden.datasets.load("mnist", "test", d)
    assert x.shape == (0, 784) and y.shape == (0,) and x.dtype == y.dtype == np.int64


def test_idx_valid_loads(ds_dir):
    d = _fresh(ds_dir / "idx-ok")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(0x803, (3, 28, 28), imgs.tobytes())))
    (d / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(0x801, (3,), bytes([0, 9, 4])))
    assert check_dataset("mnist", d, 784) == "loaded"
    x, y = golden.datasets.load("fashion-mnist", "test", d)
    assert (x == imgs.reshape(3, -1)).all() and y.tolist() == [0, 9, 4]


cifar_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.integers(), st.integers(2 ** 63, 2 ** 80), st.floats(),
    st.text(max_size=5), st.binary(max_size=5),
    st.builds(lambda n, k, dt, v: np.full((n, k), v % 256 if dt in ("u1", "u2") else v).astype(dt),
              st.integers(0, 3), st.sampled_from([3072, 3072, 3071, 1, 0]),
              st.sampled_from(["u1", "u1", "i2", ">u2", "i8", "u8", "f4", "?", "O"]), st.integers(-300, 300)),
    st.builds(lambda n, dt, v: np.full(n, v).astype(dt), st.integers(0, 3),
              st.sampled_from(["i8", "u1", "u8", "f8", "?", "O", "U2"]), st.integers(-2, 12)),
    st.lists(st.one_of(st.integers(-2, 12), st.booleans(), st.floats(), st.integers(2 ** 63, 2 ** 65),
                       st.builds(np.uint64, st.integers(0, 2 ** 64 - 1)), st.builds(np.int8, st.integers(-128, 127))),
             max_size=4),
)
cifar_key = st.sampled_from([b"data", "data", b"labels", "labels", b"batch_label", "x", 1, None])


@st.composite
def cifar_pickle(draw) -> bytes:
    kind = draw(st.sampled_from(["dict", "dict", "dict", "other", "bytes", "evil"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "evil":        # globals outside the allow-list must be refused, never resolved
        class Evil:
            def __reduce__(self):
                return (shutil.rmtree, ("/nonexistent-fuzz-dir",))
        return pickle.dumps({b"data": Evil(), b"labels": []}, protocol=draw(st.integers(0, 5)))
    if kind == "other":
        obj = draw(cifar_leaf)
    else:
        obj = draw(st.dictionaries(cifar_key, cifar_leaf, max_size=4))
        n = draw(st.integers(0, 3))
        if draw(st.booleans()):
            obj[draw(st.sampled_from([b"data", "data"]))] = np.full((n, 3072), draw(st.integers(0, 255)), np.uint8)
        if draw(st.booleans()):
            obj[draw(st.sampled_from([b"labels", "labels"]))] = [draw(st.integers(-1, 10)) for _ in range(n)]
    blob = bytearray(pickle.dumps(obj, protocol=draw(st.integers(0, 5))))
    mut = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if mut == "truncate" and blob:
        blob = blob[:draw(st.integers(0, len(blob) - 1))]
    elif mut == "flip" and blob:
        for pos, x in draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)), min_size=1, max_size=4)):
            blob[pos] ^= x
    return bytes(blob)


@fuzz(300)
@given(blob=cifar_pickle(), subdir=st.booleans())
def test_cifar_fuzz(ds_dir, blob, subdir):
    d = _fresh(ds_dir / "cifar")
    where = d / "cifar-10-batches-py" if subdir else d
    where.mkdir(exist_ok=True)
    (where / "test_batch").write_bytes(blob)
    check_dataset("cifar10", d, 3072)


@pytest.mark.parametrize("protocol", range(6))
def test_cifar_every_pickle_protocol_loads(ds_dir, protocol):
    """A batch re-pickled on Python 3 at protocol 0-2 (bytes via _codecs.encode) or 5 (arrays via
    numpy's _frombuffer) was refused as 'disallowed global'; it holds exactly the same data."""
    d = _fresh(ds_dir / f"cifar-p{protocol}")
    data = (np.arange(2 * 3072) % 256).astype(np.uint8).reshape(2, 3072)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [3, 7], b"batch_label": b"testing batch 1 of 1"}, f, protocol=protocol)
    x, y = golden.datasets.load("cifar10", "test", d)
    assert (x == data).all() and y.tolist() == [3, 7]


def test_cifar_codecs_shim_is_latin1_only(ds_dir):
    """_codecs.encode(str, "zlib_codec") etc. would be a decompression primitive; only latin1 is what pickle emits."""
    import codecs

    class Enc:
        def __reduce__(self):
            return (codecs.encode, ("x", "zlib_codec"))
    d = _fresh(ds_dir / "cifar-codec")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": Enc()}, protocol=2))
    assert b"_codecs" in (d / "test_batch").read_bytes()
    with pytest.raises(DatasetError, match="refusing _codecs.encode"):
        golden.datasets.load("cifar10", "test", d)
