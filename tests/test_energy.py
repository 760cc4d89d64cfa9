"""golden.energy: the table's figures and interpolation, a hand-computed counter set, the ANN baseline,
JSON overrides."""

import json

import numpy as np
import pytest

import golden
from golden import Dense, Model
from golden import energy as en

E = 10.0 / 64          # pJ per bit of word for every memory below 8 KB (the 8 KB point, clamped)


def test_default_table_names_every_source_and_is_valid():
    en.check_table(en.DEFAULT_TABLE)
    for k, v in en.DEFAULT_TABLE.items():
        assert isinstance(v["source"], str) and v["source"], k
    assert en.DEFAULT_TABLE["fp32_add"]["pj"] + en.DEFAULT_TABLE["fp32_mult"]["pj"] == pytest.approx(4.6)


def test_integer_ops_interpolate_linearly_in_bits():
    assert en.int_add_pj(8) == pytest.approx(0.03)
    assert en.int_add_pj(16) == pytest.approx(0.05)
    assert en.int_add_pj(32) == pytest.approx(0.1)
    assert en.int_add_pj(12) == pytest.approx(0.04)            # halfway between 8 and 16 bits
    assert en.int_add_pj(24) == pytest.approx(0.075)
    assert en.int_add_pj(4) == pytest.approx(0.015)            # below 8 bits: proportional
    assert en.int_add_pj(64) == pytest.approx(0.2)             # above 32 bits: proportional
    assert en.int_mult_pj(8) == pytest.approx(0.2) and en.int_mult_pj(32) == pytest.approx(3.1)
    assert en.int_mult_pj(20) == pytest.approx(0.2 + 12 * 2.9 / 24)


def test_sram_interpolates_in_log_size_and_scales_per_bit():
    assert en.sram_word_pj(64, 8192) == pytest.approx(10.0)
    assert en.sram_word_pj(64, 32768) == pytest.approx(20.0)
    assert en.sram_word_pj(64, 1 << 20) == pytest.approx(100.0)
    assert en.sram_word_pj(64, 16384) == pytest.approx(15.0)   # geometric midpoint of 8 KB and 32 KB
    assert en.sram_word_pj(32, 8192) == pytest.approx(5.0)     # half the word, half the energy
    assert en.sram_word_pj(64, 100) == pytest.approx(10.0)     # smaller than 8 KB: the 8 KB figure
    assert en.sram_word_pj(64, 1 << 24) == pytest.approx(100.0)
    assert en.sram_word_pj(8, 8192, write=True) == pytest.approx(1.25)


def _hand_model():
    # acc range [-2, 5] -> 4 bits; membrane range [-5, 5] -> v_bits 4; count readout, T=1 -> 1 count bit
    return Model([Dense(np.array([[3, -2], [1, 4]]), 0, 5, 0)], T=1, input_max=1, weight_bits=8)


