#!/usr/bin/env python3
"""Check our reference mapping model against the independent PyTorch model, and write the
golden-value fixture the Rust test suite checks against without torch.

Usage:
    cargo run --release -p mg-models --example torch_crosscheck -- /tmp/crosscheck.safetensors
    python3 scripts/torch-crosscheck.py /tmp/crosscheck.safetensors \
        [--torch-model ../shared/bench/torch_mgmem.py] \
        [--golden crates/mg-models/tests/fixtures/torch-golden.json]

The safetensors file (written by the example) holds the reference model's weights under the
PyTorch model's parameter names (mg_models::interop::TorchLayout), one training window's
inputs (T = 3 steps, B = 2 rows, time-major) and our outputs: `ours.logits`, `ours.loss` and
`ours.grad.NAME` for every parameter. This script loads the weights into torch_mgmem.py's
LocalizationModel (strictly: every name must match, every shape must fit), runs the same
window (the writer step by step from the zero state, the reader over all rows, summed sigmoid
cross-entropy), backpropagates, and prints how far our f32 results are from PyTorch's f32 and
from PyTorch's float64 run of the same weights. Errors are relative to each tensor's RMS:
max |ours - theirs| / rms(theirs).

--golden writes the float64 results as a digest (for the logits and every gradient: the entry
count, the sum of squares, two spread entries and the largest one; and the loss): about 12 KB
that the test `torch_golden` reads.
Needs torch and numpy (not project dependencies).
"""

import argparse
import importlib.util
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "..", "shared", "bench", "torch_mgmem.py")
SAMPLES = 2


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata) for an F32 safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, spec in header.items():
        if spec["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {spec['dtype']}, expected F32")
        a, b = spec["data_offsets"]
        tensors[name] = np.frombuffer(raw[base + a : base + b], dtype="<f4").reshape(spec["shape"])
    return tensors, meta


def load_torch_model(path):
    spec = importlib.util.spec_from_file_location("torch_mgmem", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(mod, variant, weights, inputs, steps, batch, dtype):
    mod.VARIANTS["crosscheck"] = variant
    model = mod.LocalizationModel("crosscheck").to(dtype)
    state = {k: torch.from_numpy(v.copy()).to(dtype) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    obs, query, target = (torch.from_numpy(x.copy()).to(dtype) for x in inputs)
    obs = obs.reshape(steps, batch, *obs.shape[1:])
    query = query.reshape(steps, batch, *query.shape[1:])
    logits, _ = model.forward_window(obs, query, model.writer.zero_state(batch, "cpu", dtype))
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    loss.backward()
    grads = {name: p.grad.detach().double().numpy() for name, p in model.named_parameters()}
    return logits.detach().double().numpy(), float(loss.detach()), grads


def rel_error(ours, theirs):
    rms = math.sqrt(float(np.mean(np.square(theirs))))
    return float(np.max(np.abs(ours.astype(np.float64) - theirs))) / max(rms, 1e-30)


def digest(x):
    """[number of entries, sum of squares, index, value, index, value, ...]: SAMPLES spread
    entries and the largest in magnitude, values to 9 significant digits."""
    flat = x.reshape(-1)
    n = flat.size
    picks = sorted({(k * n) // SAMPLES + (k * 7) % max(n // SAMPLES, 1) for k in range(SAMPLES)}
                   | {int(np.argmax(np.abs(flat)))})
    out = [n, float(f"{np.square(flat).sum():.9g}")]
    for i in picks:
        out += [int(i), float(f"{flat[i]:.9g}")]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", help="the safetensors file the torch_crosscheck example wrote")
    ap.add_argument("--torch-model", default=DEFAULT_MODEL, help="path of torch_mgmem.py")
    ap.add_argument("--golden", help="write the float64 digest here (JSON)")
    args = ap.parse_args()
    if not os.path.isfile(args.torch_model):
        sys.exit(f"{args.torch_model}: no such file (pass --torch-model)")

    tensors, meta = read_safetensors(args.case)
    variant = json.loads(meta["variant"])
    steps, batch = int(meta["steps"]), int(meta["batch"])
    inputs = [tensors.pop(k) for k in ("input.observation", "input.query", "input.target")]
    ours_logits = tensors.pop("ours.logits")
    ours_loss = float(meta["loss_f64"])
    tensors.pop("ours.loss")
    ours_grads = {k[len("ours.grad."):]: tensors.pop(k) for k in list(tensors) if k.startswith("ours.grad.")}
    weights = tensors
    mod = load_torch_model(args.torch_model)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    results = {}
    for label, dtype in (("torch f32", torch.float32), ("torch f64", torch.float64)):
        results[label] = run(mod, variant, weights, inputs, steps, batch, dtype)
    print(f"case: {len(weights)} weight tensors, {steps} steps x {batch} rows, torch {torch.__version__}")
    print(f"{'against':<10} {'loss (rel)':>12} {'logits':>10} {'gradients (worst)':>30}")
    f32, f64 = results["torch f32"], results["torch f64"]
    rows = [("ours f32", ours_logits, ours_loss, ours_grads), ("torch f32", *f32)]
    for label, logits, loss, grads in rows:
        worst = max(((rel_error(grads[k], f64[2][k]), k) for k in f64[2]), key=lambda t: t[0])
        print(f"{label:<10} {abs(loss - f64[1]) / abs(f64[1]):>12.2e} {rel_error(logits, f64[0]):>10.2e} "
              f"{worst[0]:>12.2e} ({worst[1]})")
    # ours against torch at the same precision
    worst = max(rel_error(ours_grads[k], f32[2][k]) for k in f32[2])
    print(f"ours f32 vs torch f32: loss {abs(ours_loss - f32[1]) / abs(f32[1]):.2e}, "
          f"logits {rel_error(ours_logits, f32[0]):.2e}, gradients {worst:.2e} (relative to RMS)")
    missing = set(f64[2]) ^ set(ours_grads)
    if missing:
        sys.exit(f"gradient names differ: {sorted(missing)[:5]}")

    if args.golden:
        logits64, loss64, grads64 = f64
        golden = {
            "what": "PyTorch float64 results of the torch_crosscheck case (scripts/torch-crosscheck.py)",
            "torch": torch.__version__,
            "steps": steps,
            "batch": batch,
            "loss": loss64,
            "logits": digest(logits64),
            "grads": {name: digest(g) for name, g in grads64.items()},
        }
        with open(args.golden, "w") as f:
            f.write("{\n")
            items = list(golden.items())
            for k, (key, value) in enumerate(items):
                if key == "grads":
                    f.write(' "grads": {\n')
                    names = list(value)
                    for j, name in enumerate(names):
                        sep = "," if j + 1 < len(names) else ""
                        f.write(f"  {json.dumps(name)}: {json.dumps(value[name])}{sep}\n")
                    f.write(" }")
                else:
                    f.write(f" {json.dumps(key)}: {json.dumps(value)}")
                f.write(",\n" if k + 1 < len(items) else "\n")
            f.write("}\n")
        print(f"wrote {args.golden} ({os.path.getsize(args.golden)} bytes)")


if __name__ == "__main__":
    main()
