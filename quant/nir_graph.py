"""Read a NIR graph and reduce it to the core's layer list, or refuse it with one reason.

A NIR graph is a set of nodes and edges in continuous time. The core runs a chain of layers, each a
weighted sum (dense or conv2d) followed by IF or LIF neurons, in discrete steps. :func:`read_graph`
loads a ``.nir`` file (refusing node types NIR itself does not know, such as MaxPool2d, by name
before ``nir.read`` would fail without one); :func:`chain` checks the edges form a single path from
one Input to one Output; :func:`plan` walks that path and groups it into :class:`Stage` s (one per
golden layer), folding pools and flattens, and refuses every node it cannot represent exactly. The
mapping and its reasons are in docs/nir.md.

Discretisation (forward Euler with the step ``dt``, the convention of SpikingJelly, snnTorch and
Norse exporters): ``tau dv/dt = (v_leak - v) + r I`` becomes ``v <- a v + g I`` with
``a = 1 - dt/tau`` and ``g = dt r / tau``; IF (``dv/dt = r I``) has ``a = 1``, ``g = dt r``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NirError", "Stage", "Plan", "read_graph", "chain", "plan", "KNOWN_TYPES", "SPIKEFORGE_KEY"]

SPIKEFORGE_KEY = "spikeforge"      # graph and node metadata key of our integer model (quant.nir export)

# node types nir 1.0 reads; anything else in a file is refused by name before nir.read sees it
KNOWN_TYPES = ("Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "Flatten", "IF", "LIF",
               "LI", "I", "CubaLI", "CubaLIF", "AvgPool2d", "SumPool2d", "Delay", "Threshold", "NIRGraph")

# why each representable-looking but unsupported node is refused
_UNSUPPORTED = {
    "CubaLIF": "a current-based LIF has a synaptic current state with its own decay; the core's neuron has "
               "only the membrane (IF or LIF)",
    "CubaLI": "a current-based leaky integrator has a synaptic current state the core does not have",
    "Conv1d": "1-D convolution is not supported (the core has conv2d)",
    "Scale": "an elementwise scale between layers passes analog values; the core's layers exchange spikes",
    "Delay": "synaptic delays are not supported by the core",
    "Threshold": "a bare threshold (no membrane) is not a neuron the core has",
}
_MAXPOOL_REASON = ("max pooling is not a NIR node (NIR 1.0 has AvgPool2d and SumPool2d); the graph came from "
                   "an exporter extension this reader does not know")


class NirError(ValueError):
    """A graph the core cannot run: the message names the node and the reason, on one line."""


def _node_error(name: str, kind: str, reason: str) -> NirError:
    return NirError(f"node {name!r} ({kind}): {reason}")


@dataclass
class Stage:
    """One golden layer: a weighted sum (its pools folded in) and the neuron that follows it.

    ``weight`` and ``bias`` are the source's floats before the neuron's input gain; ``gain`` (per unit)
    multiplies both in the discrete update ``v <- decay * v + gain * (W s + b)``. ``threshold`` is per
    unit (dense neuron or conv channel); ``fire`` is False for the last layer of a membrane readout
    (a graph ending in a weight node, I or LI). ``nodes`` are the NIR node names merged into it;
    ``node`` names the weight node (or the pool that became a fixed-kernel conv).
    """

    kind: str                       # "dense" or "conv2d"
    node: str
    nodes: list[str]
    weight: np.ndarray
    bias: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    neuron: str | None = None
    neuron_type: str | None = None
    gain: np.ndarray | None = None
    threshold: np.ndarray | None = None
    decay: float | None = None      # a = 1 - dt/tau; None: IF (no leak)
    fire: bool = True
    metadata: dict = field(default_factory=dict)   # our integer metadata of this layer, when present


@dataclass
class Plan:
    """The graph as golden layers: its input shape, the stages, and the graph's own metadata."""

    input_shape: tuple[int, ...]
    stages: list[Stage]
    metadata: dict

    @property
    def readout(self) -> str:
        return "count" if self.stages[-1].fire else "membrane"