def test_energy_of_a_hand_computed_counter_set():
    m = _hand_model()
    g = golden.run(m, np.array([[1, 1]]), lanes=2)
    # counters, by hand: both inputs spike at t=0, in one event entry; one group of two neurons
    lc, ec = g.layer_counters[0], g.encoder_counters
    assert [int(lc[k][0]) for k in ("syn_ops", "neuron_updates", "weight_reads", "state_reads", "state_writes",
                                   "param_reads", "event_reads", "event_writes")] == [4, 2, 2, 0, 1, 1, 1, 0]
    assert [int(ec[k][0]) for k in ("neuron_updates", "state_reads", "state_writes", "event_writes",
                                   "input_writes")] == [2, 1, 1, 1, 2]
    e = en.energy(m, g)
    # memories (P=2): weights 16 bits; state 10 (V 4 + count 1 per lane); params 20 (per lane: bias 0 in
    # 1 bit, threshold 5 (padding 1) in 4, v_init 0 in 1, bias - threshold -5 (padding -1) in 4); enc_x 4 (x 1 + x-input_max 1 per lane); enc_u 2; event entries 4 (group 1 + mask 2 + the one-lane flag).
    # All far below 8 KB, so every bit costs 10/64 pJ. The accumulator is 5 bits wide: V + bias + sum(w)
    # spans [-5 - 2, 5 + 5] and the same minus the threshold 5 reaches -12.
    expected = {
        "syn_adds": 4 * 0.03 * 5 / 8,                   # 4 syn_ops x a 5-bit add
        "neuron_updates": 2 * 3 * 0.015 + 2 * 2 * 0.0075,  # 3 adds at v_bits=4; encoder 2 adds at 2 bits
        "weight_reads": 2 * 16 * E,
        "state_reads": 1 * (4 + 2) * E,                 # layer: none at T=1; encoder: x and u words
        "state_writes": 1 * 10 * E + 1 * 2 * E,         # layer: the state word; encoder: the u word
        "param_reads": 1 * 20 * E,
        "event_reads": 1 * 4 * E,
        "event_writes": 1 * 4 * E,                      # the encoder's one entry
        "input_writes": 2 * 2 * E,                      # one 2-bit x lane per input beat
        "acc_reads": 0.0, "acc_writes": 0.0,            # a dense layer has no accumulator memory
    }
    for k, v in expected.items():
        assert e["mean_pj"][k] == pytest.approx(v, abs=1e-12), k
    total = 0.075 + 0.12 + 82 * E
    assert e["mean_total_pj"] == pytest.approx(total, abs=1e-12)
    assert e["total_pj"].shape == (1,)
    # ANN: 4 MACs; fp32 4.6 pJ + a 32-bit read; int8 0.2 + 0.1 pJ + an 8-bit read
    assert e["ann"]["macs"] == 4
    assert e["ann"]["float32"]["total_pj"] == pytest.approx(4 * 4.6 + 4 * 32 * E)
    assert e["ann"]["int8"]["total_pj"] == pytest.approx(4 * 0.3 + 4 * 8 * E)
    assert e["ratio_vs_ann"]["float32"] == pytest.approx(38.4 / total)


def test_energy_per_sample_follows_the_counters():
    m = _hand_model()
    g = golden.run(m, np.array([[1, 1], [0, 0], [1, 0]]), lanes=1)
    e = en.energy(m, g)
    assert e["total_pj"].shape == (3,)
    assert e["per_sample"]["weight_reads"][1] == 0.0          # no input spikes, no weight reads
    assert e["total_pj"][0] > e["total_pj"][2] > e["total_pj"][1]
    assert e["mean_total_pj"] == pytest.approx(float(e["total_pj"].mean()))
    with pytest.raises(ValueError):
        en.energy(m, g, lanes=4)


def test_conv_layers_charge_their_accumulator_accesses():
    # a 2x2 kernel over a 3x3 map into a 2x2 map, then a dense readout: the conv layer's accumulator words
    # (P lanes of acc_mem_bits) are read and written per scatter op and cleared by the sweep; every access
    # costs the word's bits at the 8 KB figure (the memory is tiny), a dense layer none
    from golden import Conv2d
    from golden.geometry import CoreGeometry
    conv = Conv2d([[[[1, 2], [-1, 1]]], [[[2, 0], [1, 1]]]], 0, 2, 0, in_shape=(1, 3, 3))
    m = Model([conv, Dense(np.ones((2, 8), dtype=int), 0, 3, 0)], T=4, input_max=3, weight_bits=8)
    x = np.array([[3, 0, 1, 2, 3, 0, 1, 1, 2], [0] * 9])
    g = golden.run(m, x, lanes=2)
    e = en.energy(m, g)
    # by hand: a channel's sums of any of its weights lie in [-1, 4] (channel 0: -1 .. 1 + 2 + 1), 4 signed
    # bits a lane, whatever the datapath's acc_bits
    assert CoreGeometry(m, 2).acc_mem_bits == 4 < CoreGeometry(m, 2).acc_bits
    width = 2 * 4
    lc = g.layer_counters
    assert lc[0]["acc_reads"][0] > 0 and lc[0]["acc_writes"][0] > 0 and lc[1]["acc_reads"][0] == 0
    for k in ("acc_reads", "acc_writes"):
        assert e["per_sample"][k] == pytest.approx(np.asarray(lc[0][k], dtype=float) * width * E, abs=1e-12), k
    assert e["mean_total_pj"] == pytest.approx(sum(e["mean_pj"].values()), abs=1e-9)


