# Written once with golden at commit 873e92a (schema 1), before schema 2 existed; kept to show how the
# fixtures were made. Re-running it with a newer golden would write schema-2 files. The .npz files it
# wrote are kept as models.json (their meta entry and arrays); tests write them back with numpy.
import json, numpy as np, golden
from golden import Dense, Model
rng = np.random.default_rng(2024)
out = {}
def w(*s): return rng.integers(-20, 20, s)
models = {
 "rate_count": Model([Dense(w(6, 5), rng.integers(-3, 4, 6), rng.integers(5, 30, 6), rng.integers(-4, 5, 6)),
                      Dense(w(3, 6), 1, 6, 0)], T=6, input_max=9, weight_bits=6),
 "direct_membrane": Model([Dense(w(4, 5), 2, 40, 3), Dense(w(3, 4), 0, 30, 0)], T=3, encoding="direct",
                          input_max=7, readout="membrane", weight_bits=6),
 "stcb_kernel": Model([Dense(w(6, 5), 0, 30, 0, h=[2, -1, 1]), Dense(w(3, 6), 6, 5, -2, h=[1])], coding="stcb",
                      T=5, input_max=9, weight_bits=6),
 "tsc": Model([Dense(w(6, 5), 3, 20, 0), Dense(w(3, 6), -1, 15, 0)], coding="tsc", T=6, encoding="tsc",
              input_max=9, readout="membrane", weight_bits=6),
}
for name, m in models.items():
    golden.save_model(m, f"tests/data/schema1/{name}.npz")
    x = rng.integers(0, m.input_max + 1, (5, m.n_in))
    r = golden.run(m, x, lanes=2, record=True)
    e = {"x": x.tolist(), "predictions": r.predictions.tolist(), "counts": r.counts.tolist(),
         "membranes": r.membranes.tolist(), "v_final": [v.tolist() for v in r.v_final],
         "v_bits": m.v_bits, "widths": [list(map(int, vars(wd).values())) for wd in m.widths]}
    if m.coding == "tsc":
        e["events"] = [v.tolist() for v in r.events]; e["activations"] = [a.tolist() for a in r.activations]
    else:
        e["spikes"] = [s.tolist() for s in r.spikes]
    if r.input_spikes is not None: e["input_spikes"] = r.input_spikes.tolist()
    out[name] = e
json.dump(out, open("tests/data/schema1/expected.json", "w"))
print({k: (v["predictions"]) for k, v in out.items()})
