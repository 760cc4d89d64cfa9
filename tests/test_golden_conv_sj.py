"""golden equals SpikingJelly on integer conv networks (design.md, schema 2: the equivalence to name).

Rate-coded conv2d + IF with reset subtract is SpikingJelly's ``layer.Conv2d`` + ``neuron.IFNode(v_reset=None)``;
reset zero is ``IFNode(v_reset=0.0)``; max pooling is ``layer.MaxPool2d``; a dense layer after a
spatial one is ``layer.Flatten`` + ``layer.Linear``. Multi-step mode, float64: integer weights, a
threshold per layer shared by every channel and v_init = 0 keep every value an exact float64
integer, so the comparison is exact (no tolerance). The input spikes come from golden's rate encoder.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

torch = pytest.importorskip("torch")
sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer as sl, neuron  # noqa: E402

import golden  # noqa: E402
from golden import Conv2d, Dense, MaxPool2d, Model  # noqa: E402


def to_spikingjelly(model: Model) -> list:
    """One SpikingJelly stage per golden layer: (modules, node or None)."""
    stages, spatial = [], False
    for i, l in enumerate(model.layers):
        if l.kind == "maxpool2d":
            stages.append(([sl.MaxPool2d(l.kernel, step_mode="m")], None))
            continue
        theta = float(l.threshold[0])
        assert (l.threshold == l.threshold[0]).all() and (l.v_init == 0).all() and l.leak is None
        if l.kind == "conv2d":
            C, Co = l.in_shape[0], l.channels
            mod = sl.Conv2d(C, Co, l.kernel, stride=l.stride, padding=l.padding, bias=True, step_mode="m")
            mods = [mod]
        else:
            mod = sl.Linear(l.n_in, l.n_out, bias=True, step_mode="m")
            mods = ([sl.Flatten(step_mode="m")] if spatial else []) + [mod]
        with torch.no_grad():
            mod.weight.copy_(torch.tensor(l.weight, dtype=torch.float64))
            mod.bias.copy_(torch.tensor(l.bias, dtype=torch.float64))
        last_membrane = i == len(model.layers) - 1 and model.readout == "membrane"
        node = None if last_membrane else neuron.IFNode(v_threshold=theta, v_reset=None if l.reset == "subtract"
                                                        else 0.0, step_mode="m")
        stages.append((mods + ([node] if node else []), node))
        spatial = l.kind == "conv2d"
    for mods, _ in stages:
        for m in mods:
            m.to(torch.float64)
    return stages


def sj_run(model: Model, x: np.ndarray, input_spikes) -> tuple[list, list]:
    """Per layer: spikes (B, T, n) and final membranes (B, n) (None for pools)."""
    stages = to_spikingjelly(model)
    B, T = x.shape[0], model.T
    if model.encoding == "rate":
        seq = torch.tensor(input_spikes.transpose(1, 0, 2), dtype=torch.float64)           # (T, B, n_in)
    else:
        seq = torch.tensor(np.repeat(x[None], T, axis=0), dtype=torch.float64)
    if len(model.input_shape) == 3:
        seq = seq.reshape(T, B, *model.input_shape)
    spikes, v_final = [], []
    with torch.no_grad():
        for mods, node in stages:
            for m in mods:
                seq = m(seq)
            out = seq.reshape(T, B, -1).permute(1, 0, 2).numpy()
            if node is not None:
                spikes.append(out)
                v_final.append(node.v.reshape(B, -1).numpy())
            elif isinstance(mods[0], sl.MaxPool2d):
                spikes.append(out)
                v_final.append(None)
            else:                                   # membrane readout: V = sum of the currents
                spikes.append(np.zeros_like(out))
                v_final.append(out.sum(axis=1))
        for mods, _ in stages:
            functional.reset_net(torch.nn.Sequential(*mods))
    return spikes, v_final


def assert_equal(model, x):
    r = golden.run(model, x, record=True)
    spikes, v_final = sj_run(model, x, r.input_spikes)
    for li in range(len(model.layers)):
        np.testing.assert_array_equal(r.spikes[li], spikes[li].astype(np.uint8), err_msg=f"layer {li} spikes")
        if v_final[li] is None:
            assert r.v_final[li] is None
        else:
            assert (v_final[li] == np.round(v_final[li])).all()                  # exact integers
            np.testing.assert_array_equal(r.v_final[li], v_final[li].astype(np.int64), err_msg=f"layer {li} V")
    return r


@st.composite
def integer_conv_nets(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(3, 8)), draw(st.integers(3, 8)))
    input_shape = shape
    T = draw(st.integers(1, 6))
    enc = draw(st.sampled_from(["rate", "rate", "direct"]))
    layers = []
    for i in range(draw(st.integers(1, 3))):
        C, H, W = shape
        pools = [k for k in (2, 3) if H % k == 0 and W % k == 0]
        if pools and i and draw(st.booleans()):
            layers.append(MaxPool2d(draw(st.sampled_from(pools)), in_shape=shape))
        else:
            K = draw(st.sampled_from([1, 2, 3]))
            p = draw(st.integers(0, K - 1))
            if min(H, W) + 2 * p < K:
                p = K - 1
            Co = draw(st.integers(1, 6))
            layers.append(Conv2d(rng.integers(-8, 9, (Co, C, K, K)), rng.integers(-3, 4, Co), int(rng.integers(1, 20)),
                                 0, in_shape=shape, stride=draw(st.integers(1, 2)), padding=p,
                                 reset=draw(st.sampled_from(["subtract", "zero"]))))
        shape = layers[-1].out_shape
    n_out = draw(st.integers(1, 5))
    layers.append(Dense(rng.integers(-8, 9, (n_out, int(np.prod(shape)))), rng.integers(-3, 4, n_out),
                        int(rng.integers(1, 20)), 0, reset=draw(st.sampled_from(["subtract", "zero"]))))
    model = Model(layers, T=T, encoding=enc, input_max=draw(st.integers(1, 16)),
                  readout=draw(st.sampled_from(["count", "membrane"])), input_shape=input_shape)
    return model, rng.integers(0, model.input_max + 1, (draw(st.integers(1, 4)), model.n_in))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(integer_conv_nets())
def test_golden_equals_spikingjelly(mx):
    assert_equal(*mx)


def test_bench_network_equals_spikingjelly_on_digits():
    """The benchmark's 16c3-mp2-32c3-10 network, the whole digits test split, every spike."""
    from golden.bench import conv_bench_model
    x, _ = golden.datasets.load("digits", "test")
    r = assert_equal(conv_bench_model(), x)
    assert 0.02 < r.spikes[0].mean() < 0.5 and 0.02 < r.spikes[2].mean() < 0.5       # it really fires


