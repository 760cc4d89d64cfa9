"""conv2d and maxpool2d layers on the SpikeCore (Amaranth simulator) against golden: predictions,
spike counts, membranes, per-layer spikes and every counter (acc_reads and acc_writes included),
exactly (docs/spec.md section 3, "conv2d and maxpool2d dataflow")."""

import numpy as np
import pytest

import golden

from golden import Dense, Model, perf
from golden.model import Conv2d, MaxPool2d
from hw import ConfigError, CoreConfig
from core_check import run_both


def conv_net(seed, *, in_shape=(1, 6, 6), convs=((4, 3, 1, 1),), pool_after=(0,), dense=5, T=3, encoding="rate",
             readout="count", resets=None, leaks=None, v_init=(-2, 3), input_max=5, samples=3,
             coding="rate", kernels=None):
    """conv layers (channels, kernel, stride, padding), a 2x2 max pool after the convs listed in
    ``pool_after``, then a dense layer; fixed-seed weights that make the layers fire. ``resets`` and
    ``leaks`` map a layer index to its reset and leak [num, shift]. ``coding="tsc"``: tsc coding (tsc
    encoding, membrane readout, v_init 0); a conv layer's v_init is drawn from ``v_init`` [lo, hi).
    ``kernels``: stcb's STEB kernel h of each layer with neurons, by layer index (default [1])."""
    rng = np.random.default_rng(seed)
    tsc = coding == "tsc"
    if tsc:
        encoding, readout = "tsc", "membrane"
    layers, shape = [], tuple(in_shape)
    for i, (co, k, s, p) in enumerate(convs):
        reset = (resets or {}).get(len(layers), "subtract")
        h = (kernels or {}).get(len(layers), [1])
        v0 = rng.integers(*v_init, co)
        layers.append(Conv2d(rng.integers(-6, 10, (co, shape[0], k, k)), rng.integers(-2, 3, co),
                             rng.integers(4, 14, co), 0 * v0 if tsc else v0, h, in_shape=shape, stride=s,
                             padding=p, reset=reset, leak=(leaks or {}).get(len(layers))))
        shape = layers[-1].out_shape
        if i in pool_after:
            layers.append(MaxPool2d(2, in_shape=shape))
            shape = layers[-1].out_shape
    n = int(np.prod(shape))
    for d in (dense,) if isinstance(dense, int) else dense:     # one dense layer, or several
        layers.append(Dense(rng.integers(-8, 8, (d, n)), rng.integers(-2, 3, d), rng.integers(3, 10, d),
                            0, (kernels or {}).get(len(layers), [1]), reset=(resets or {}).get(len(layers), "subtract"),
                            leak=(leaks or {}).get(len(layers))))
        n = d
    model = Model(layers, T=T, coding=coding, encoding=encoding, input_max=input_max, readout=readout,
                  weight_bits=5)
    x = rng.integers(0, input_max + 1, (samples, int(np.prod(in_shape))))
    x[0] = 0                                     # an all-zero sample: every scatter is empty
    return model, x


def assert_matches_golden(model, x, lanes, *, uses_acc=True):
    _, g = run_both(model, x, lanes)
    # the network was exercised: spikes in every layer, and the accumulator memory used (not by a tsc
    # maxpool2d layer alone: its values are in the state memory)
    assert all(int(c["spikes"].sum()) > 0 for c in g.layer_counters[:-1])
    assert (int(g.counters["acc_reads"].sum()) > 0) == uses_acc
    return g


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_conv_pool_dense_matches_golden(encoding, lanes):
    model, x = conv_net(lanes, encoding=encoding)
    assert_matches_golden(model, x, lanes)


@pytest.mark.parametrize("case", [
    # two convs with a pool between them (the digits architecture, small): the second conv's input is a
    # packed channel-word map of more than one channel group
    dict(in_shape=(1, 8, 8), convs=((6, 3, 1, 1), (5, 3, 1, 1)), pool_after=(0,), lanes=4),
    # a map whose packed index space is exactly its size (no padding), so only the order of a dense
    # consumer's weight columns tells the channel-word layout from the flat one
    dict(in_shape=(1, 8, 8), convs=((4, 3, 1, 1),), pool_after=(0,), lanes=2),
    # stride 2, no padding, a non-square map and an input row no output uses (events with no valid offset)
    dict(in_shape=(1, 7, 6), convs=((3, 3, 2, 0),), pool_after=(), lanes=2),
    # kernel 5 with padding 2, several input channels (rate), channels not a multiple of P
    dict(in_shape=(3, 5, 5), convs=((5, 5, 1, 2),), pool_after=(), lanes=4),
    # kernel 1, then a pool, membrane readout
    dict(in_shape=(2, 4, 4), convs=((3, 1, 1, 0),), pool_after=(0,), lanes=2, readout="membrane"),
    # zero reset in the conv layer and in the dense layer
    dict(in_shape=(1, 6, 6), convs=((4, 3, 1, 1),), pool_after=(0,), lanes=2, resets={0: "zero", 2: "zero"}),
])
def test_conv_shapes_match_golden(case):
    case = dict(case)
    lanes = case.pop("lanes")
    model, x = conv_net(11, **case)
    assert_matches_golden(model, x, lanes)


