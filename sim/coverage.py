"""Coverage of the spiking core: functional bins sampled from what the hardware did, and a separate
table of the network configurations a campaign ran.

**Functional bins** (``POINTS``) live in ``cocotb_coverage`` cover points. Every one is hit from an
observation of the running netlist, counted by the harness's monitors (``sim.harness``) or seen by the
Python-driven fault test, never from the stimulus plan or the manifest:

- ``x.*`` / ``result.*``: the stream handshakes at the core's ports (a beat offered while the core was
  busy, the core waiting for input inside a sample, the core holding a beat against a stall, the values
  of the beats the core actually accepted, a sample accepted right after the previous result);
- ``spk.*``: the spike monitor port (every neuron-group update and its spike mask, its layer);
- ``st.*``: the state-memory trace port (read and write addresses, written words);
- ``op.*``: the op trace port (accumulation ops, null ops, group ends);
- ``scatter.*``: the scatter trace port of conv2d and maxpool2d layers (events with no valid offset,
  forwarded accumulator words, pool windows hit twice, empty steps, backpressure to the reader);
- ``fault.*``: the error flags and ``ready`` seen around injected protocol faults.

**Configuration coverage** (``CONFIG_POINTS``) is what it is: the shapes of the networks a campaign
built (coding, encoding, readout, lanes, layers, lane edges, STEB kernel), read from each netlist's
manifest. It is reported as its own table and never counted among the functional bins.

Each simulator run exports its hits (:func:`export`); a campaign adds them up (:func:`merge`) and
compares them with the bins its configuration can reach (:func:`goal`), so a tsc-only campaign is
not asked for rate-only behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POINTS", "CONFIG_POINTS", "CampaignConfig", "goal", "hit", "export", "merge", "missed", "describe",
           "config_hits", "config_goal", "config_missed"]


@dataclass(frozen=True)
class CampaignConfig:
    """What a campaign can exercise: its codings, whether it stalls the streams, whether it injects
    protocol faults, whether it draws conv networks, and the lane and layer counts its networks can
    have (by default those of sim.fuzz's dense networks: sim.fuzz.campaign_config derives them)."""

    codings: frozenset
    stalls: bool = True
    faults: bool = True
    conv: bool = False          # it draws conv2d/maxpool2d networks (sim.fuzz --conv)
    lanes: frozenset = frozenset({1, 2, 4, 8, 16, 32, 64})
    layers: frozenset = frozenset({1, 2, 3, 4})


def _any(c: CampaignConfig) -> bool:
    return True


def _codings(*names):
    return lambda c: bool(c.codings & set(names))


_STALLS = lambda c: c.stalls                  # noqa: E731
_FAULTS = lambda c: c.faults                  # noqa: E731
_SPIKING = _codings("rate", "stcb")
_CONV = lambda c: c.conv                      # noqa: E731


def _lanes(lo: int, hi: int):
    return lambda c: any(lo <= p <= hi for p in c.lanes)


def _layers(lo: int, hi: int):
    return lambda c: any(lo <= n <= hi for n in c.layers)

#: point -> {bin: (reachable(config), what hits it)}
#: functional point -> {bin: (reachable(config), what hardware event hits it)}
POINTS: dict[str, dict[str, tuple]] = {
    "x": {"offered-while-busy": (_any, "x__valid high while x__ready low at a clock edge"),
          "starved": (_STALLS, "x__ready high while x__valid low within a sample"),
          "back-to-back": (_any, "a sample's first beat taken at the first edge the core was ready"),
          "all-zero-sample": (_any, "every accepted beat of a sample was 0"),
          "saturated-sample": (_any, "every accepted beat of a sample was input_max")},
    "result": {"held": (_STALLS, "result__valid high while result__ready low at a clock edge")},
    "spk": {"several-in-one-update": (_any, "an update whose mask has >= 2 bits"),
            "encoder-rows": (_any, "the encoder or input generator emitted"),
            "no-encoder-rows": (_SPIKING, "a direct-input netlist ran without encoder rows"),
            "tsc-off-at-Q": (_codings("tsc"), "an OFF event at t = Q (the clip)"),
            "buffer-B-written": (_SPIKING, "a spike of an odd hidden layer that feeds another layer: it lands in "
                                           "event buffer B")},
    "st": {"raw-at-minimum-distance": (_codings("tsc"), "a state read one cycle after the write of the same "
                                                         "word (the tightest a synchronous read allows)"),
           "residual-above-threshold": (_SPIKING, "a written membrane still >= threshold after firing"),
           "tsc-negative-V": (_codings("tsc"), "a negative membrane written in a tsc layer")},
    "op": {"null-op": (_any, "a group update with no input event"),
           "many-events": (_any, "a group with >= 4 events"),
           "groups-back-to-back": (_any, "a group's first op right after the previous group's last")},
    "scatter": {"no-valid-offset": (_CONV, "the conv address generator's null op for an event none of whose "
                                           "kernel offsets lands in the output map (sc__no_offset)"),
                "forwarded-hazard": (_CONV, "an accumulator read-modify-write whose old word was forwarded from "
                                            "one of the three ops before it (sc__forwarded)"),
                "pool-window-several-spikes": (_CONV, "a pool op into a window that already held a spike this "
                                                      "step (sc__merged)"),
                "sweep-after-empty-step": (_CONV, "a conv2d or maxpool2d scatter with no source event this step, "
                                                  "its sweep following (sc__empty_step)"),
                "scatter-backpressure": (_CONV, "an event held at the reader while the conv address generator "
                                                "expanded the one before (sc__stall)")},
    "fault": {"reset-while-busy": (_FAULTS, "reset asserted while the core was busy"),
              "wrong-last-flagged": (_FAULTS, "err_protocol seen high after a misplaced last"),
              "out-of-range-flagged": (_FAULTS, "err_range seen high after an out-of-range value"),
              "flags-clear-after-reset": (_FAULTS, "both flags seen low after the reset")},
}

#: configuration point -> {bin: (reachable(config), which netlists have it)}: shapes, not behaviour
CONFIG_POINTS: dict[str, dict[str, tuple]] = {
    "config.coding": {"rate": (_codings("rate"), "a rate netlist ran"),
                      "stcb": (_codings("stcb"), "an stcb netlist ran"),
                      "tsc": (_codings("tsc"), "a tsc netlist ran")},
    "config.encoding": {"rate": (_SPIKING, "on-chip rate encoder"), "direct": (_SPIKING, "direct input"),
                        "tsc": (_codings("tsc"), "tsc input generator")},
    "config.readout": {"count": (_SPIKING, "spike-count readout"), "membrane": (_any, "membrane readout")},
    "config.lanes": {"1": (_lanes(1, 1), "P = 1"), "2-32": (_lanes(2, 32), "P in 2..32"),
                     "64": (_lanes(64, 64), "P = 64")},
    "config.layers": {"1": (_layers(1, 1), "one layer"), "2-3": (_layers(2, 3), "two or three layers"),
                      "4+": (_layers(4, 1 << 30), "four or more layers")},
    "config.lane_edge": {"n_out%P!=0": (_any, "a layer's last group has padding lanes"),
                         "n_out<P": (_any, "a layer narrower than the lanes"),
                         "n_in%P!=0": (_any, "the input's last word is partial (a spatial input: C % P != 0, "
                                                  "every position's word)")},
    "config.reset": {"zero": (_SPIKING, "a layer that resets to zero (reset: zero)")},
    "config.leak": {"on": (_SPIKING, "a leaky layer (leak: [num, shift])")},
    "config.kernel": {"kernel": (_codings("stcb"), "an STEB kernel h != [1]"),
                      "negative-tap": (_codings("stcb"), "a kernel with a negative tap")},
}

_samplers: dict = {}


def _sampler(point: str):
    """The cocotb_coverage cover point of ``point`` (created on first use, in this process)."""
    if point not in _samplers:
        from cocotb_coverage.coverage import CoverPoint
        bins = list(POINTS[point])

        @CoverPoint(f"spikeforge.{point}", xf=lambda b: b, bins=bins)
        def sample(b):
            pass
        _samplers[point] = sample
    return _samplers[point]


def hit(point: str, bin_: str, times: int = 1) -> None:
    """Record that the hardware did ``bin_`` of ``point`` (``times`` observations)."""
    if bin_ not in POINTS[point]:
        raise KeyError(f"coverage point {point!r} has no bin {bin_!r}")
    for _ in range(times):
        _sampler(point)(bin_)


def export() -> dict:
    """{point: {bin: hits}} of this process's coverage database."""
    from cocotb_coverage.coverage import coverage_db
    out = {}
    for point, bins in POINTS.items():
        name = f"spikeforge.{point}"
        hits = dict(coverage_db[name].detailed_coverage) if name in coverage_db else {}
        out[point] = {b: int(hits.get(b, 0)) for b in bins}
    return out


def merge(total: dict | None, part: dict, points: dict | None = None) -> dict:
    """Add the hits of ``part`` into ``total`` (a fresh zeroed dict of ``points``, default the functional
    ones, when None)."""
    total = total or {p: {b: 0 for b in bins} for p, bins in (points or POINTS).items()}
    for p, bins in part.items():
        for b, n in bins.items():
            total[p][b] += int(n)
    return total


def config_hits(params: dict) -> dict:
    """The configuration bins of one netlist, from its manifest's parameters: {point: {bin: 1}}."""
    sizes, P = params["sizes"], params["lanes"]
    L = len(sizes) - 1
    out = {p: {b: 0 for b in bins} for p, bins in CONFIG_POINTS.items()}

    def on(point, b):
        out[point][b] = 1
    on("config.coding", params["coding"])
    on("config.encoding", params["encoding"])
    on("config.readout", params["readout"])
    on("config.lanes", "1" if P == 1 else "64" if P == 64 else "2-32")
    on("config.layers", "1" if L == 1 else "2-3" if L <= 3 else "4+")
    if any(n % P for n in sizes[1:]):
        on("config.lane_edge", "n_out%P!=0")
    if any(n < P for n in sizes[1:]):
        on("config.lane_edge", "n_out<P")
    # an input word holds P consecutive inputs, or P channels at one position when layer 0 is spatial
    # (the manifest's input_groups words): it is partial when the words hold more lanes than inputs
    G_in = params.get("input_groups")
    if (G_in * P > sizes[0]) if G_in is not None else sizes[0] % P:
        on("config.lane_edge", "n_in%P!=0")
    if "zero" in (params.get("resets") or []):
        on("config.reset", "zero")
    if any(lk is not None for lk in params.get("leaks") or []):
        on("config.leak", "on")
    kernels = params.get("kernels") or []
    if any(list(h) != [1] for h in kernels):
        on("config.kernel", "kernel")
    if any(v < 0 for h in kernels for v in h):
        on("config.kernel", "negative-tap")
    return out


def config_goal(config: "CampaignConfig") -> dict:
    """{point: [configuration bins this campaign can reach]}."""
    return {p: [b for b, (reach, _) in bins.items() if reach(config)] for p, bins in CONFIG_POINTS.items()}


def config_missed(hits: dict, config: "CampaignConfig") -> list[str]:
    """Reachable configuration bins no netlist of the campaign had, as ``point/bin``."""
    return [f"{p}/{b}" for p, bins in config_goal(config).items() for b in bins if not hits.get(p, {}).get(b)]


def goal(config: CampaignConfig) -> dict:
    """{point: [bins this campaign can reach]}."""
    return {p: [b for b, (reach, _) in bins.items() if reach(config)] for p, bins in POINTS.items()}


def missed(hits: dict, config: CampaignConfig) -> list[str]:
    """Reachable bins with no hit, as ``point/bin``."""
    return [f"{p}/{b}" for p, bins in goal(config).items() for b in bins if not hits.get(p, {}).get(b)]


def describe(point: str, bin_: str) -> str:
    return {**POINTS, **CONFIG_POINTS}[point][bin_][1]