def test_bench_times_each_side_as_a_batch_of_back_to_back_runs(monkeypatch):
    """golden.bench times a side as one batch of runs lasting at least MIN_TIMED_S, divided by its runs
    (a single 1-ms run is decided by the scheduler): with a clock that advances 7 ms per run, 8 runs make
    the batch, and the time per run is exactly 7 ms."""
    from golden import bench
    now = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    calls = []

    def run():
        calls.append(1)
        now[0] += 0.007
    assert bench.batch_runs(run, 0.05) == 8                       # ceil(50 / 7)
    assert len(calls) == bench.BATCH_PROBES
    assert bench._timed(run, 8) == pytest.approx(0.007, abs=1e-12)
    assert len(calls) == bench.BATCH_PROBES + 8
    assert bench.batch_runs(lambda: None, 0.05) >= 1              # a run faster than the clock: no division by 0


def test_bench_sizes_a_batch_from_the_fastest_probe(monkeypatch):
    """One slow probe (a scheduler tick, a waking thread) must not shrink the batch: runs of 40 ms,
    then 7 ms, still give the 8 runs that 50 ms of 7-ms runs need."""
    from golden import bench
    now = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    steps = iter([0.040] + [0.007] * 20)

    def run():
        now[0] += next(steps)
    assert bench.batch_runs(run, 0.05, probes=3) == 8