# ---- leaky conv2d layers (docs/spec.md section 2: V <- (V * num) >> shift before the current, at step 0 too,
# on v_init): the sweep's word reaches the IfUnit as a dense op does, so the state word read in the walker's
# cycle (v_init at step 0) goes through the unit's multiplier and shifter ahead of the adders

@pytest.mark.parametrize("case", [
    # zero reset in the leaky conv layer, a second leaky conv (another shift: a shifter, not wiring), P = 2
    dict(encoding="rate", in_shape=(1, 8, 8), convs=((6, 3, 1, 1), (5, 3, 1, 1)), pool_after=(0,), T=5,
         resets={0: "zero", 2: "zero"}, leaks={0: (3, 2), 2: (13, 4)}, lanes=2),
    # subtract reset, a leak on the conv and on the dense layer that share the shift (a constant), P = 4
    dict(encoding="rate", convs=((5, 3, 1, 1),), T=4, resets={0: "subtract"}, leaks={0: (11, 4), 2: (7, 4)},
         lanes=4),
    # direct input (the term stage: the leaked V registered before the bias), zero reset, P = 1 and 8
    dict(encoding="direct", T=4, resets={0: "zero"}, leaks={0: (5, 3)}, lanes=1),
    dict(encoding="direct", convs=((10, 3, 1, 1),), T=3, resets={0: "subtract", 2: "zero"},
         leaks={0: (1, 1), 2: (3, 2)}, lanes=8),
    # a kernel-1 conv, membrane readout from a dense layer whose leak clears V each step (num = 0)
    dict(encoding="rate", in_shape=(2, 4, 4), convs=((3, 1, 1, 0),), readout="membrane",
         leaks={0: (1, 2), 2: (0, 0)}, resets={0: "zero"}, lanes=2),
])
def test_leaky_conv_matches_golden(case):
    case = dict(case)
    lanes = case.pop("lanes")
    # v_init well below 0, so the floor of a negative product matters at step 0
    model, x = conv_net(21, v_init=(-30, 20), **case)
    assert_matches_golden(model, x, lanes)
    # the leak changes the outcome (else this would not test it)
    case.pop("leaks")
    plain, _ = conv_net(21, v_init=(-30, 20), **case)
    assert all(l.leak is None for l in plain.layers if l.kind != "maxpool2d")
    assert golden.run(plain, x).membranes.tolist() != golden.run(model, x).membranes.tolist()


def test_an_all_zero_sample_reads_no_conv_weights():
    """Event-driven: with rate encoding an all-zero input sends no event, so the first conv layer's
    scatter reads no weight and no accumulator word; only its sweep runs."""
    model, x = conv_net(5, samples=2)
    g = assert_matches_golden(model, x, 2)
    assert x[0].sum() == 0 and int(g.layer_counters[0]["weight_reads"][1]) > 0
    c0 = g.layer_counters[0]
    assert int(c0["weight_reads"][0]) == 0
    words = 2 * 6 * 6                            # Gc * Ho * Wo at P = 2
    assert int(c0["acc_reads"][0]) == words * model.T


# ---- tsc coding (docs/spec.md section 3, "tsc conv2d"): each step's scatter adds an ON's weights and
# subtracts an OFF's, the sweep feeds the accumulator word to the tsc unit (C += acc; V += C), and the
# generator in the next layer's window walks the conv layer's N state words, reading parameter word og

@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
def test_tsc_conv_dense_matches_golden(lanes):
    model, x = conv_net(lanes, pool_after=(), coding="tsc", T=4)
    assert_matches_golden(model, x, lanes)


