"""Functional coverage of the spiking core, sampled from what the hardware did.

The bins live in ``cocotb_coverage`` cover points. Every bin is hit from an observation of the
running netlist, never from the stimulus plan:

- ``config.*``: the configuration of the netlist that ran (its manifest, which is generated from the
  same object as the Verilog), sampled once the netlist has completed a sample;
- ``x.*`` / ``result.*``: the stream handshakes seen by the source and sink models (a beat offered
  while the core was busy, the core waiting for input, the core holding a beat against a stall, the
  values of the beats that were actually accepted);
- ``spk.*``: the spike monitor port (every neuron-group update and its spike mask);
- ``st.*``: the state-memory trace port (read and write addresses, written words);
- ``op.*``: the op trace port (accumulation ops, null ops, group ends);
- ``fault.*``: the error flags and ``ready`` seen around injected protocol faults.

Each simulator run exports its hits (:func:`export`); a campaign adds them up (:func:`merge`) and
compares them with the bins its configuration can reach (:func:`goal`), so a tsc-only campaign is
not asked for rate-only behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POINTS", "CampaignConfig", "goal", "hit", "export", "merge", "missed", "describe"]


@dataclass(frozen=True)
class CampaignConfig:
    """What a campaign can exercise: its codings, whether it stalls the streams, whether it injects
    protocol faults."""

    codings: frozenset
    stalls: bool = True
    faults: bool = True


def _any(c: CampaignConfig) -> bool:
    return True


def _codings(*names):
    return lambda c: bool(c.codings & set(names))


_STALLS = lambda c: c.stalls                  # noqa: E731
_FAULTS = lambda c: c.faults                  # noqa: E731
_SPIKING = _codings("rate", "stcb")

#: point -> {bin: (reachable(config), what hits it)}
POINTS: dict[str, dict[str, tuple]] = {
    "config.coding": {"rate": (_codings("rate"), "a rate netlist ran"),
                      "stcb": (_codings("stcb"), "an stcb netlist ran"),
                      "tsc": (_codings("tsc"), "a tsc netlist ran")},
    "config.encoding": {"rate": (_SPIKING, "on-chip rate encoder"), "direct": (_SPIKING, "direct input"),
                        "tsc": (_codings("tsc"), "tsc input generator")},
    "config.readout": {"count": (_SPIKING, "spike-count readout"), "membrane": (_any, "membrane readout")},
    "config.lanes": {"1": (_any, "P = 1"), "2-32": (_any, "P in 2..32"), "64": (_any, "P = 64")},
    "config.layers": {"1": (_any, "one layer"), "2-3": (_any, "two or three layers"), "4": (_any, "four layers")},
    "config.lane_edge": {"n_out%P!=0": (_any, "a layer's last group has padding lanes"),
                         "n_out<P": (_any, "a layer narrower than the lanes"),
                         "n_in%P!=0": (_any, "the input's last word is partial")},
    "config.kernel": {"kernel": (_codings("stcb"), "an STEB kernel h != [1]"),
                      "negative-tap": (_codings("stcb"), "a kernel with a negative tap")},
    "config.buffers": {"A-and-B": (_SPIKING, ">= 3 layers: both hidden event buffers")},
    "x": {"offered-while-busy": (_any, "x__valid high while x__ready low at a clock edge"),
          "starved": (_STALLS, "x__ready high while x__valid low within a sample"),
          "back-to-back": (_any, "a sample's first beat taken at the first edge the core was ready"),
          "all-zero-sample": (_any, "every accepted beat of a sample was 0"),
          "saturated-sample": (_any, "every accepted beat of a sample was input_max")},
    "result": {"held": (_STALLS, "result__valid high while result__ready low at a clock edge")},
    "spk": {"several-in-one-update": (_any, "an update whose mask has >= 2 bits"),
            "encoder-rows": (_any, "the encoder or input generator emitted"),
            "no-encoder-rows": (_SPIKING, "a direct-input netlist ran without encoder rows"),
            "tsc-off-at-Q": (_codings("tsc"), "an OFF event at t = Q (the clip)")},
    "st": {"raw-at-minimum-distance": (_codings("tsc"), "a state read one cycle after the write of the same "
                                                         "word (the tightest a synchronous read allows)"),
           "residual-above-threshold": (_SPIKING, "a written membrane still >= threshold after firing"),
           "tsc-negative-V": (_codings("tsc"), "a negative membrane written in a tsc layer")},
    "op": {"null-op": (_any, "a group update with no input event"),
           "many-events": (_any, "a group with >= 4 events"),
           "groups-back-to-back": (_any, "a group's first op right after the previous group's last")},
    "fault": {"reset-while-busy": (_FAULTS, "reset asserted while the core was busy"),
              "wrong-last-flagged": (_FAULTS, "err_protocol seen high after a misplaced last"),
              "out-of-range-flagged": (_FAULTS, "err_range seen high after an out-of-range value"),
              "flags-clear-after-reset": (_FAULTS, "both flags seen low after the reset")},
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


def merge(total: dict | None, part: dict) -> dict:
    """Add the hits of ``part`` into ``total`` (a fresh zeroed dict when None)."""
    total = total or {p: {b: 0 for b in bins} for p, bins in POINTS.items()}
    for p, bins in part.items():
        for b, n in bins.items():
            total[p][b] += int(n)
    return total


def goal(config: CampaignConfig) -> dict:
    """{point: [bins this campaign can reach]}."""
    return {p: [b for b, (reach, _) in bins.items() if reach(config)] for p, bins in POINTS.items()}


def missed(hits: dict, config: CampaignConfig) -> list[str]:
    """Reachable bins with no hit, as ``point/bin``."""
    return [f"{p}/{b}" for p, bins in goal(config).items() for b in bins if not hits.get(p, {}).get(b)]


def describe(point: str, bin_: str) -> str:
    return POINTS[point][bin_][1]
