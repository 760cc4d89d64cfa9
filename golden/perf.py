"""Cycle and memory-access model of the spikeforge core: the one place its counters are defined.

``golden.engine`` computes *what happens* (which neurons spiked, or sent an ON/OFF event, at which
step); :func:`count` turns that activity into the counters the RTL reports, using the latencies of
the core's pipeline defined below. docs/spec.md section 3 describes the dataflow and section 4
defines every counter; the RTL is checked against these numbers sample by sample, and each hardware
component states its latency from these constants (its unit test checks the two agree).

The core is output-stationary and event-driven. Events live in event buffers as *entries*: a group
index and a P-bit mask (plus, for direct input, the P values; for stcb, the P trains). For layer l
at step t the event reader replays the source buffer once per neuron group of the layer; every set
bit of every entry becomes one op, which reads one weight word (P weights) and accumulates the P
lanes. The group's state and parameters are read before its first op, so the update (add, fire,
reset) completes in the accumulator itself at the group's last op. A group with no input events
costs one (null) op.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LOAD_CYCLES_PER_BEAT", "LOAD_DRAIN", "ENC_DRAIN", "GEN_DRAIN", "LAYER_SETUP", "READ_CYCLES_PER_GROUP",
    "MIN_STATE_RAW_DISTANCE", "term_stage", "layer_drain", "pool_scatters_entries", "train_encoder_drain",
    "stcb_layer_drain", "finish_cycles",
    "stcb_group_cycles", "stcb_sweep_cycles", "groups", "ceil_log2", "COUNTERS", "Activity", "count", "note_events_per_step", "note_total_events",
    "breakdown", "breakdown_totals", "breakdown_parts", "phase_activity",
    "events_per_step", "shared_counts", "MAX_BANKS", "check_banks", "bank_shape", "layer_bank_shape", "bank_address", "bank_depth",
    "bundle_map", "conv_bundles", "event_bundles",
]

# ---------------------------------------------------------------------------------------------------
# pipeline latencies (cycles); each names the hardware that has it

LOAD_CYCLES_PER_BEAT = 1   # one accepted input beat per cycle
LOAD_DRAIN = 2             # input register -> encoder word (x and x - input_max, or the tsc countdown) -> write
MEM_READ_LATENCY = 2       # address -> block RAM -> fabric register: every memory read in the core
ENC_DRAIN = 3              # rate encoder: read (2), compare and write (1) after the last word is issued
GEN_DRAIN = 3              # tsc ON/OFF generator: the same shape
LAYER_SETUP = 3            # event reader: first entry read (2) and loaded (1) before the first op
ACCUMULATE_STAGE = 3       # an op's weight arrives 3 cycles after it leaves the reader (address, RAM, register)
READ_CYCLES_PER_GROUP = 2  # readout: one state (and count) word per group before its lanes are sent


UPDATE_STAGES = 2          # the last op's sums are captured, then fire / reset / count form the update


def term_stage(coding: str, encoding: str) -> int:
    """The weight fetch's extra stage: direct input multiplies by the value, tsc negates OFF events."""
    return int(encoding == "direct" or coding == "tsc")


def layer_drain(coding: str, encoding: str) -> int:
    """Cycles after a phase's last op leaves the reader until its last update is written: the op's
    weight fetch (ACCUMULATE_STAGE, plus the term stage) and the update (UPDATE_STAGES)."""
    return ACCUMULATE_STAGE + term_stage(coding, encoding) + UPDATE_STAGES


def pool_scatters_entries(coding: str) -> bool:
    """A maxpool2d scatter takes one event-buffer entry per op (the P channels of a position side by
    side: rate and tsc) rather than one event (stcb, whose every lane carries a train of its own)."""
    return coding != "stcb"


def train_encoder_drain(T: int) -> int:
    """stcb's input encoder: one pipeline stage per time step after the x word is read."""
    return MEM_READ_LATENCY + T + 1


def stcb_group_cycles(T: int, taps: int) -> int:
    """The STCB slot unit runs the kernel and the IF over T slots, one tap of one slot per cycle, so
    consecutive groups of an stcb layer start at least T * taps cycles apart (the event reader waits)."""
    return T * taps


SLOT_PIPELINE = 6          # slot unit: sequencer, current select, tap multiply, tap sum, I' - threshold,
                           # then the update formed from the registered fire bits and final V


def stcb_layer_drain(T: int, taps: int, direct: bool) -> int:
    """After an stcb phase's last op: the fetch (and direct input's term stage), the handoff, the slot
    unit's T*taps cycles and its pipeline, then the state and train writes."""
    return ACCUMULATE_STAGE + int(direct) + 1 + stcb_group_cycles(T, taps) + SLOT_PIPELINE


def stcb_sweep_cycles(words: int, T: int, taps: int, direct: bool) -> int:
    """The fire sweep of an stcb conv2d layer, with its drain: one output word per slot-unit pass,
    so words issue ``max(1, T*taps)`` cycles apart, and after the last one the slot unit's pipeline
    drains as after a dense stcb phase's last group (:func:`stcb_layer_drain`, which holds the last
    word's own T*taps cycles)."""
    return (words - 1) * max(1, stcb_group_cycles(T, taps)) + 1 + stcb_layer_drain(T, taps, direct)


def finish_cycles(lanes: int) -> int:
    """The argmax: a registered comparator tree over the P lanes (log2 P levels), then the running best."""
    return ceil_log2(lanes) + 1


# A state read may follow the write of the same word by one cycle (the memories read synchronously,
# so a read in the write's own cycle would see the old word). The core gets that close when a tsc
# layer's last update is followed at once by the next layer's ON/OFF generator reading it.
MIN_STATE_RAW_DISTANCE = 1

# One vocabulary for every coding; docs/spec.md section 4 says what a counter means under each one
# (tsc: ``spikes`` are ON + OFF events; stcb: event buffer entries carry T-bit trains).
# ``acc_reads``/``acc_writes``: the accumulator memory of conv2d and maxpool2d layers (0 for dense).
COUNTERS = ("cycles", "weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops",
            "neuron_updates", "event_reads", "event_writes", "input_writes", "spikes", "acc_reads", "acc_writes")