# ---------------------------------------------------------------------------------------------
# reading


def _str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _str(v[()])
    return str(v)


def read_graph(path):
    """``nir.read`` of ``path`` without type inference (we infer shapes ourselves, and say where they
    break). Unknown node types, MaxPool among them, are refused by name first. Messages do not repeat
    the path: the caller names the file."""
    import h5py
    import nir

    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NirError("not a NIR graph (no 'node' group)")
            _scan_types(f["node"])
    except NirError:
        raise
    except OSError as e:
        raise NirError(f"not a readable NIR (HDF5) file: {e}") from None
    try:
        graph = nir.read(path, type_check=False)
    except Exception as e:  # nir raises AssertionError, KeyError, ValueError... on malformed files
        raise NirError(f"not a valid NIR graph: {type(e).__name__}: {e}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"the file holds a single {type(graph).__name__} node, not a NIR graph")
    return graph


def _scan_types(group, prefix: str = "") -> None:
    nodes = group.get("nodes")
    if nodes is None:
        return
    for name in nodes:
        node = nodes[name]
        kind = _str(node["type"][()]) if "type" in node else "?"
        if kind not in KNOWN_TYPES:
            reason = _MAXPOOL_REASON if "maxpool" in kind.lower() else "not a NIR node type this reader knows"
            raise _node_error(prefix + name, kind, reason)
        if kind == "NIRGraph":
            _scan_types(node, prefix + name + ".")


# ---------------------------------------------------------------------------------------------
# the chain


def chain(graph) -> tuple[tuple[int, ...], list[tuple[str, object]]]:
    """The input shape and the nodes between the graph's single Input and single Output, in order.

    Refuses nested graphs, recurrent edges (cycles), and anything that is not one path: several
    inputs or outputs, a node with two predecessors (a skip connection) or two successors, and nodes
    off the path."""
    import nir

    nodes, edges = graph.nodes, [(str(a), str(b)) for a, b in graph.edges]
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise _node_error(name, "NIRGraph", "a nested graph (a recurrent or composite block) is not "
                              "supported; the core runs a feed-forward chain of layers")
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NirError(f"edge ({a!r}, {b!r}) names node {end!r}, which is not in the graph")
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
    _refuse_cycles(nodes, succ)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    why = "until the layer list grows an 'inputs' field (design.md), only a single chain is supported"
    if len(inputs) != 1:
        raise NirError(f"the graph has {len(inputs)} Input nodes ({', '.join(map(repr, inputs)) or 'none'}); {why}")
    if len(outputs) != 1:
        raise NirError(f"the graph has {len(outputs)} Output nodes ({', '.join(map(repr, outputs)) or 'none'}); "
                       f"{why}")
    for k in nodes:
        if len(pred[k]) > 1:
            raise _node_error(k, type(nodes[k]).__name__, f"it has {len(pred[k])} inputs "
                              f"({', '.join(map(repr, pred[k]))}): a skip connection or merge, not a chain; {why}")
        if len(succ[k]) > 1:
            raise _node_error(k, type(nodes[k]).__name__, f"it feeds {len(succ[k])} nodes "
                              f"({', '.join(map(repr, succ[k]))}): a branch, not a chain; {why}")
    order, k = [], inputs[0]
    while succ[k]:
        k = succ[k][0]
        order.append(k)
    if not order or order[-1] != outputs[0]:
        raise NirError(f"the path from Input {inputs[0]!r} ends at {k!r}, not at the Output {outputs[0]!r}")
    off = [k for k in nodes if k not in order and k != inputs[0]]
    if off:
        raise _node_error(off[0], type(nodes[off[0]]).__name__, "it is not on the path from the Input to the "
                          f"Output; {why}")
    shape = (nodes[inputs[0]].input_type or {}).get("input")
    try:
        in_shape = tuple(int(d) for d in np.asarray(shape).reshape(-1))
    except (TypeError, ValueError):
        raise _node_error(inputs[0], "Input", f"shape {shape!r} is not a list of integers") from None
    return in_shape, [(k, nodes[k]) for k in order[:-1]]


def _refuse_cycles(nodes, succ) -> None:
    state: dict[str, int] = {}

    def visit(k, stack):
        state[k] = 1
        for n in succ[k]:
            if state.get(n) == 1:
                raise _node_error(n, type(nodes[n]).__name__, f"recurrent edge from {k!r} (a cycle); the core runs "
                                  "feed-forward layers only")
            if n not in state:
                visit(n, stack)
        state[k] = 2

    for k in nodes:
        if k not in state:
            visit(k, [])


# ---------------------------------------------------------------------------------------------
# the plan


def _pair(v, name: str, what: str, kind: str):
    """An int or a pair of equal ints (square kernels, equal strides and paddings)."""
    a = np.asarray(v).reshape(-1)
    if a.size not in (1, 2) or not np.all(a == np.round(a)):
        raise _node_error(name, kind, f"{what} must be an integer or a pair of integers, got {v!r}")
    if a.size == 2 and a[0] != a[1]:
        raise _node_error(name, kind, f"{what} {a.tolist()} differs between height and width; the core has "
                          "square kernels with one stride and one padding")
    return int(a[0])


def _shape_of(v) -> tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(v).reshape(-1))