@pytest.mark.parametrize("case", [
    # two convs, the second with stride 2: its source is a conv map of two channel groups (the
    # generator's second map row), several input channels into the second conv
    dict(in_shape=(1, 8, 8), convs=((6, 3, 1, 1), (5, 3, 2, 1)), T=5, lanes=4),
    # stride 2, no padding, a non-square map, an input row no output uses
    dict(in_shape=(1, 7, 6), convs=((3, 3, 2, 0),), lanes=2),
    # kernel 5 with padding 2, three input channels (the input map's last channel group has fewer
    # real lanes than P), output channels not a multiple of P
    dict(in_shape=(3, 5, 5), convs=((5, 5, 1, 2),), lanes=4),
    # kernel 1, two input channels
    dict(in_shape=(2, 4, 4), convs=((3, 1, 1, 0),), lanes=2),
    # two dense layers after the conv: the second's generator reads the first's parameters at its own
    # parameter base (not its state base, which the conv layer's N words moved)
    dict(in_shape=(1, 6, 6), convs=((4, 3, 1, 1),), dense=(7, 4), lanes=2),
    # ten channels at P = 8 (a second, partial channel group), T = 6
    dict(in_shape=(3, 6, 6), convs=((10, 3, 1, 1),), dense=5, T=6, lanes=8),
])
def test_tsc_conv_shapes_match_golden(case):
    case = dict(case)
    lanes = case.pop("lanes")
    case.setdefault("T", 4)
    model, x = conv_net(11, pool_after=(), coding="tsc", **case)
    assert_matches_golden(model, x, lanes)


def test_tsc_an_all_zero_sample_reads_no_conv_weights():
    """An all-zero input sends no ON (its quantized value is 0), so every step's scatter is empty: no
    weight read, only the sweeps' accumulator reads; the sweep still runs (V = bias at t = 0)."""
    model, x = conv_net(5, samples=2, pool_after=(), coding="tsc", T=4)
    g = assert_matches_golden(model, x, 2)
    c0 = g.layer_counters[0]
    assert x[0].sum() == 0 and int(c0["weight_reads"][1]) > 0
    assert int(c0["weight_reads"][0]) == 0
    assert int(c0["acc_reads"][0]) == 2 * 6 * 6 * model.T      # Gc * Ho * Wo at P = 2, each step


# ---- tsc maxpool2d (docs/spec.md section 3, "tsc maxpool2d"): the values in the state memory; a clear
# sweep at step 0; an OFF at step t >= 1 a read-modify-write putting t into its lane; the generator in
# the next layer's window counts the values down with theta = 1 and reads no parameters

@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
def test_tsc_conv_pool_dense_matches_golden(lanes):
    model, x = conv_net(lanes, coding="tsc", T=5)
    assert_matches_golden(model, x, lanes)


@pytest.mark.parametrize("case", [
    # conv, pool, conv: the second conv's events come from the pool's generator (a map of two channel
    # groups, the generator's third map row)
    dict(in_shape=(1, 8, 8), convs=((6, 3, 1, 1), (5, 3, 1, 1)), pool_after=(0,), T=5, lanes=4),
    # five channels (the pool's last channel group has one real lane of four), a non-square map
    dict(in_shape=(1, 6, 8), convs=((5, 3, 1, 1),), pool_after=(0,), T=4, lanes=4),
    # kernel 1 into the pool, two input channels, T = input_max + 1 (Q = input_max)
    dict(in_shape=(2, 4, 4), convs=((3, 1, 1, 0),), pool_after=(0,), T=6, lanes=2),
])
def test_tsc_pool_shapes_match_golden(case):
    case = dict(case)
    lanes = case.pop("lanes")
    model, x = conv_net(11, coding="tsc", **case)
    assert_matches_golden(model, x, lanes)