def groups(n: int, lanes: int) -> int:
    """Number of P-lane words needed for ``n`` neurons."""
    return -(-n // lanes)


def ceil_log2(n: int) -> int:
    """Smallest k with 2**k >= n (0 for n <= 1)."""
    return 0 if n <= 1 else int(n - 1).bit_length()   # (-1).bit_length() is 1: n = 0 needs the guard


@dataclass
class Activity:
    """What one batch did, as the counters need it.

    inputs : (B, T, n_in) bool
        Input events reaching layer 0 at each step: rate-encoder spikes; direct: the non-zero inputs
        (the same every step); tsc: the input generator's ON and OFF events.
    layers : list of (B, T, n_l) bool
        Per layer, what it emits at each step (spikes; tsc: ON and OFF events, none from the last layer).
    """

    inputs: np.ndarray
    layers: list


def _zeros(B: int) -> dict:
    """Every counter at zero: the rows of one array (one allocation instead of one per counter)."""
    return dict(zip(COUNTERS, np.zeros((len(COUNTERS), B), dtype=np.int64)))


# Within one count(), the same event maps are counted more than once (a layer's output is the next
# layer's input); a per-call memo, keyed by the array's identity and holding the array so that
# identity stays unique, computes each once. A context variable keeps concurrent counts apart.
_MEMO: contextvars.ContextVar = contextvars.ContextVar("golden_perf_memo", default=None)


def _memo(fn):
    @functools.wraps(fn)
    def cached(ev, *args):
        memo = _MEMO.get()
        if memo is None:
            return fn(ev, *args)
        key = (fn.__name__, id(ev), *args)
        try:
            hit = memo.get(key)
        except TypeError:                 # a list argument (a shape): the same entry as its tuple
            key = (fn.__name__, id(ev), *(tuple(a) if isinstance(a, list) else a for a in args))
            hit = memo.get(key)
        if hit is None:
            hit = memo[key] = (ev, fn(ev, *args))
        return hit[1]
    return cached


def _step_major(ev: np.ndarray):
    """The (T, B, n) array of which ``ev`` (B, T, n) is the transposed view, when it is contiguous
    (golden.engine keeps its maps step-major), else None. The counts below treat the first two axes
    alike, so they can run on it and transpose their (T, B) result."""
    if ev.ndim == 3 and not ev.flags.c_contiguous:
        tv = ev.transpose(1, 0, 2)
        if tv.flags.c_contiguous:
            return tv
    return None


def _row_sums(a: np.ndarray, vmax: int) -> np.ndarray:
    """Sums over the last axis of non-negative integers at most ``vmax`` (bool, uint8), as int64. A
    float32 product with a vector of ones (numpy's reductions over a short last axis are slow) while
    every sum is at most 2**24, so every partial sum is an integer float32 holds exactly."""
    k = a.shape[-1]
    if k * vmax <= 1 << 24:
        ones = _ONES.get(k)
        if ones is None:
            ones = _ONES[k] = np.ones(k, dtype=np.float32)
            ones.setflags(write=False)
        return (a.astype(np.float32) @ ones).astype(np.int64)
    return a.sum(axis=-1, dtype=np.int64)


_ONES: dict = {}
_INT_ONES: dict = {}


def _int_ones(n: int) -> np.ndarray:
    """A read-only int64 vector of n ones, made once per n: sums over a short last axis as a product."""
    v = _INT_ONES.get(n)
    if v is None:
        v = _INT_ONES[n] = np.ones(n, dtype=np.int64)
        v.setflags(write=False)
    return v
_UINT = {k: np.dtype(f"u{k}") for k in (1, 2, 4, 8)}


def _true_per_row(b: np.ndarray) -> np.ndarray:
    """How many are True in each row (last axis) of a C-contiguous bool array, as int64. Rows of a
    multiple of 8 are read as 64-bit words whose bytes are 0 or 1: a word's popcount is its count
    of True (one call on an eighth of the elements, instead of a cast to float32 and a product)."""
    k = b.shape[-1]
    if k % 8 or not b.flags.c_contiguous:
        return _row_sums(b, 1)
    pc = np.bitwise_count(b.view(np.uint64))
    return pc[..., 0].astype(np.int64) if k == 8 else _row_sums(pc, 8)


_BYTE_LSB = np.uint64(0x0101010101010101)


def _nonzero_bytes(words: np.ndarray) -> np.ndarray:
    """uint64 words -> how many of each word's 8 bytes are non-zero (uint8): every byte's bits OR'd
    into its lowest bit, then a popcount."""
    t = words | (words >> np.uint64(4))
    t |= t >> np.uint64(2)
    t |= t >> np.uint64(1)
    t &= _BYTE_LSB
    return np.bitwise_count(t)


@_memo
def events_per_step(ev: np.ndarray) -> np.ndarray:
    """(B, T, n) events -> (B, T) int64: how many are set at each step (``ev.sum(axis=2)``). A bool
    map is read 8 lanes at a time, as 64-bit words whose set bits are its events."""
    tv = _step_major(ev)
    if tv is not None:
        return events_per_step.__wrapped__(tv).T
    if ev.dtype == np.bool_ and ev.flags.c_contiguous:
        if ev.shape[2] % 8 == 0:
            return _row_sums(np.bitwise_count(ev.view(np.uint64)), 64)
        return _row_sums(ev, 1)
    return ev.sum(axis=2, dtype=np.int64)


def _total_events(ev: np.ndarray) -> np.ndarray:
    """(B, T, n) events -> (B,) int64, their number per sample: from :func:`events_per_step` when
    this count has it already, else summed over the steps first (no per-step counts are made for
    a map that needs only its total, such as the last layer's spikes)."""
    memo = _MEMO.get()
    if memo is not None:
        hit = memo.get(("total_events", id(ev)))
        if hit is not None:
            return hit[1]
        hit = memo.get((events_per_step.__name__, id(ev)))
        if hit is not None:
            return hit[1].sum(axis=1)
    tv = _step_major(ev)
    if tv is not None and tv.dtype == np.bool_:
        return step_sums(tv).sum(axis=1)
    return events_per_step(ev).sum(axis=1)


def step_sums(tv: np.ndarray) -> np.ndarray:
    """A step-major (T, ...) bool map summed over its steps, as int64 (...): the 0/1 bytes added in the
    narrowest unsigned dtype that holds T, then widened (an int64 sum of a bool map casts every
    element first, several times slower)."""
    T = tv.shape[0]
    dt = _SUM_DTYPES.get(T)
    if dt is None:
        dt = _SUM_DTYPES[T] = next(d for d in (np.uint8, np.uint16, np.uint32, np.uint64) if T <= np.iinfo(d).max)
    return np.add.reduce(tv.view(np.uint8), axis=0, dtype=dt).astype(np.int64)


_SUM_DTYPES: dict = {}          # T -> the narrowest unsigned dtype that holds T (np.iinfo is slow to make)


def _or_planes(g: np.ndarray) -> np.ndarray:
    """(R, L, w) -> (R, w): the OR of the L planes. numpy's loops pay per run of the innermost axis:
    planes of at most 2 words are OR'd word column by word column (runs of R), wider ones halving L
    each pass (log2 L passes over ever smaller contiguous blocks)."""
    R, L, w = g.shape
    if w <= 2 and L > 1:
        out = np.empty((R, w), dtype=g.dtype)
        for j in range(w):
            o = out[:, j]
            np.bitwise_or(g[:, 0, j], g[:, 1, j], out=o)
            for k in range(2, L):
                np.bitwise_or(o, g[:, k, j], out=o)
        return out
    while g.shape[1] > 1:
        h = g.shape[1] // 2
        top = g[:, :h] | g[:, h:2 * h]
        if g.shape[1] % 2:
            top[:, 0] |= g[:, 2 * h]
        g = top
    return g[:, 0]


@_memo
def _entries(ev: np.ndarray, P: int, shape=None) -> np.ndarray:
    """(B, T, n) events -> (B, T) event-buffer entries: the words of P lanes with at least one event.
    A flat map's words are P consecutive neurons; a [C, H, W] map written by a conv2d or maxpool2d
    layer (``shape`` given) has one word per P channels at each position."""
    tv = _step_major(ev)
    if tv is not None:
        return _entries.__wrapped__(tv, P, shape).T
    B, T, n = ev.shape
    if ev.dtype != np.bool_:
        ev = ev != 0
    if shape is not None and len(shape) == 3:
        C, H, W = shape
        if (C % P == 0 or C < P) and (H * W) % 8 == 0 and ev.flags.c_contiguous:
            # the channel planes of each word (P of them, or all C < P) OR'd as 64-bit words of 8
            # positions each, then the positions with any event counted byte by byte
            L = min(P, C)
            word = _or_planes(ev.reshape(B * T * (C // L), L, H * W).view(np.uint64))
            return _row_sums(_nonzero_bytes(word).reshape(B, T, -1), 8)
        g = ev.reshape(B, T, C, H * W)
        if C % P:
            g = np.concatenate([g, np.zeros((B, T, (-C) % P, H * W), dtype=bool)], axis=2)
        g = g.reshape(B, T, -1, P, H * W)
        # OR of the P channel planes, plane by plane: contiguous loops (a reduction over the short
        # lane axis is several times slower)
        word = g[:, :, :, 0].copy()
        for k in range(1, P):
            np.logical_or(word, g[:, :, :, k], out=word)
        return np.count_nonzero(word.reshape(B, T, -1), axis=2).astype(np.int64)
    if n % P == 0 and P in (1, 2, 4, 8):
        # P consecutive bools are one P-byte word, non-zero when any lane has an event
        words = np.ascontiguousarray(ev).view(np.uint8).view(_UINT[P])
        return _true_per_row(words != 0)
    pad = (-n) % P
    g = np.pad(ev, ((0, 0), (0, 0), (0, pad))).reshape(B, T, -1, P).any(axis=3)
    return g.sum(axis=2, dtype=np.int64)


def _entry_totals(ev: np.ndarray, P: int) -> np.ndarray:
    """(B, T, n) events of a flat map -> (B,) int64: its entries (:func:`_entries`) summed over the steps.
    A step-major bool map whose words are P consecutive bytes (P of 1, 2, 4 or 8 dividing n) has its
    non-zero words counted over the steps first, a sum along rows of samples, then over each sample's
    words: the per-step counts (a sum over a short axis per step and sample) are never made."""
    tv = _step_major(ev)
    n = ev.shape[2]
    if tv is not None and tv.dtype == np.bool_ and P in _UINT and n % P == 0:
        active = tv.view(np.uint8).view(_UINT[P]) != 0                    # (T, B, n / P) words with an event
        per_word = step_sums(active)                                      # (B, n / P): steps each word is active
        return per_word @ _int_ones(per_word.shape[1])
    return _entries(ev, P).sum(axis=1)


def _trains(ev: np.ndarray, P: int, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """stcb: (B, T, n) -> active trains (B,) and entries holding them (B,)."""
    active = ev.any(axis=1)                                   # (B, n)
    return active.sum(axis=1, dtype=np.int64), _entries(active[:, None, :], P, shape)[:, 0]


def _spatial(layer) -> bool:
    return getattr(layer, "kind", "dense") != "dense"


def map_words(n: int, P: int, shape=None) -> int:
    """Words of P lanes that hold a map of ``n`` values (a [C, H, W] map: P channels per word)."""
    if shape is not None and len(shape) == 3:
        return groups(shape[0], P) * shape[1] * shape[2]
    return groups(n, P)


def kernel_taps(model) -> int:
    """The STEB kernel's taps the slot unit walks: the longest kernel of the model's neuron layers."""
    return max(len(l.h) for l in model.layers if hasattr(l, "h"))


@contextlib.contextmanager
def shared_counts():
    """Within this block (in this thread), :func:`events_per_step` and the entries of an event map
    are computed once per array: golden.engine counts its spikes per step with the same function,
    so a run that holds the block for its whole batch counts every map once."""
    if _MEMO.get() is not None:           # already inside one: share it
        yield
        return
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def note_total_events(ev: np.ndarray, counts: np.ndarray) -> None:
    """Within :func:`shared_counts`: ``counts`` (B, n) int64 are the events of ``ev`` (B, T, n) per sample
    and neuron, found by the caller (golden.engine's readout sums the last layer's spikes per neuron);
    :func:`_total_events` of the same array returns their sums per sample. Outside the block it does
    nothing."""
    memo = _MEMO.get()
    if memo is not None:        # an int64 product with ones: a sum over a short last axis pays per row
        memo[("total_events", id(ev))] = (ev, counts @ _int_ones(counts.shape[1]))


def note_events_per_step(ev: np.ndarray, counts: np.ndarray) -> None:
    """Within :func:`shared_counts`: ``counts`` (B, T) int64 are ``events_per_step(ev)``, found by the
    caller another way (golden.engine sums a layer's input spikes in its product); later calls on
    the same array return them. Outside the block it does nothing."""
    memo = _MEMO.get()
    if memo is not None:
        memo[(events_per_step.__name__, id(ev))] = (ev, counts)


def count(model, lanes: int, act: Activity, banks: int = 1) -> tuple[dict, list, dict]:
    """The counters of a batch: (totals, per-layer counters, the encoder's share). ``banks`` is the
    accumulator's interlacing (:func:`bank_shape`); it changes a conv2d layer's scatter cycles only."""
    check_banks(banks)
    with shared_counts():
        if _all_dense_rate(model):
            return _count_dense(model, int(lanes), act)
        return _count(model, lanes, act, int(banks))


def _all_dense_rate(model) -> bool:
    """Rate coding (rate or direct input) with dense layers only: :func:`_count_dense` applies."""
    return model.coding == "rate" and all(getattr(l, "kind", "dense") == "dense" for l in model.layers)


_ROW = {k: i for i, k in enumerate(COUNTERS)}


def _dense_constants(model, P: int) -> tuple:
    """For :func:`_count_dense`: the counters' parts that do not depend on the activity, (L + 1, 13)
    int64 (row 0 the encoder, then the layers), each layer's G and n_out as (L, 1) int64, and the
    cycles every sample adds outside the layers (load, finish, readout)."""
    T, L = model.T, len(model.layers)
    c = np.zeros((L + 1, len(COUNTERS)), dtype=np.int64)
    if model.encoding != "direct":                          # the rate encoder
        g_in = map_words(model.n_in, P)
        c[0, _ROW["input_writes"]] = model.n_in
        c[0, _ROW["cycles"]] = T * (g_in + ENC_DRAIN)
        c[0, _ROW["state_reads"]] = c[0, _ROW["state_writes"]] = T * g_in
        c[0, _ROW["neuron_updates"]] = T * model.n_in
    G = np.array([[groups(l.n_out, P)] for l in model.layers], dtype=np.int64)
    n = np.array([[l.n_out] for l in model.layers], dtype=np.int64)
    c[1:, _ROW["cycles"]] = T * (LAYER_SETUP + layer_drain(model.coding, model.encoding))
    c[1:, _ROW["state_reads"]] = G[:, 0] * (T - 1)                     # step 0 starts from v_init
    c[1:, _ROW["state_writes"]] = c[1:, _ROW["param_reads"]] = G[:, 0] * T
    c[1:, _ROW["neuron_updates"]] = n[:, 0] * T
    extra = (model.n_in * LOAD_CYCLES_PER_BEAT + LOAD_DRAIN + finish_cycles(P)
             + groups(model.n_out, P) * READ_CYCLES_PER_GROUP + model.n_out)
    for a in (c, G, n):
        a.setflags(write=False)
    return c, G, n, extra


def _count_dense(model, P: int, act: Activity) -> tuple[dict, list, dict]:
    """:func:`_count` of a rate-coded network of dense layers, the same counters by the same formulas,
    computed for all layers at once: every counter of the encoder and the layers is a row of one
    (L + 1, 13, B) array, filled from the activity's per-sample sums with a few calls over all layers
    (the counters of the dense demo net were a sixth of its run in numpy's per-call overheads).
    Checked against :func:`_count` by tests/test_golden_speed_paths.py."""
    T, L, B = model.T, len(model.layers), act.inputs.shape[0]
    key = ("dense_constants", P)
    cache = model.__dict__.setdefault("_perf_cache", {})    # a Model cannot change
    if key not in cache:
        cache[key] = _dense_constants(model, P)
    const, G, n, extra = cache[key]
    R = _ROW
    out = np.empty((L + 1, len(COUNTERS), B), dtype=np.int64)
    out[...] = const[:, :, None]
    srcs = [act.inputs] + act.layers[:-1]                   # what each layer reads
    # (L, T, B), step-major like the maps: the sums over the steps then run along rows of B samples
    # (numpy's sums over a short last axis of T pay per row)
    E = np.stack([events_per_step(m).T for m in srcs])      # input events per step
    Es = E.sum(axis=1)                                      # (L, B)
    Ks = np.stack([_entry_totals(m, P) for m in srcs])      # their entries, over all steps (L, B)
    lay = out[1:]
    lay[:, R["cycles"]] += G * np.maximum(E, 1).sum(axis=1)
    np.multiply(G, Es, out=lay[:, R["weight_reads"]])
    np.multiply(n, Es, out=lay[:, R["syn_ops"]])
    np.multiply(G, Ks, out=lay[:, R["event_reads"]])
    lay[:-1, R["event_writes"]] = Ks[1:]                    # a layer writes what the next one reads
    lay[:-1, R["spikes"]] = Es[1:]
    lay[-1, R["spikes"]] = _total_events(act.layers[-1])    # the last layer sends nothing
    enc = out[0]
    if model.encoding == "direct":
        enc[R["event_writes"]] = _entries(act.inputs[:, :1], P)[:, 0]      # written once, while loading
    else:
        enc[R["event_writes"]] = Ks[0]
        enc[R["spikes"]] = Es[0]
    totals = out.sum(axis=0)
    totals[R["spikes"]] -= enc[R["spikes"]]                 # spikes: network layers only
    totals[R["cycles"]] += extra
    rows = lambda a: dict(zip(COUNTERS, a))
    return rows(totals), [rows(c) for c in lay], rows(enc)


def _count(model, lanes: int, act: Activity, banks: int = 1) -> tuple[dict, list, dict]:
    P, T = int(lanes), model.T
    B = act.inputs.shape[0]
    coding, direct = model.coding, model.encoding == "direct"
    taps = kernel_taps(model)

    # ---- the input: encoder / loader / input generator
    enc = _zeros(B)
    in_events = events_per_step(act.inputs)                               # (B, T)
    # the input map is laid out for its consumer: by channel words when layer 0 is spatial
    in_shape = tuple(model.input_shape) if _spatial(model.layers[0]) else None
    g_in = map_words(model.n_in, P, in_shape)
    in_entries = _entries(act.inputs, P, in_shape)                        # (B, T)
    enc["spikes"] = in_events.sum(axis=1) if not direct else enc["spikes"]
    if direct:
        enc["event_writes"] = in_entries[:, 0].copy()                     # written once, while loading
    else:
        enc["input_writes"][:] = model.n_in
        if coding == "stcb":                                              # one pass: P whole trains per word
            enc["cycles"][:] = g_in + train_encoder_drain(T)
            enc["state_reads"][:] = g_in
            enc["neuron_updates"][:] = model.n_in * T
            enc["event_writes"] = _trains(act.inputs, P, in_shape)[1]
        else:                                                             # rate encoder / tsc generator
            drain = GEN_DRAIN if coding == "tsc" else ENC_DRAIN
            enc["cycles"][:] = T * (g_in + drain)
            enc["state_reads"][:] = T * g_in
            enc["state_writes"][:] = T * g_in
            enc["neuron_updates"][:] = T * model.n_in
            enc["event_writes"] = in_entries.sum(axis=1)

    # ---- the layers
    layers = []
    src, src_entries, src_shape = act.inputs, in_entries, in_shape
    n_layers = len(model.layers)
    for li, layer in enumerate(model.layers):
        last = li == n_layers - 1
        out = act.layers[li]
        out_shape = tuple(layer.out_shape) if _spatial(layer) else None
        if _spatial(layer):
            layers.append(_spatial_layer(model, li, P, src, src_shape, out, out_shape, direct and li == 0, banks))
            src, src_shape = out, out_shape
            src_entries = _entries(out, P, out_shape) if not last else None
            continue
        G = groups(layer.n_out, P)
        c = _zeros(B)
        if coding == "stcb":
            if direct and li == 0:
                active, entries = src.any(axis=1).sum(axis=1, dtype=np.int64), src_entries[:, 0]
                slot_adds = active * T
            else:
                active, entries = _trains(src, P, src_shape)
                slot_adds = src.sum(axis=(1, 2), dtype=np.int64)
            # a group's first op waits until the slot unit can take it: groups start T*taps apart,
            # the last one ends with its own ops, and the drain covers its slot unit
            ops = np.maximum(active, 1)
            c["cycles"] = (LAYER_SETUP + (G - 1) * np.maximum(ops, stcb_group_cycles(T, taps)) + ops
                           + stcb_layer_drain(T, taps, direct))
            c["weight_reads"] = G * active
            c["event_reads"] = G * entries
            c["syn_ops"] = layer.n_out * slot_adds
            c["state_writes"][:] = G
            c["param_reads"][:] = G
            if not last:
                c["event_writes"] = _trains(out, P)[1]
        else:
            E = events_per_step(src)                                          # (B, T) input events
            Es = E.sum(axis=1)
            c["cycles"] = (T * (LAYER_SETUP + layer_drain(coding, model.encoding)) + G * np.maximum(E, 1).sum(axis=1))
            c["weight_reads"] = G * Es
            c["event_reads"] = G * src_entries.sum(axis=1)
            c["syn_ops"] = layer.n_out * Es
            c["state_reads"][:] = G * (T - 1)                                 # step 0 starts from v_init
            c["state_writes"][:] = G * T
            c["param_reads"][:] = G * T
            if not last:
                c["event_writes"] = _entries(out, P).sum(axis=1)
            if coding == "tsc" and not last:
                # the ON/OFF generator that sends this layer's values runs in the next layer's window
                c["cycles"] = c["cycles"] + T * (G + GEN_DRAIN)
                for k in ("state_reads", "state_writes", "param_reads"):
                    c[k] = c[k] + G * T
                c["neuron_updates"] = c["neuron_updates"] + layer.n_out * T
        c["neuron_updates"] = c["neuron_updates"] + layer.n_out * T
        # the next layer counts a map's events per step anyway; the last layer's need only their total
        c["spikes"] = _total_events(out) if last else events_per_step(out).sum(axis=1)
        layers.append(c)
        src, src_shape = out, None
        src_entries = _entries(out, P) if not last else None              # the last layer sends nothing
    # the sums written into the rows of one array (one allocation, and no temporary per counter)
    totals = dict(zip(COUNTERS, np.empty((len(COUNTERS), B), dtype=np.int64)))
    for k, t in totals.items():
        if k == "spikes":                                             # spikes: network layers only
            np.copyto(t, layers[0][k])
        else:
            np.add(enc[k], layers[0][k], out=t)
        for c in layers[1:]:
            t += c[k]
    G_last = groups(model.n_out, P)
    totals["cycles"] = totals["cycles"] + (model.n_in * LOAD_CYCLES_PER_BEAT + LOAD_DRAIN + finish_cycles(P)
                                           + G_last * READ_CYCLES_PER_GROUP + model.n_out)
    return totals, layers, enc


# ---------------------------------------------------------------------------------------------
# conv2d and maxpool2d layers (schema 2), in every coding on the core; docs/spec.md sections 3 and 4
# define the event-driven dataflow. A step scatters each input event over the
# kernel offsets that reach an output (one weight word per offset and group of P output channels,
# accumulated into an accumulator memory), then sweeps every output word (state, parameters, update,
# spikes). A pool ORs its input events into the accumulator and sweeps it.

def conv_taps(layer, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For input events (..., n_in): the valid (event, kernel offset) pairs ``X`` and the events that
    reach no output at all ``Z`` (docs/spec.md section 3), each (...,)."""
    tv = _step_major(events)
    if tv is not None:
        return tuple(a.T for a in conv_taps(layer, tv))
    nv = np.tile(layer.valid_offsets().reshape(-1), layer.in_shape[0])       # (n_in,) in (c, y, x) order
    # a row's sums are at most n_in * K*K (every event, every offset): exact in float32 up to 2**24.
    # Two matrix-vector products (one (n_in, 2) matrix product is several times slower in BLAS)
    dt = np.float32 if nv.size * layer.kernel ** 2 <= 1 << 24 else np.float64
    flat = events.reshape(-1, events.shape[-1]).astype(dt)
    X = (flat @ nv.astype(dt)).astype(np.int64)                               # exact: see dt
    zero = nv == 0
    Z = (flat @ zero.astype(dt)).astype(np.int64) if zero.any() else np.zeros(len(flat), dtype=np.int64)
    return X.reshape(events.shape[:-1]), Z.reshape(events.shape[:-1])


def _shared_taps(layer, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`conv_taps`, computed once per event map and layer within :func:`shared_counts` (the
    counters and :func:`phase_activity` both need it)."""
    memo = _MEMO.get()
    if memo is None:
        return conv_taps(layer, events)
    key = ("conv_taps", id(events), id(layer))
    if key not in memo:
        memo[key] = ((events, layer), conv_taps(layer, events))      # held, so the ids stay unique
    return memo[key][1]


# ---------------------------------------------------------------------------------------------
# kernel offsets in parallel (docs/spec.md section 3, "Banks"): the accumulator interlaced over
# ``banks`` memories by output position, so one event's bundle of valid offsets, all of one channel
# group, touches distinct banks and is one op cycle. banks = 1 is the one-offset-per-cycle scatter.

MAX_BANKS = 64


def check_banks(banks) -> int:
    """``banks`` as an int, or ValueError: a positive integer up to :data:`MAX_BANKS`."""
    if isinstance(banks, bool) or not isinstance(banks, (int, np.integer)) or not 1 <= banks <= MAX_BANKS:
        raise ValueError(f"banks must be an integer from 1 to {MAX_BANKS}, not {banks!r}")
    return int(banks)


def bank_shape(kernel: int, stride: int, banks: int) -> tuple[int, int]:
    """``(r, c)`` of a conv2d layer with this kernel and stride: a bundle covers up to ``r`` valid
    kernel rows by ``c`` valid kernel columns of one event, and the layer uses ``r*c <= banks``
    accumulator banks, output (oy, ox) in bank ``(oy mod r)*c + ox mod c``. Along an axis an event has
    at most ``a = ceil(K/S)`` valid offsets, reaching consecutive output coordinates, so any ``c``
    (``r``) consecutive ones fall into distinct banks: ``c = min(banks, a)``, ``r = min(a, banks // c)``."""
    a = -(-int(kernel) // int(stride))
    c = min(int(banks), a)
    return min(a, int(banks) // c), c


def bundle_map(layer, banks: int) -> np.ndarray:
    """(H, W) int64: the bundles (op cycles per channel group) of an event at each input pixel,
    ``ceil(nv_y/r) * ceil(nv_x/c)``; 0 where no offset is valid (the event is one null op). With
    banks = 1 it is ``layer.valid_offsets()``."""
    r, c = bank_shape(layer.kernel, layer.stride, banks)
    nv_y, nv_x = layer.valid_offsets_axes()
    return (-(-nv_y // r))[:, None] * (-(-nv_x // c))[None, :]


def bank_address(layer, banks: int, og: int, oy: int, ox: int) -> tuple[int, int]:
    """``(bank, address)`` of output word (og, oy, ox) of a conv2d or maxpool2d layer (docs/spec.md
    section 3, "Banks"): bank ``(oy mod r)*c + ox mod c``, address ``(og*ceil(Ho/r) + oy div r)*ceil(Wo/c)
    + ox div c``; a maxpool2d layer uses ``(r, c) = (1, 1)``: all in bank 0 at its linear address."""
    r, c = layer_bank_shape(layer, banks)
    _, Ho, Wo = layer.out_shape
    return (oy % r) * c + ox % c, (og * -(-Ho // r) + oy // r) * -(-Wo // c) + ox // c


def layer_bank_shape(layer, banks: int) -> tuple[int, int]:
    """:func:`bank_shape` of a conv2d layer; ``(1, 1)`` for a maxpool2d layer (one op per cycle: its words
    stay in bank 0 at their linear addresses, so its scatter and sweep need no bank mapping)."""
    if layer.kind == "conv2d":
        return bank_shape(layer.kernel, layer.stride, banks)
    return 1, 1


def bank_depth(model, lanes: int, banks: int) -> int:
    """Words per accumulator bank: the largest ``Gc*ceil(Ho/r)*ceil(Wo/c)`` of the spatial layers (0
    without one). With banks = 1 it is the largest ``N_l``."""
    depth = 0
    for layer in model.layers:
        if _spatial(layer):
            r, c = layer_bank_shape(layer, banks)
            C, Ho, Wo = layer.out_shape
            depth = max(depth, groups(C, lanes) * -(-Ho // r) * -(-Wo // c))
    return depth


def event_bundles(layer, banks: int, y: int, x: int) -> list:
    """The bundles of one input event at (y, x) of a conv2d layer, for channel group 0, in issue
    order (row chunks outer, column chunks inner): each a list of ``(ky, kx, oy, ox, bank, address)``
    (docs/spec.md section 3, "Banks"). Written by enumeration, as the plain reference of
    :func:`bundle_map` and of the hardware's bundle generator; [] for an event with no valid offset."""
    K, S, p = layer.kernel, layer.stride, layer.padding
    _, Ho, Wo = layer.out_shape
    r, c = bank_shape(K, S, banks)
    rows = [k for k in range(K) if (y + p - k) % S == 0 and 0 <= (y + p - k) // S < Ho]
    cols = [k for k in range(K) if (x + p - k) % S == 0 and 0 <= (x + p - k) // S < Wo]
    out = []
    for i in range(0, len(rows), r):
        for j in range(0, len(cols), c):
            b = []
            for ky in rows[i:i + r]:
                for kx in cols[j:j + c]:
                    oy, ox = (y + p - ky) // S, (x + p - kx) // S
                    b.append((ky, kx, oy, ox, *bank_address(layer, banks, 0, oy, ox)))
            out.append(b)
    return out


def conv_bundles(layer, events: np.ndarray, banks: int) -> np.ndarray:
    """For input events (..., n_in): the bundles ``XB`` their scatter issues per channel group (the
    ``X`` of :func:`conv_taps` when banks = 1), (...,)."""
    if banks == 1:
        return _shared_taps(layer, events)[0]
    tv = _step_major(events)
    if tv is not None:
        return conv_bundles(layer, tv, banks).T
    nb = np.tile(bundle_map(layer, banks).reshape(-1), layer.in_shape[0])
    dt = np.float32 if nb.size * layer.kernel ** 2 <= 1 << 24 else np.float64   # exact, as conv_taps
    flat = events.reshape(-1, events.shape[-1]).astype(dt)
    return (flat @ nb.astype(dt)).astype(np.int64).reshape(events.shape[:-1])


def _spatial_layer(model, li: int, P: int, src, src_shape, out, out_shape, direct_in: bool, banks: int = 1) -> dict:
    """Counters of conv2d or maxpool2d layer ``li``: ``src`` (B, T, n_in) are its input events, ``out``
    (B, T, n_out) what it sends. These layers are never last."""
    layer, T = model.layers[li], model.T
    conv = layer.kind == "conv2d"
    c = _zeros(src.shape[0])
    Gc = groups(layer.channels, P)
    _, Ho, Wo = layer.out_shape
    N, n = Gc * Ho * Wo, layer.n_out
    drain = layer_drain(model.coding, model.encoding)      # the scatter's and the sweep's pipelines
    c["spikes"] = events_per_step(out).sum(axis=1)
    if model.coding == "stcb":                 # one phase: active trains, then one sweep
        active, in_entries = _trains(src, P, src_shape)
        if conv:
            trains = src.any(axis=1)
            XA, ZA = conv_taps(layer, trains)
            scatter = Gc * conv_bundles(layer, trains, banks) + ZA
            c["weight_reads"] = Gc * XA
            c["acc_reads"] = Gc * XA + N
            X = conv_taps(layer, src)[0].sum(axis=1)
            c["syn_ops"] = layer.channels * (X if not direct_in else XA * T)   # slot additions, as rate
            c["state_writes"][:] = N
            c["param_reads"][:] = N
            c["neuron_updates"][:] = n * T
            # the slot unit runs the kernel and the IF over the T slots of one output word at a time,
            # one tap of one slot per cycle: sweep words issue T*taps cycles apart, and the last
            # word's slot unit is in its drain, exactly as the dense stcb phase's last group
            sweep = stcb_sweep_cycles(N, T, kernel_taps(model), model.encoding == "direct")
        else:
            scatter = active
            c["acc_reads"] = active + N
            sweep = N + drain                  # a pool's sweep only ORs trains: one word per cycle
        c["acc_writes"] = c["acc_reads"].copy()
        c["cycles"] = LAYER_SETUP + scatter + drain + sweep
        c["event_reads"] = in_entries
        c["event_writes"] = _trains(out, P, out_shape)[1]
        return c
    E = events_per_step(src)                               # (B, T) input events per step
    K = _entries(src, P, src_shape)                        # (B, T) their event-buffer entries
    c["event_reads"] = K.sum(axis=1)
    c["event_writes"] = _entries(out, P, out_shape).sum(axis=1)
    if conv:                                   # rate, direct and tsc: a scatter and a sweep per step
        Xs, Zs = _shared_taps(layer, src)
        X, Z = Xs.sum(axis=1), Zs.sum(axis=1)
        XB = conv_bundles(layer, src, banks).sum(axis=1) if banks > 1 else X
        c["cycles"] = T * (LAYER_SETUP + drain + N + drain) + Gc * XB + Z
        c["weight_reads"] = Gc * X
        c["acc_reads"] = Gc * X + N * T
        c["syn_ops"] = layer.channels * X
        c["state_reads"][:] = N * (T - 1)
        c["state_writes"][:] = N * T
        c["param_reads"][:] = N * T
        c["neuron_updates"][:] = n * T
    elif model.coding == "tsc":                # pool: OFF entries store t; a clear sweep at t = 0
        # one op per entry (the P channels of a position), not per event: a pool's output word holds
        # the same channels as its input word, so the lanes go through side by side
        off = K[:, 1:].sum(axis=1)
        c["cycles"] = T * (LAYER_SETUP + drain) + K.sum(axis=1) + N
        c["state_reads"] = off
        c["state_writes"] = N + off
    else:                                      # rate pool: OR each entry into the accumulator, sweep per step
        c["cycles"] = T * (LAYER_SETUP + drain + N + drain) + K.sum(axis=1)
        c["acc_reads"] = K.sum(axis=1) + N * T
    c["acc_writes"] = c["acc_reads"].copy()
    if model.coding == "tsc":
        # the generator that sends this layer's values runs in the next layer's window; a pool
        # counts down from its stored value with theta = 1, so it reads no parameters
        c["cycles"] = c["cycles"] + T * (N + GEN_DRAIN)
        c["state_reads"] = c["state_reads"] + N * T
        c["state_writes"] = c["state_writes"] + N * T
        if conv:
            c["param_reads"] = c["param_reads"] + N * T
        c["neuron_updates"] = c["neuron_updates"] + n * T
    return c


# ---------------------------------------------------------------------------------------------
# the cycle breakdown: every part from docs/spec.md's formulas, from the activity alone, and
# checked against the cycles counter :func:`count` computed; the two are written apart so that a
# wrong part (or a wrong counter) shows as a mismatch

def phase_activity(model, lanes: int, act: Activity, banks: int = 1) -> list:
    """Per layer, the activity its phases' cycles depend on (docs/spec.md sections 3 and 4), as a dict
    of int64 arrays over the batch: ``E`` (B, T) input events per step; stcb: ``A`` (B,) active input
    trains; maxpool2d (rate, tsc): ``K`` (B, T) input entries, one scatter op each; conv2d: ``X``,
    ``Z`` (B, T) valid event-offset pairs and events with no valid offset
    (stcb: ``XA``, ``ZA`` (B,) over the active trains); with ``banks`` > 1 also ``XB`` (stcb: ``XBA``),
    the bundles (:func:`conv_bundles`) that take the place of ``X`` in the scatter's cycles. Counts no
    cycle: :func:`breakdown_totals` turns these into the parts of ``cycles``."""
    with shared_counts():
        out = []
        src = act.inputs
        for li, layer in enumerate(model.layers):
            a = {"E": events_per_step(src)}
            if model.coding == "stcb":
                trains = src.any(axis=1)
                a["A"] = trains.sum(axis=1, dtype=np.int64)
            if getattr(layer, "kind", "dense") == "maxpool2d" and pool_scatters_entries(model.coding):
                a["K"] = _entries(src, lanes, tuple(layer.in_shape))     # a pool's ops: one per entry
            if getattr(layer, "kind", "dense") == "conv2d":
                if model.coding == "stcb":
                    a["XA"], a["ZA"] = conv_taps(layer, trains)
                    if banks > 1:
                        a["XBA"] = conv_bundles(layer, trains, banks)
                else:
                    a["X"], a["Z"] = _shared_taps(layer, src)
                    if banks > 1:
                        a["XB"] = conv_bundles(layer, src, banks)
            out.append(a)
            src = act.layers[li]
        return out


def _layer_parts(model, li: int, P: int, a: dict) -> dict:
    """The parts of layer ``li``'s cycles, per sample (B,), from docs/spec.md's formulas."""
    layer, T, coding = model.layers[li], model.T, model.coding
    kind = getattr(layer, "kind", "dense")
    last = li == len(model.layers) - 1
    drain = layer_drain(coding, model.encoding)
    slot = max(1, T * kernel_taps(model))                 # the slot unit's cycles per group or word
    sdrain = stcb_layer_drain(T, kernel_taps(model), model.encoding == "direct")
    zero = np.zeros(a["E"].shape[0], dtype=np.int64)
    if kind == "dense":
        G = groups(layer.n_out, P)
        if coding == "stcb":                              # one phase: groups of max(1, A) ops, T*taps apart
            ops = np.maximum(a["A"], 1)
            parts = {"setup": zero + LAYER_SETUP, "ops": G * ops,
                     "slot wait": (G - 1) * np.maximum(slot - ops, 0), "drain": zero + sdrain}
        else:
            parts = {"setup": zero + T * LAYER_SETUP, "ops": G * np.maximum(a["E"], 1).sum(axis=1),
                     "drain": zero + T * drain}
            if coding == "tsc" and not last:
                parts["ON/OFF generator"] = zero + T * (G + GEN_DRAIN)
        return parts
    C, Ho, Wo = layer.out_shape
    N = groups(C, P) * Ho * Wo
    Gc = groups(C, P)
    if coding == "stcb":                                  # one phase: scatter, its drain, one sweep
        if kind == "conv2d":
            return {"setup": zero + LAYER_SETUP, "scatter": Gc * a.get("XBA", a["XA"]) + a["ZA"], "sweep": zero + N,
                    "slot wait": zero + (N - 1) * (slot - 1), "drain": zero + drain + sdrain}
        return {"setup": zero + LAYER_SETUP, "scatter": a["A"].copy(), "sweep": zero + N,
                "drain": zero + 2 * drain}
    gen = {"ON/OFF generator": zero + T * (N + GEN_DRAIN)} if coding == "tsc" else {}
    if kind == "conv2d":
        scatter = Gc * a.get("XB", a["X"]).sum(axis=1) + a["Z"].sum(axis=1)
    else:
        scatter = a["K"].sum(axis=1)
    if kind == "maxpool2d" and coding == "tsc":           # per step the events only; one clear sweep
        return {"setup": zero + T * LAYER_SETUP, "scatter": scatter, "clear sweep": zero + N,
                "drain": zero + T * drain, **gen}
    return {"setup": zero + T * LAYER_SETUP, "scatter": scatter, "sweep": zero + T * N,
            "drain": zero + 2 * T * drain, **gen}


def breakdown_parts(model, lanes: int, result) -> dict:
    """The cycles of every sample, split by what the core does, each part (B,) int64 computed from
    docs/spec.md's formulas and the run's activity (``result.phase_activity``), not from the counters:
    load; encode (tsc: the input generator; direct: 0); per layer its setup, ops (dense) or scatter and
    sweep (conv2d, maxpool2d; tsc pool: its clear sweep), the slot unit's wait (stcb), the drains and
    the ON/OFF generator (tsc); finish; readout. Raises AssertionError, naming the layer, when the
    parts do not add up to the cycles counters of ``result`` sample by sample."""
    P, T = int(lanes), model.T
    acts = getattr(result, "phase_activity", None)
    if acts is None:
        raise ValueError("the result carries no phase activity (golden.run records it)")
    B = result.batch
    first = model.layers[0]
    g_in = map_words(model.n_in, P, tuple(model.input_shape) if _spatial(first) else None)
    zero = np.zeros(B, dtype=np.int64)
    if model.coding == "tsc":
        enc_name, enc = "input generator", T * (g_in + GEN_DRAIN)
    elif model.encoding == "direct":
        enc_name, enc = "encode", 0
    elif model.coding == "stcb":
        enc_name, enc = "encode", g_in + train_encoder_drain(T)
    else:
        enc_name, enc = "encode", T * (g_in + ENC_DRAIN)
    out = {"load": zero + model.n_in * LOAD_CYCLES_PER_BEAT + LOAD_DRAIN, enc_name: zero + enc}
    for li, a in enumerate(acts):
        parts = _layer_parts(model, li, P, a)
        have = sum(parts.values())
        want = np.asarray(result.layer_counters[li]["cycles"])
        if not np.array_equal(have, want):
            s = int(np.flatnonzero(have != want)[0])
            raise AssertionError(f"cycle breakdown of layer {li}: {int(have[s])} != its cycles counter "
                                 f"{int(want[s])} (sample {s}; parts {({k: int(v[s]) for k, v in parts.items()})})")
        out.update({f"layer {li} {k}": v for k, v in parts.items()})
    out["finish"] = zero + finish_cycles(P)
    out["readout"] = zero + groups(model.n_out, P) * READ_CYCLES_PER_GROUP + model.n_out
    have, want = sum(out.values()), np.asarray(result.counters["cycles"])
    if not np.array_equal(have, want):
        s = int(np.flatnonzero(have != want)[0])
        raise AssertionError(f"cycle breakdown {int(have[s])} != cycles counter {int(want[s])} (sample {s})")
    return out


def breakdown_totals(model, lanes: int, result) -> dict:
    """Cycles summed over the batch, split as :func:`breakdown_parts` splits them (and checked the same
    way: the parts add up to the cycles counter of every sample and layer)."""
    return {k: int(v.sum()) for k, v in breakdown_parts(model, lanes, result).items()}


def breakdown(model, lanes: int, result) -> dict:
    """Mean cycles per inference split by what the core does (:func:`breakdown_totals` / batch)."""
    return {k: v / result.batch for k, v in breakdown_totals(model, lanes, result).items()}