def test_direct_encoding_charges_a_multiply_per_synapse():
    m = Model([Dense(np.array([[3, -2], [1, 4]]), 0, 5, 0)], T=1, input_max=3, encoding="direct")
    g = golden.run(m, np.array([[3, 3]]), lanes=2)
    u = en.unit_costs(m, 2)
    assert u["layers"][0]["syn_op"] == pytest.approx(en.int_add_pj(u["acc_bits"]) + en.int_mult_pj(8))
    assert en.energy(m, g)["mean_pj"]["input_writes"] == 0.0


def test_table_overrides_from_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"sram_read_64b": {"points": [[8192, 20.0], [32768, 40.0]], "source": "doubled"}}))
    t = en.load_table(p)
    assert t["int_add"] == en.DEFAULT_TABLE["int_add"]
    m = _hand_model()
    g = golden.run(m, np.array([[1, 1]]), lanes=2)
    a, b = en.energy(m, g), en.energy(m, g, table=t)
    assert b["mean_pj"]["weight_reads"] == pytest.approx(2 * a["mean_pj"]["weight_reads"])
    assert b["mean_pj"]["syn_adds"] == a["mean_pj"]["syn_adds"]
    for bad, msg in [({"sram_read_64b": {"points": [[8192, 20.0]]}}, "source"),
                     ({"warp_drive": {"pj": 1, "source": "x"}}, "unknown"),
                     ({"fp32_add": {"pj": -1, "source": "x"}}, ">= 0"),
                     ({"int_add": {"points": [[16, 1], [8, 2]], "source": "x"}}, "ascending")]:
        p.write_text(json.dumps(bad))
        with pytest.raises(en.EnergyTableError, match=msg):
            en.load_table(p)
    p.write_text("{not json")
    with pytest.raises(en.EnergyTableError, match="not valid JSON"):
        en.load_table(p)
    with pytest.raises(en.EnergyTableError, match="not found"):
        en.load_table(tmp_path / "missing.json")


def test_ann_baseline_counts_the_real_macs_of_conv_and_pool_layers():
    from golden import Conv2d, MaxPool2d
    # 1x4x4 -> conv 2 channels, k=3, padding 1: the 16 outputs see 4 (corners), 6 (edges) or 9 (inside)
    # real inputs, 100 in all, so 2 x 1 x 100 MACs; 18 weights. The pool multiplies nothing.
    conv = Conv2d(np.ones((2, 1, 3, 3), np.int64), 0, 4, 0, in_shape=(1, 4, 4), padding=1)
    pool = MaxPool2d(2, in_shape=(2, 4, 4))
    dense = Dense(np.ones((3, 8), np.int64), 0, 4, 0)
    assert en.ann_macs(conv) == (200, 18) and en.ann_macs(pool) == (0, 0) and en.ann_macs(dense) == (24, 24)
    m = Model([conv, pool, dense], T=2, input_max=3, input_shape=(1, 4, 4))
    ann = en.ann_energy(m)
    assert (ann["macs"], ann["weights"]) == (224, 42)
    per_mac = ann["float32"]["per_mac_pj"] + ann["float32"]["per_weight_read_pj"]
    assert ann["float32"]["total_pj"] == 224 * per_mac
    # the weight memory is sized by the weights (42 words), not by the MACs
    assert ann["int8"]["per_weight_read_pj"] == en.sram_word_pj(8, 42)