class _Walker:
    def __init__(self, in_shape, dt: float):
        self.shape = tuple(in_shape)
        self.dt = float(dt)
        # (name, kind, kernel, stride, padding, the shape it pools)
        self.pools: list[tuple[str, str, int, int, int, tuple[int, int, int]]] = []
        self.syn: Stage | None = None
        self.stages: list[Stage] = []
        self.merged: list[str] = []

    # shapes -------------------------------------------------------------------------------------
    def need3(self, name, kind):
        if len(self.shape) != 3:
            raise _node_error(name, kind, f"needs a [C, H, W] input, got shape {list(self.shape)}")

    # nodes --------------------------------------------------------------------------------------
    def flatten(self, name, node):
        from nir.ir.utils import calc_flatten_output
        declared = node.input_type.get("input") if node.input_type else None
        if declared is not None and int(np.prod(_shape_of(declared))) != int(np.prod(self.shape)):
            raise _node_error(name, "Flatten", f"declares input {list(_shape_of(declared))} but receives "
                              f"{list(self.shape)}")
        out = _shape_of(calc_flatten_output(np.array(self.shape), int(node.start_dim), int(node.end_dim)))
        if len(out) != 1:
            raise _node_error(name, "Flatten", f"flattens {list(self.shape)} to {list(out)}; only a full flatten "
                              "to one dimension is supported")
        self.shape = out
        self.merged.append(name)

    def pool(self, name, node, kind):
        if self.syn is not None:
            raise _node_error(name, kind, f"a pool between the weight node {self.syn.node!r} and its neuron is "
                              "not supported; pool after the neuron")
        self.need3(name, kind)
        k = _pair(node.kernel_size, name, "kernel_size", kind)
        s = _pair(node.stride, name, "stride", kind)
        p = _pair(node.padding, name, "padding", kind)
        C, H, W = self.shape
        if k < 1 or s < 1 or p < 0 or H + 2 * p < k or W + 2 * p < k:
            raise _node_error(name, kind, f"kernel {k}, stride {s}, padding {p} do not fit input {list(self.shape)}")
        self.pools.append((name, kind, k, s, p, self.shape))
        self.shape = (C, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1)
        self.merged.append(name)

    def _fold_pools_dense(self, w: np.ndarray) -> np.ndarray:
        """W acting on the pooled map -> the same map on the map before the pools (the adjoint of each
        pool, last pool first): exact, since a pool is linear."""
        for name, kind, k, s, p, (C, H, W) in reversed(self.pools):
            Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
            f = 1.0 / (k * k) if kind == "AvgPool2d" else 1.0
            wp = w.reshape(w.shape[0], C, Ho, Wo)
            big = np.zeros((w.shape[0], C, H + 2 * p, W + 2 * p))
            for dy in range(k):
                for dx in range(k):
                    big[:, :, dy:dy + s * Ho:s, dx:dx + s * Wo:s] += f * wp
            w = big[:, :, p:p + H, p:p + W].reshape(w.shape[0], -1)
        return w

    def _fold_pool_conv(self, name, kind, weight, stride, padding):
        """A non-overlapping pool (kernel = stride, no padding) followed by a conv is one conv with a
        kernel k times larger: exact when the conv reads no padding beyond a partial last window."""
        pname, pkind, k, s, p, (C, H, W) = self.pools[0]
        if len(self.pools) > 1:
            raise _node_error(name, kind, f"{len(self.pools)} pools in a row before a conv cannot be folded; "
                              "use one pool")
        if k != s or p != 0:
            raise _node_error(pname, pkind, f"kernel {k}, stride {s}, padding {p} before the conv {name!r}: only a "
                              "non-overlapping pool (kernel = stride, no padding) folds into a conv exactly")
        if padding and (H % k or W % k):
            raise _node_error(pname, pkind, f"input {[C, H, W]} is not a multiple of the kernel {k}, so the padded "
                              f"conv {name!r} after it cannot absorb it exactly")
        f = 1.0 / (k * k) if pkind == "AvgPool2d" else 1.0
        w = np.repeat(np.repeat(weight, k, axis=2), k, axis=3) * f
        return w, stride * k, padding * k, (C, H, W)

    def weight_node(self, name, node, kind):
        if self.syn is not None:
            raise _node_error(name, kind, f"two weight nodes ({self.syn.node!r}, {name!r}) with no neuron between "
                              "them; the core has one weighted sum per layer")
        w = np.asarray(node.weight, dtype=np.float64)
        if kind in ("Affine", "Linear"):
            if w.ndim != 2:
                raise _node_error(name, kind, f"weight must be 2-D (n_out, n_in), got shape {list(w.shape)}")
            b = (np.asarray(node.bias, dtype=np.float64).reshape(-1) if kind == "Affine"
                 else np.zeros(w.shape[0]))
            if b.shape != (w.shape[0],):
                raise _node_error(name, kind, f"bias has shape {list(b.shape)}, expected [{w.shape[0]}]")
            n_in = int(np.prod(self.shape))    # flatten is implicit: a dense layer reads (c, y, x) order
            if w.shape[1] != n_in:
                raise _node_error(name, kind, f"weight reads {w.shape[1]} inputs but receives {list(self.shape)} "
                                  f"= {n_in} values (shape mismatch)")
            in_shape = self.shape
            if self.pools:
                w = self._fold_pools_dense(w)
                in_shape = self.pools[0][5]
            self.syn = Stage("dense", name, self.merged + [name], w, b, (int(np.prod(in_shape)),), (w.shape[0],),
                             metadata=_our_meta(node))
            self.shape = (w.shape[0],)
        else:
            self.need3(name, kind)
            if w.ndim != 4:
                raise _node_error(name, kind, f"weight must be 4-D (C_out, C_in, K, K), got shape {list(w.shape)}")
            if int(node.groups) != 1:
                raise _node_error(name, kind, f"groups={int(node.groups)}: grouped (depthwise) convolution is not "
                                  "supported; the core's conv reads every input channel")
            dil = np.asarray(node.dilation).reshape(-1)
            if np.any(dil != 1):
                raise _node_error(name, kind, f"dilation {dil.tolist()} is not supported (only 1)")
            if w.shape[2] != w.shape[3]:
                raise _node_error(name, kind, f"kernel {list(w.shape[2:])} is not square")
            K = w.shape[2]
            stride = _pair(node.stride, name, "stride", kind)
            if isinstance(node.padding, str):
                if node.padding == "valid":
                    padding = 0
                elif stride == 1 and K % 2 == 1:
                    padding = K // 2
                else:
                    raise _node_error(name, kind, f"padding 'same' with kernel {K} and stride {stride} is not "
                                      "symmetric; give the padding as an integer")
            else:
                padding = _pair(node.padding, name, "padding", kind)
            C, H, W = self.shape
            if w.shape[1] != C:
                raise _node_error(name, kind, f"weight reads {w.shape[1]} channels but receives {list(self.shape)} "
                                  "(shape mismatch)")
            if node.input_shape is not None and _shape_of(node.input_shape) != (H, W):
                raise _node_error(name, kind, f"input_shape {list(_shape_of(node.input_shape))} but receives "
                                  f"{list(self.shape)} (shape mismatch)")
            b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
            if b.size == 1 and w.shape[0] != 1:
                b = np.full(w.shape[0], float(b[0]))
            if b.shape != (w.shape[0],):
                raise _node_error(name, kind, f"bias has shape {list(b.shape)}, expected [{w.shape[0]}]")
            Ho, Wo = (H + 2 * padding - K) // stride + 1, (W + 2 * padding - K) // stride + 1
            in_shape = self.shape
            if self.pools:
                w, stride, padding, in_shape = self._fold_pool_conv(name, kind, w, stride, padding)
            self.syn = Stage("conv2d", name, self.merged + [name], w, b, tuple(in_shape), (w.shape[0], Ho, Wo),
                             stride=stride, padding=padding, metadata=_our_meta(node))
            self.shape = (w.shape[0], Ho, Wo)
        self.pools, self.merged = [], []

    def pool_as_conv(self, name, kind):
        """A pool that feeds a neuron directly becomes a conv with the pool's fixed kernel."""
        pname, pkind, k, s, p, (C, H, W) = self.pools[-1]
        if len(self.pools) > 1:
            raise _node_error(name, kind, f"{len(self.pools)} pools in a row before a neuron are not supported")
        w = np.zeros((C, C, k, k))
        w[np.arange(C), np.arange(C)] = 1.0 / (k * k) if pkind == "AvgPool2d" else 1.0
        self.syn = Stage("conv2d", pname, self.merged, w, np.zeros(C), (C, H, W), self.shape, stride=s, padding=p)
        self.pools, self.merged = [], []

    def neuron(self, name, node, kind, last: bool):
        if self.syn is None and self.pools:
            self.pool_as_conv(name, kind)
        if self.syn is None:
            raise _node_error(name, kind, "a neuron needs a weight node (Affine, Linear, Conv2d) or a pool before it")
        st, shape = self.syn, self.shape

        def param(attr):
            a = np.asarray(getattr(node, attr), dtype=np.float64)
            if a.size == 1:
                a = np.full(shape, float(a.reshape(-1)[0]))
            if a.shape != shape and a.size == int(np.prod(shape)):
                a = a.reshape(shape)
            if a.shape != shape:
                raise _node_error(name, kind, f"{attr} has shape {list(a.shape)} but the neuron receives "
                                  f"{list(shape)} (shape mismatch)")
            return a

        for attr in ("r", "tau", "v_threshold", "v_leak", "v_reset"):    # shapes first, in one order
            if hasattr(node, attr):
                param(attr)
        fires = kind in ("IF", "LIF")
        if kind in ("LI", "I") and not last:
            raise _node_error(name, kind, "a non-spiking neuron passes its membrane on as an analog value; the core's "
                              "layers exchange spikes, so it can only be the last node (the membrane readout)")
        if fires:
            if np.any(param("v_reset") != 0):
                raise _node_error(name, kind, f"v_reset={_vals(param('v_reset'))}: the core resets to 0 "
                                  "(reset zero), so a non-zero v_reset is not supported")
        if kind in ("LIF", "LI"):
            if np.any(param("v_leak") != 0):
                raise _node_error(name, kind, f"v_leak={_vals(param('v_leak'))}: the core's leak decays towards 0, "
                                  "so a non-zero v_leak is not supported")
            tau = param("tau")
            if np.any(tau <= 0) or not np.all(np.isfinite(tau)):
                raise _node_error(name, kind, f"tau={_vals(tau)} must be positive and finite")
            if np.any(tau != tau.reshape(-1)[0]):
                raise _node_error(name, kind, f"tau varies across neurons ({_vals(tau)}); the core has one leak "
                                  "per layer")
            t0 = float(tau.reshape(-1)[0])
            if t0 < self.dt:
                raise _node_error(name, kind, f"tau={t0:g} is shorter than the step dt={self.dt:g}: the decay "
                                  f"1 - dt/tau = {1 - self.dt / t0:g} is negative (pass the source's --dt)")
            decay = 1.0 - self.dt / t0
            gain = self.dt * param("r") / t0
        else:
            decay = None
            gain = self.dt * param("r")
        st.gain = _per_unit(gain, st, name, kind, "r (the input gain)")
        st.decay = decay
        st.fire = fires
        st.threshold = _per_unit(param("v_threshold"), st, name, kind, "v_threshold") if fires else None
        st.neuron, st.neuron_type = name, kind
        st.nodes = st.nodes + self.merged + [name]
        self.stages.append(st)
        self.syn, self.merged = None, []

    def finish(self):
        if self.pools:
            name, kind = self.pools[-1][:2]
            raise _node_error(name, kind, "the graph ends in a pool; the last layer must be a weight node "
                              "(the readout)")
        if self.syn is not None:          # a graph ending in a weight node: the membrane readout
            st = self.syn
            st.gain, st.fire, st.nodes = np.ones(len(st.bias)), False, st.nodes + self.merged
            self.stages.append(st)
            self.syn = None
        if not self.stages:
            raise NirError("the graph has no weight node (Affine, Linear or Conv2d)")
        last = self.stages[-1]
        if last.kind != "dense":
            raise _node_error(last.node, "Conv2d", "the last layer must be dense (Affine or Linear): it carries "
                              "the readout")