@pytest.mark.parametrize("K, shape, lanes", [(2, (3, 4, 6), 2), (3, (2, 6, 3), 4)])
def test_tsc_pool_on_the_input_matches_golden(K, shape, lanes):
    """A maxpool2d layer 0: its events are the input generator's, from the input map stored by channel
    words; kernel 3 (a divider-free ROM lookup of y // K, x // K), channels not a multiple of P."""
    rng = np.random.default_rng(3 + K)
    pool = MaxPool2d(K, in_shape=shape)
    n = int(np.prod(pool.out_shape))
    model = Model([pool, Dense(rng.integers(-8, 8, (6, n)), rng.integers(-2, 3, 6), rng.integers(1, 4, 6), 0),
                   Dense(rng.integers(-8, 8, (3, 6)), 0, 4, 0)], T=5, coding="tsc", encoding="tsc",
                  readout="membrane", input_max=7, weight_bits=5)
    x = rng.integers(0, 8, (3, int(np.prod(shape))))
    x[0] = 0
    g = assert_matches_golden(model, x, lanes, uses_acc=False)
    c0, N = g.layer_counters[0], perf.groups(shape[0], lanes) * (shape[1] // K) * (shape[2] // K)
    # the all-zero sample: no OFF, so only the clear sweep and the generator touch the pool's words
    assert int(c0["state_writes"][0]) == N + N * model.T and int(c0["state_reads"][0]) == N * model.T
    assert int(c0["param_reads"].sum()) == 0


# ---- stcb coding (docs/spec.md section 3, "stcb"): one phase per layer; the scatter adds each active
# train's weights into the T slots of a P x T-slot accumulator word where the train's bits are set (a pool
# ORs the trains); the sweep hands each word with its parameter word to the serial slot unit, one every
# T * taps cycles, which runs the STEB kernel and the IF over the T slots from v_init

@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
def test_stcb_conv_pool_dense_matches_golden(lanes):
    # a kernel of three taps in the conv layer, two in the dense one: the sweep's words 15 cycles apart
    model, x = conv_net(lanes, coding="stcb", T=5, kernels={0: [2, -1, 1], 2: [1, 1]})
    assert_matches_golden(model, x, lanes)


@pytest.mark.parametrize("case", [
    # conv, pool, conv (the digits architecture, small), both convs with a kernel: the second conv's
    # events are the pool's trains, a map of two channel groups; 6 and 5 channels at P = 4
    dict(in_shape=(1, 8, 8), convs=((6, 3, 1, 1), (5, 3, 1, 1)), pool_after=(0,), kernels={0: [1, -1, 2], 2: [2, 1]},
         T=6, lanes=4),
    # ten channels at P = 8 (a second, partial channel group), three input channels (the train encoder's
    # input map has a partial last channel group), a pool
    dict(in_shape=(3, 6, 6), convs=((10, 3, 1, 1),), pool_after=(0,), kernels={0: [1, 1, -1]}, T=6, lanes=8),
    # stride 2, no padding, a non-square map and an input row no output uses (trains with no valid offset)
    dict(in_shape=(1, 7, 6), convs=((3, 3, 2, 0),), pool_after=(), T=4, lanes=2),
    # kernel 5 with padding 2, several input channels, channels not a multiple of P
    dict(in_shape=(3, 5, 5), convs=((5, 5, 1, 2),), pool_after=(), kernels={0: [1, 2]}, T=4, lanes=4),
    # zero reset in the conv layer and the dense layer, membrane readout
    dict(in_shape=(1, 6, 6), convs=((4, 3, 1, 1),), pool_after=(0,), resets={0: "zero", 2: "zero"},
         readout="membrane", T=4, lanes=2),
    # two dense layers after the conv, with kernels
    dict(in_shape=(1, 6, 6), convs=((4, 3, 1, 1),), pool_after=(), dense=(7, 4), kernels={1: [1, 2], 2: [1, -1]},
         T=4, lanes=2),
    # direct input: every non-zero pixel's weight times its value into all T slots
    dict(encoding="direct", kernels={0: [1, 1]}, T=4, lanes=2),
    # T = 1: one slot, words one cycle apart (the sweep at full rate)
    dict(T=1, lanes=4),
])
def test_stcb_conv_shapes_match_golden(case):
    case = dict(case)
    lanes = case.pop("lanes")
    model, x = conv_net(7, coding="stcb", **case)
    assert_matches_golden(model, x, lanes)


@pytest.mark.parametrize("K, shape, lanes", [(2, (3, 4, 6), 2), (3, (2, 6, 3), 4)])
def test_stcb_pool_on_the_input_matches_golden(K, shape, lanes):
    """A maxpool2d layer 0 in stcb: the train encoder's entries name the input map's packed channel words,
    the pool ORs their trains (kernel 3: the divider-free ROMs), channels not a multiple of P."""
    rng = np.random.default_rng(3 + K)
    pool = MaxPool2d(K, in_shape=shape)
    n = int(np.prod(pool.out_shape))
    model = Model([pool, Dense(rng.integers(-8, 8, (6, n)), rng.integers(-2, 3, 6), rng.integers(1, 4, 6), 0, [1, 1]),
                   Dense(rng.integers(-8, 8, (3, 6)), 0, 4, 0)], T=5, coding="stcb", input_max=7, weight_bits=5)
    x = rng.integers(0, 8, (3, int(np.prod(shape))))
    x[0] = 0
    assert_matches_golden(model, x, lanes)


def test_stcb_an_all_zero_sample_reads_no_conv_weights():
    """An all-zero input sends no train, so the first conv layer's scatter reads no weight; its sweep
    reads each accumulator word once (one phase per layer) and hands it to the slot unit."""
    model, x = conv_net(5, samples=2, coding="stcb", T=4, kernels={0: [1, 2]})
    g = assert_matches_golden(model, x, 2)
    c0 = g.layer_counters[0]
    assert x[0].sum() == 0 and int(c0["weight_reads"][1]) > 0
    assert int(c0["weight_reads"][0]) == 0
    words = 2 * 6 * 6                            # Gc * Ho * Wo at P = 2
    assert int(c0["acc_reads"][0]) == words and int(c0["param_reads"][0]) == words
    # the sweep's words go to the slot unit T * taps cycles apart
    # (an empty scatter costs no cycle: only the setup, the scatter's drain and the sweep with its drain)
    assert int(c0["cycles"][0]) == perf.LAYER_SETUP + perf.layer_drain("stcb", "rate") + \
        perf.stcb_sweep_cycles(words, 4, 2, False)


def test_conv_model_refusals():
    model, _ = conv_net(0, encoding="rate")
    # every coding runs conv2d and maxpool2d layers now (stcb too); direct input by channel words needs one
    # input channel
    CoreConfig(Model(model.layers, T=4, coding="stcb", input_max=5, weight_bits=5), 2)
    CoreConfig(Model([MaxPool2d(2, in_shape=(1, 4, 4)), Dense(np.ones((1, 4), int))], T=2, coding="stcb",
                     input_max=1), 2)
    rng = np.random.default_rng(0)
    c = Conv2d(rng.integers(-3, 4, (2, 2, 3, 3)), 0, 5, 0, in_shape=(2, 4, 4), padding=1)
    d = Model([c, Dense(rng.integers(-3, 4, (3, 32)), 0, 5, 0)], T=2, encoding="direct", input_max=5)
    with pytest.raises(ConfigError, match=r"direct input into a conv2d layer needs one input channel"):
        CoreConfig(d, 2)


@pytest.mark.parametrize("coding, encoding, lanes, banks", [("rate", "rate", 2, 1), ("rate", "direct", 1, 1),
                                                            ("stcb", "rate", 2, 1), ("tsc", "tsc", 2, 1),
                                                            ("rate", "rate", 2, 3), ("tsc", "tsc", 1, 2)])
def test_the_accumulator_lanes_hold_the_conv_sums_at_their_extremes(coding, encoding, lanes, banks):
    """The accumulator memory's lanes are as wide as the conv2d layers' synaptic sums need (acc_mem_bits),
    not the datapath's acc_bits, which also spans V and the thresholds: a channel whose weights are all
    the largest weight and one whose weights are all the most negative, under an input at input_max
    everywhere, reach both ends of that range in every step's sums, and the core still equals golden (with
    banks too, whose lanes hold parts of those sums)."""
    from golden.geometry import CoreGeometry
    from golden.model import signed_bits
    tsc = coding == "tsc"
    M, T = 3, 4
    w = np.stack([np.full((1, 3, 3), 15), np.full((1, 3, 3), -16)])       # weight_bits 5: -16..15
    conv = Conv2d(w, 0, 60, 0, in_shape=(1, 5, 5))                           # no padding: all 9 offsets
    rng = np.random.default_rng(1)
    dense = Dense(rng.integers(-8, 8, (3, conv.n_out)), 0, 4, 0)
    model = Model([conv, dense], T=T, coding=coding, encoding=encoding, input_max=M, weight_bits=5,
                  readout="membrane" if tsc else "count")
    g = CoreGeometry(model, lanes, banks)
    smax = M if encoding == "direct" else 1
    assert g.acc_mem_bits == signed_bits(-16 * 9 * smax, 15 * 9 * smax) < g.acc_bits
    assert g.memories()["acc"]["width"] == lanes * g.acc_mem_bits * (T if coding == "stcb" else 1)
    x = np.stack([np.full(25, M), rng.integers(0, M + 1, 25)])
    _, r = run_both(model, x, lanes, banks)
    assert int(r.counters["acc_reads"].sum()) > 0 and int(r.layer_counters[0]["spikes"][0]) > 0
