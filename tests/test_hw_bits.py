"""hw.bits: the shallow-logic helpers, exhaustively against plain Python in the Amaranth simulator."""

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from hw.bits import at_most, times_const, times_layer_const


def _table(m, inputs, out, values, setup=None):
    """{value: out} with ``inputs`` set to each value (a settle cycle when ``setup`` clocks a register)."""
    got = {}
    sim = Simulator(m)
    if setup is not None:
        sim.add_clock(1e-6)

    async def bench(ctx):
        for v in values:
            for sig, val in zip(inputs, v if isinstance(v, tuple) else (v,)):
                ctx.set(sig, val)
            if setup is not None:
                await ctx.tick()
            got[v] = ctx.get(out)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("width,k", [(1, 1), (4, 1), (8, 1), (8, 2), (5, 2)])
def test_at_most_counts_the_set_bits(width, k):
    """at_most(bits, k) over every value: the event reader's one-lane flags rest on it."""
    bits, out = Signal(width), Signal()
    m = Module()
    m.d.comb += out.eq(at_most(bits, k))
    got = _table(m, [bits], out, range(1 << width))
    assert got == {v: int(bin(v).count("1") <= k) for v in range(1 << width)}


@pytest.mark.parametrize("k", [0, 1, 4, 9, 25, 49, 121])
def test_times_const_is_the_product(k):
    x, out = Signal(6), Signal(16)
    m = Module()
    m.d.comb += out.eq(times_const(x, k))
    assert _table(m, [x], out, range(64)) == {v: v * k for v in range(64)}


def test_times_const_refuses_a_negative_constant():
    with pytest.raises(ValueError):
        times_const(Signal(4), -1)


@pytest.mark.parametrize("consts", [[9], [9, 1, 9], [25, 9, 1, 49]])
def test_times_layer_const_picks_the_layers_constant_a_cycle_after_the_layer(consts):
    """ConvAddressGen's c * K * K: the layer is held through a phase, the select registered from it."""
    x, layer, out = Signal(5), Signal(range(len(consts))), Signal(12)
    m = Module()
    m.d.comb += out.eq(times_layer_const(m, x, consts, layer))
    m.d.sync += Signal().eq(1)            # a sync domain even where one constant needs no select
    values = [(c, li) for li in range(len(consts)) for c in range(32)]
    got = _table(m, [x, layer], out, values, setup=True)
    assert got == {(c, li): c * consts[li] for c, li in values}