def _vals(a: np.ndarray) -> str:
    u = np.unique(a)
    return f"{u[0]:g}" if u.size == 1 else f"[{', '.join(f'{v:g}' for v in u[:4])}{', ...' if u.size > 4 else ''}]"


def _per_unit(a: np.ndarray, st: Stage, name: str, kind: str, what: str) -> np.ndarray:
    """A per-neuron array reduced to the core's per-unit one (a conv2d has one value per channel)."""
    if st.kind == "dense":
        return a.reshape(-1).copy()
    flat = a.reshape(a.shape[0], -1)
    bad = np.flatnonzero((flat != flat[:, :1]).any(axis=1))
    if bad.size:
        raise _node_error(name, kind, f"{what} varies across the positions of channel {int(bad[0])}; the core has "
                          "one value per conv channel")
    return flat[:, 0].copy()


def _our_meta(node) -> dict:
    raw = (node.metadata or {}).get(SPIKEFORGE_KEY)
    if raw is None:
        return {}
    try:
        meta = json.loads(_str(raw))
    except ValueError:
        raise NirError(f"node metadata {SPIKEFORGE_KEY!r} is not valid JSON") from None
    return meta if isinstance(meta, dict) else {}


def plan(graph, *, dt: float = 1e-4) -> Plan:
    """Reduce ``graph`` to golden layers (see the module docstring), or raise :class:`NirError`."""
    import nir

    in_shape, nodes = chain(graph)
    if not in_shape or len(in_shape) not in (1, 3):
        raise NirError(f"the Input has shape {list(in_shape)}; expected [n] or [C, H, W]")
    w = _Walker(in_shape, dt)
    for i, (name, node) in enumerate(nodes):
        kind = type(node).__name__
        last = i == len(nodes) - 1
        if kind in _UNSUPPORTED:
            raise _node_error(name, kind, _UNSUPPORTED[kind])
        try:
            if isinstance(node, nir.Flatten):
                w.flatten(name, node)
            elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
                w.pool(name, node, kind)
            elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
                w.weight_node(name, node, kind)
            elif isinstance(node, (nir.IF, nir.LIF, nir.LI, nir.I)):
                w.neuron(name, node, kind, last)
            else:
                raise _node_error(name, kind, "not a node the core can run")
        except NirError:
            raise
        except (TypeError, ValueError, IndexError, AttributeError, KeyError) as e:
            # the fields come from a file: a malformed one is a refusal of that node, not a crash
            raise _node_error(name, kind, f"malformed node: {type(e).__name__}: {e}") from None
    w.finish()
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    return Plan(in_shape, w.stages, dict(meta))
