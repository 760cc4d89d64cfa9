"""The SpikingJelly networks of tests/test_nir_sj.py, trained and exported with SpikingJelly's own
``export_to_nir``: one recipe for the tests and for the full-split runs (``make nir-sj``).

conv + ``IFNode(v_reset=0)`` + AvgPool2d + Linear (and the same with ``LIFNode(tau=3)``), multi-step,
T=4, the input ``x / 16`` every step (direct encoding); single-threaded and seeded, so a network is
the same bytes wherever it is trained.

``python tests/nir_sj_nets.py --out DIR [--kind if,lif]`` writes ``DIR/sj_conv_<kind>.nir`` and
``DIR/sj_conv_<kind>.json`` (SpikingJelly's own test accuracy and predictions, float64).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__":                 # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden import datasets  # noqa: E402

T = 4
SCALE = 1 / 16
KINDS = ("if", "lif")


def neuron_node(kind: str):
    """IFNode(v_reset=0) or LIFNode(tau=3, v_reset=0), with the ATan surrogate."""
    from spikingjelly.activation_based import neuron, surrogate
    if kind == "if":
        return neuron.IFNode(v_reset=0.0, surrogate_function=surrogate.ATan())
    return neuron.LIFNode(tau=3.0, v_reset=0.0, surrogate_function=surrogate.ATan())


def conv_net(kind: str):
    """conv 8c3 (padding 1) + the neuron + AvgPool2d(2) + Flatten + Linear(128, 10), multi-step."""
    import torch
    from spikingjelly.activation_based import functional, layer
    net = torch.nn.Sequential(layer.Conv2d(1, 8, 3, padding=1), neuron_node(kind), layer.AvgPool2d(2),
                              layer.Flatten(), layer.Linear(8 * 4 * 4, 10))
    functional.set_step_mode(net, "m")
    return net


def forward(net, x: np.ndarray):
    """SpikingJelly's own output: the mean over T of the last layer's output, for input ``x * SCALE``."""
    import torch
    from spikingjelly.activation_based import functional
    p = next(net.parameters())
    xin = torch.tensor(x, dtype=p.dtype).reshape(-1, 1, 8, 8) * SCALE
    out = net(xin.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
    functional.reset_net(net)
    return out


def train(net, epochs: int):
    """Adam (lr 3e-3), batches of 64 in a per-epoch seeded order, cross-entropy on the digits training
    split; returns the network in float64 (what is exported and evaluated)."""
    import torch
    x_tr, y_tr = datasets.load("digits", "train")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for epoch in range(epochs):
        perm = np.random.RandomState(epoch).permutation(len(x_tr))
        for i in range(0, len(x_tr), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(forward(net, x_tr[idx]), torch.tensor(y_tr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.double()


def trained_conv_net(kind: str, epochs: int = 6):
    """The tests' conv network of ``kind``: seed 0, one thread, ``epochs`` epochs."""
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return train(conv_net(kind), epochs)


def predict(net, x: np.ndarray) -> np.ndarray:
    import torch
    with torch.no_grad():
        return forward(net, x).argmax(1).numpy()


def export(net, path: Path) -> None:
    """SpikingJelly's own exporter, with the multi-step input shape (T, B, C, H, W)."""
    import torch
    from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir
    export_to_nir(net, torch.zeros(T, 2, 1, 8, 8, dtype=torch.float64), save_path=path)


def main(argv=None) -> int:
    from golden.cli import ArgumentParser, Output, check_outputs, choice_list
    p = ArgumentParser(prog="tests/nir_sj_nets.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for sj_conv_<kind>.nir and .json")
    p.add_argument("--kind", type=choice_list(KINDS), default=list(KINDS),
                   help="the networks, comma-separated: if, lif (default both)")
    a = p.parse_args(argv)
    out = Path(a.out)
    files = [out / f"sj_conv_{k}{ext}" for k in a.kind for ext in (".nir", ".json")]
    check_outputs([Output("--out", a.out, kind="dir")] + [Output("--out", f) for f in files])
    out.mkdir(parents=True, exist_ok=True)
    x_te, y_te = datasets.load("digits", "test")
    for kind in a.kind:
        net = trained_conv_net(kind)
        pred = predict(net, x_te)
        acc = float((pred == y_te).mean())
        export(net, out / f"sj_conv_{kind}.nir")
        (out / f"sj_conv_{kind}.json").write_text(json.dumps(
            {"kind": kind, "T": T, "input_scale": SCALE, "epochs": 6, "spikingjelly_accuracy": acc,
             "test_samples": int(len(y_te)), "predictions": pred.tolist()}) + "\n")
        print(f"wrote {out / f'sj_conv_{kind}.nir'}: SpikingJelly {kind} accuracy {100 * acc:.2f}% "
              f"on {len(y_te)} digits/test samples")
    return 0


if __name__ == "__main__":
    from golden.cli import guard
    guard("tests/nir_sj_nets.py", main)
