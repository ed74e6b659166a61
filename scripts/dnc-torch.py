#!/usr/bin/env python3
"""An independent PyTorch implementation of the DNC of ../shared/docs/dnc-spec.md (DeepMind's
reference code: softplus key strengths, read modes [backward x K, forward x K, content], K write
heads with sequential allocation, one LSTM controller with forget bias +1, optional forward
clamp), used to cross-check our burn DNC and to time it on the same sizes.

Usage:
    # cross-check: our case file against torch in float32 and float64, and the golden fixture
    cargo run --release -p mg-models --example dnc_crosscheck -- /tmp/dnc-crosscheck.safetensors
    python3 scripts/dnc-torch.py --crosscheck /tmp/dnc-crosscheck.safetensors \\
        [--golden crates/mg-models/tests/fixtures/dnc-torch-golden.json]

    # benchmark: a training window and an inference step, one JSON line each
    python3 scripts/dnc-torch.py --bench --preset recall-dnc-10 --threads 2
    python3 scripts/dnc-torch.py --bench --batch 16 --steps 20 --input 6 --output 5 \\
        --controller 64 --slots 16 --word 16 --reads 4 --writes 1 --iters 10 --warmup 2

Cross-check. The safetensors file (written by the example) holds the case's weights named by
our module paths in our layouts (a Linear weight is [d_in, d_out], transposed relative to
torch; the controller weight [X + R*W + C, 4C] has rows [x; r_{t-1}; h_{t-1}] and columns
(i, j, f, o)), the inputs `input.x` [T*B, X] and `input.target` [T*B, Y] (time-major rows,
row = t*B + b), the initial state `state.FIELD` and our results: `ours.logits`, `ours.loss`,
`ours.grad.NAME` (every parameter), `ours.grad.state.FIELD` (gradients of the initial state)
and `ours.final.FIELD` (the state after the window). This script runs the same window (summed
sigmoid cross-entropy over all logits, backward) in float32 and float64 and prints how far our
f32 results and torch's f32 results are from torch's float64 ones, relative to each tensor's
RMS: max |ours - theirs| / rms(theirs). It also prints the smallest gap between neighbouring
usages in any allocation sort (the sort order is not differentiable; a gap near f32 rounding
would make f32 and f64 disagree by order 1) and how many values the clamp cut.

--golden writes the float64 results as a digest (for the logits and every gradient and final
state tensor: the entry count, the sum of squares, eight spread entries and the largest one,
or every entry of a tensor of at most 16; and the loss), in our layouts, for the test
`dnc_torch_golden`.

Benchmark. Times a training window (forward over --steps steps from the zero state, summed
sigmoid cross-entropy over the last --answers steps, backward, then what `mg-train bench`
also times: clipping by global norm and a TF-style RMSProp step; --optimizer none leaves the
last two out) and an inference step (one step without autograd, from the state left by
--steps steps, carried on), and prints one JSON line per phase with seconds per repetition
(min and median) and `other_load`, the cores' worth of CPU other processes used meanwhile.
--phases inference_window times a forward over --steps steps from the zero state without
autograd: what `mg-train bench` records as `inference_step` for the algorithmic tasks, whose
models read whole sequences.
--preset recall-dnc-10 / sort-dnc-20 sets the sizes of configs/recall/dnc-10.toml and
configs/sort/dnc-20.toml (X, Y, B, T and the answer steps of their tasks); the parameter count
is printed and equals `mg-train info`'s.

Needs torch and numpy (not project dependencies).
"""

import argparse
import json
import math
import os
import platform
import statistics
import struct
import sys
import time
from collections import namedtuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-6
FORGET_BIAS = 1.0
SAMPLES = 8

# The recurrent state, per batch element: read words r [R, W], memory [N, W], read weights
# [R, N], write weights [K, N], link [K, N, N], precedence [K, N], usage [N], LSTM h and c [C].
State = namedtuple(
    "State",
    "read_words memory read_weights write_weights link precedence usage hidden cell",
)


def softplus(x):
    # exact up to float64 rounding (the default threshold of 20 would cut at e^-20)
    return F.softplus(x, threshold=40.0)


def oneplus(x):
    return 1.0 + softplus(x)


def truncated_normal_(t, std):
    """Sonnet 1 / TF truncated normal: N(0, std^2) re-drawn beyond two std."""
    with torch.no_grad():
        nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
    return t


def sonnet_linear(d_in, d_out):
    lin = nn.Linear(d_in, d_out)
    truncated_normal_(lin.weight, 1.0 / math.sqrt(d_in))
    nn.init.zeros_(lin.bias)
    return lin


class Controller(nn.Module):
    """Sonnet 1 snt.LSTM: one affine map of [input; h] to gates (i, j, f, o),
    c = sig(f + 1) c + sig(i) tanh(j), h = tanh(c) sig(o). weight [4C, d_in + C]."""

    def __init__(self, d_in, hidden):
        super().__init__()
        self.hidden = hidden
        std = 1.0 / math.sqrt(d_in + hidden)
        self.weight = nn.Parameter(truncated_normal_(torch.empty(4 * hidden, d_in + hidden), std))
        self.bias = nn.Parameter(truncated_normal_(torch.empty(4 * hidden), std))

    def forward(self, inputs, h, c):
        gates = F.linear(torch.cat([inputs, h], 1), self.weight, self.bias)
        i, j, f, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(j)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, c


class Interface(nn.Module):
    """One affine map of h per interface field, in the reference's order."""

    def __init__(self, c, r, k, w):
        super().__init__()
        self.r, self.k, self.w = r, k, w
        widths = dict(
            write_vectors=k * w, erase_vectors=k * w, free_gate=r, allocation_gate=k,
            write_gate=k, read_mode=r * (1 + 2 * k), write_keys=k * w, write_strengths=k,
            read_keys=r * w, read_strengths=r,
        )
        for name, width in widths.items():
            setattr(self, name, sonnet_linear(c, width))

    def forward(self, h):
        b, r, k, w = h.shape[0], self.r, self.k, self.w
        modes = torch.softmax(self.read_mode(h).view(b, r, 1 + 2 * k), dim=2)
        return dict(
            write_vectors=self.write_vectors(h).view(b, k, w),
            erase_vectors=torch.sigmoid(self.erase_vectors(h).view(b, k, w)),
            free_gate=torch.sigmoid(self.free_gate(h)),
            allocation_gate=torch.sigmoid(self.allocation_gate(h)),
            write_gate=torch.sigmoid(self.write_gate(h)),
            backward_mode=modes[:, :, :k],
            forward_mode=modes[:, :, k : 2 * k],
            content_mode=modes[:, :, 2 * k],
            write_keys=self.write_keys(h).view(b, k, w),
            write_strengths=self.write_strengths(h),
            read_keys=self.read_keys(h).view(b, r, w),
            read_strengths=self.read_strengths(h),
        )


def vector_norms(m):
    return torch.sqrt((m * m).sum(dim=2, keepdim=True) + EPSILON)


def content_weights(memory, keys, raw_strengths, strength_op):
    """CosineWeights: softmax_n(op(beta) <k, M_n> / (|k| |M_n| + eps)); [B, H, N]."""
    dot = torch.matmul(keys, memory.transpose(1, 2))
    norm = torch.matmul(vector_norms(keys), vector_norms(memory).transpose(1, 2))
    similarity = dot / (norm + EPSILON)
    return torch.softmax(similarity * strength_op(raw_strengths).unsqueeze(-1), dim=-1)


def allocation(usage, trace=None):
    """Free list: u = eps + (1 - eps) u; sort 1 - u descending (stable: ties to the lower slot,
    as tf.nn.top_k); a = sorted (1 - u) * exclusive cumprod of sorted u, scattered back. The
    permutation is constant for autograd; gradients flow through the gathered values."""
    usage = EPSILON + (1.0 - EPSILON) * usage
    nonusage = 1.0 - usage
    sorted_nonusage, indices = torch.sort(nonusage, dim=1, descending=True, stable=True)
    sorted_usage = 1.0 - sorted_nonusage
    ones = torch.ones_like(sorted_usage[:, :1])
    prod_sorted_usage = torch.cumprod(torch.cat([ones, sorted_usage[:, :-1]], dim=1), dim=1)
    sorted_allocation = sorted_nonusage * prod_sorted_usage
    if trace is not None:
        s = sorted_usage.detach()
        gaps = s[:, 1:] - s[:, :-1]
        # swapping a near-tied neighbour pair moves allocation by about (1 - u)^2 * prefix
        jumps = (1.0 - s[:, :-1]) ** 2 * prod_sorted_usage[:, :-1].detach()
        trace.setdefault("sort", []).append((gaps, jumps))
    inverse = torch.argsort(indices, dim=1)
    return torch.gather(sorted_allocation, 1, inverse)


class DNC(nn.Module):
    def __init__(self, input_size, output_size, controller, slots, word, reads=4, writes=1,
                 clip=0.0, strength="softplus"):
        super().__init__()
        self.x, self.y, self.c = input_size, output_size, controller
        self.n, self.w, self.r, self.k = slots, word, reads, writes
        self.clip = clip
        self.strength_op = {"softplus": softplus, "oneplus": oneplus}[strength]
        self.controller = Controller(input_size + reads * word, controller)
        self.interface = Interface(controller, reads, writes, word)
        self.output = sonnet_linear(controller + reads * word, output_size)

    def zero_state(self, batch, dtype=torch.float32, device="cpu"):
        b, n, w, r, k, c = batch, self.n, self.w, self.r, self.k, self.c
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)
        return State(z(b, r, w), z(b, n, w), z(b, r, n), z(b, k, n), z(b, k, n, n), z(b, k, n),
                     z(b, n), z(b, c), z(b, c))

    def clamp(self, t, trace=None, what=None):
        if self.clip <= 0:
            return t
        if trace is not None:
            trace.setdefault("clip", []).append((what, t.detach().clone()))
        return torch.clamp(t, -self.clip, self.clip)

    def step(self, x, prev, trace=None):
        """One step: x [B, X], prev State -> (y [B, Y], State)."""
        b = x.shape[0]
        h, c = self.controller(torch.cat([x, prev.read_words.reshape(b, -1)], 1),
                               prev.hidden, prev.cell)
        h, c = self.clamp(h, trace, "h"), self.clamp(c, trace, "c")
        ctl = self.interface(h)

        # usage: previous write weights behind a stop-gradient, then the free gates
        ww_prev = prev.write_weights.detach()
        written = 1.0 - torch.prod(1.0 - ww_prev, dim=1)
        usage = prev.usage + (1.0 - prev.usage) * written
        retention = torch.prod(1.0 - ctl["free_gate"].unsqueeze(-1) * prev.read_weights, dim=1)
        usage = usage * retention

        # write weights: content on the previous memory, allocation from the new usage, heads
        # allocating one after another on a local copy of the usage
        write_content = content_weights(prev.memory, ctl["write_keys"], ctl["write_strengths"],
                                        self.strength_op)
        alloc_gate, write_gate = ctl["allocation_gate"], ctl["write_gate"]
        gates = alloc_gate * write_gate
        local, allocs = usage, []
        for k in range(self.k):
            a = allocation(local, trace)
            allocs.append(a)
            local = local + (1.0 - local) * gates[:, k : k + 1] * a
        alloc = torch.stack(allocs, dim=1)
        ga, gw = alloc_gate.unsqueeze(-1), write_gate.unsqueeze(-1)
        ww = gw * (ga * alloc + (1.0 - ga) * write_content)  # [B, K, N]

        # erase (product over heads) then add (sum over heads)
        keep = torch.prod(1.0 - ww.unsqueeze(3) * ctl["erase_vectors"].unsqueeze(2), dim=1)
        memory = prev.memory * keep + torch.matmul(ww.transpose(1, 2), ctl["write_vectors"])

        # link (with the previous precedence), then precedence
        w_i, w_j = ww.unsqueeze(3), ww.unsqueeze(2)
        link = (1.0 - w_i - w_j) * prev.link + w_i * prev.precedence.unsqueeze(2)
        torch.diagonal(link, dim1=2, dim2=3).zero_()  # (matrix_set_diag to 0)
        precedence = (1.0 - ww.sum(dim=2, keepdim=True)) * prev.precedence + ww

        # reads: content on the new memory, moves along the new link from the previous reads
        read_content = content_weights(memory, ctl["read_keys"], ctl["read_strengths"],
                                       self.strength_op)
        prev_reads = prev.read_weights.unsqueeze(1)  # [B, 1, R, N]
        fwd = torch.matmul(link, prev_reads.transpose(2, 3)).permute(0, 3, 1, 2)  # f = L w
        bwd = torch.matmul(prev_reads, link).transpose(1, 2)  # b = L^T w; both [B, R, K, N]
        read_weights = (ctl["content_mode"].unsqueeze(-1) * read_content
                        + (ctl["forward_mode"].unsqueeze(-1) * fwd).sum(dim=2)
                        + (ctl["backward_mode"].unsqueeze(-1) * bwd).sum(dim=2))
        read_words = torch.matmul(read_weights, memory)

        y = self.output(torch.cat([h, read_words.reshape(b, -1)], 1))
        y = self.clamp(y, trace, "y")
        return y, State(read_words, memory, read_weights, ww, link, precedence, usage, h, c)

    def forward_window(self, x, state, trace=None):
        """x [T, B, X] -> (y [T*B, Y] time-major, last State)."""
        ys = []
        for t in range(x.shape[0]):
            y, state = self.step(x[t], state, trace)
            ys.append(y)
        return torch.cat(ys, 0), state


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def expected_params(x, y, c, n, w, r, k):
    """LSTM (X + RW + C + 1) 4C, interface (C + 1)(RW + 3KW + 3K + 3R + 2RK), output
    (C + RW + 1) Y."""
    interface = r * w + 3 * k * w + 3 * k + 3 * r + 2 * r * k
    return (x + r * w + c + 1) * 4 * c + (c + 1) * interface + (c + r * w + 1) * y


# ---------------------------------------------------------------------------------------------
# cross-check
# ---------------------------------------------------------------------------------------------
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


def load_ours(model, weights):
    """Loads weights named by our module paths, in our layouts (2-D weights transposed)."""
    params = dict(model.named_parameters())
    if set(params) != set(weights):
        sys.exit(f"parameter names differ: {sorted(set(params) ^ set(weights))[:6]}")
    with torch.no_grad():
        for name, p in params.items():
            v = torch.from_numpy(weights[name].copy())
            if p.dim() == 2:
                v = v.t()
            if tuple(v.shape) != tuple(p.shape):
                sys.exit(f"{name}: shape {tuple(weights[name].shape)} does not fit "
                         f"{tuple(p.shape)}")
            p.copy_(v.to(p.dtype))


def ours_layout(t):
    """A torch parameter's tensor in our layout, as float64 numpy."""
    t = t.detach().double()
    return (t.t() if t.dim() == 2 else t).contiguous().numpy()


def run_case(cfg, weights, inputs, state0, steps, batch, dtype, trace=None):
    model = DNC(cfg["input"], cfg["output"], cfg["controller"], cfg["slots"], cfg["word"],
                cfg["reads"], cfg["writes"], cfg["clip"], cfg["strength"]).to(dtype)
    load_ours(model, weights)
    x = torch.from_numpy(inputs["input.x"].copy()).to(dtype).reshape(steps, batch, -1)
    target = torch.from_numpy(inputs["input.target"].copy()).to(dtype)
    start = State(*(torch.from_numpy(state0[f].copy()).to(dtype).requires_grad_()
                    for f in State._fields))
    logits, last = model.forward_window(x, start, trace)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    loss.backward()
    out = {"logits": logits.detach().double().numpy()}
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = ours_layout(p.grad)
    for f, t in zip(State._fields, start):
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        out[f"grad.state.{f}"] = g.detach().double().numpy()
    for f, t in zip(State._fields, last):
        out[f"final.{f}"] = t.detach().double().numpy()
    return float(loss.detach()), out


def rel_error(ours, theirs):
    """max |ours - theirs| / rms(theirs); the plain max where theirs is all zero."""
    err = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
    rms = math.sqrt(float(np.mean(np.square(theirs))))
    return err / rms if rms > 0 else err


def digest(x):
    """[number of entries, sum of squares, index, value, ...]: every entry of a tensor of at
    most 2 * SAMPLES, else SAMPLES spread entries and the largest in magnitude; values to 9
    significant digits, indices into the row-major flattening of our layout."""
    flat = x.reshape(-1)
    n = flat.size
    if n <= 2 * SAMPLES:
        picks = range(n)
    else:
        picks = sorted({(k * n) // SAMPLES + (k * 7) % max(n // SAMPLES, 1) for k in range(SAMPLES)}
                       | {int(np.argmax(np.abs(flat)))})
    out = [n, float(f"{np.square(flat).sum():.9g}")]
    for i in picks:
        out += [int(i), float(f"{flat[i]:.9g}")]
    return out


def write_golden(path, golden):
    with open(path, "w") as f:
        f.write("{\n")
        items = list(golden.items())
        for k, (key, value) in enumerate(items):
            if isinstance(value, dict) and key != "config":
                f.write(f" {json.dumps(key)}: {{\n")
                names = list(value)
                for j, name in enumerate(names):
                    sep = "," if j + 1 < len(names) else ""
                    f.write(f"  {json.dumps(name)}: {json.dumps(value[name])}{sep}\n")
                f.write(" }")
            else:
                f.write(f" {json.dumps(key)}: {json.dumps(value)}")
            f.write(",\n" if k + 1 < len(items) else "\n")
        f.write("}\n")


def crosscheck(args):
    tensors, meta = read_safetensors(args.crosscheck)
    cfg = json.loads(meta["config"])
    steps, batch = int(meta["steps"]), int(meta["batch"])
    inputs = {k: tensors.pop(k) for k in ("input.x", "input.target")}
    state0 = {f: tensors.pop(f"state.{f}") for f in State._fields}
    ours_loss = float(meta["loss_f64"])
    tensors.pop("ours.loss")
    ours = {k[len("ours."):]: tensors.pop(k) for k in list(tensors) if k.startswith("ours.")}
    weights = tensors
    torch.set_num_threads(max(1, args.threads))

    trace = {}
    loss32, out32 = run_case(cfg, weights, inputs, state0, steps, batch, torch.float32)
    loss64, out64 = run_case(cfg, weights, inputs, state0, steps, batch, torch.float64, trace)
    if set(ours) != set(out64):
        sys.exit(f"result names differ: {sorted(set(ours) ^ set(out64))[:6]}")

    model = DNC(cfg["input"], cfg["output"], cfg["controller"], cfg["slots"], cfg["word"],
                cfg["reads"], cfg["writes"])
    sizes = [cfg[k] for k in ("input", "output", "controller", "slots", "word", "reads", "writes")]
    print(f"case: X Y C N W R K = {sizes}, clip {cfg['clip']}, {cfg['strength']}, "
          f"{steps} steps x {batch} rows, {num_params(model)} parameters, "
          f"torch {torch.__version__}")
    gaps = torch.cat([g.reshape(-1) for g, _ in trace["sort"]])
    jumps = torch.cat([j.reshape(-1) for _, j in trace["sort"]])
    i = int(torch.argmin(gaps))
    print(f"allocation sorts: {len(trace['sort'])}, smallest gap between neighbouring usages "
          f"{float(gaps[i]):.2e} (a swap there would move an allocation by {float(jumps[i]):.1e})")
    if cfg["clip"] > 0:
        for what in ("h", "c", "y"):
            v = torch.cat([t.reshape(-1) for w, t in trace["clip"] if w == what]).abs()
            margin = float((v - cfg["clip"]).abs().min())
            print(f"clamp of {what}: {int((v > cfg['clip']).sum())} of {v.numel()} values cut, "
                  f"closest to ±{cfg['clip']} by {margin:.2e}")

    groups = [("logits", lambda k: k == "logits"),
              ("parameter grads",
               lambda k: k.startswith("grad.") and not k.startswith("grad.state.")),
              ("state grads", lambda k: k.startswith("grad.state.")),
              ("final state", lambda k: k.startswith("final."))]

    def worst(a, b, keep):
        return max(((rel_error(a[k], b[k]), k) for k in b if keep(k)), key=lambda t: t[0])

    print("errors relative to each tensor's RMS (worst tensor of each group):")
    print(f"{'':<22} {'loss (rel)':>10} " + " ".join(f"{g:>34}" for g, _ in groups))
    rows = [("ours f32 vs torch f64", ours, ours_loss, out64, loss64),
            ("torch f32 vs torch f64", out32, loss32, out64, loss64),
            ("ours f32 vs torch f32", ours, ours_loss, out32, loss32)]
    for label, a, la, b, lb in rows:
        cells = []
        for _, keep in groups:
            e, k = worst(a, b, keep)
            short = k.split(".", 1)[1] if "." in k else k
            cells.append(f"{e:9.2e} ({short.replace('state.', '').replace('interface.', '')})"[:34])
        print(f"{label:<22} {abs(la - lb) / abs(lb):>10.2e} " + " ".join(f"{c:>34}" for c in cells))
    if args.verbose:
        for k in out64:
            print(f"  {k:<40} ours-f64 {rel_error(ours[k], out64[k]):.2e}  "
                  f"f32-f64 {rel_error(out32[k], out64[k]):.2e}")
    zero = [k for k in out64 if not np.any(out64[k])]
    if zero:
        print(f"all zero in float64 (ours: max |x| = "
              f"{max(float(np.max(np.abs(ours[k]))) for k in zero):.1e}): {', '.join(zero)}")

    if args.golden:
        golden = {
            "what": "PyTorch float64 results of the dnc_crosscheck case (scripts/dnc-torch.py), "
                    "in our layouts",
            "torch": torch.__version__,
            "config": cfg,
            "steps": steps,
            "batch": batch,
            "loss": loss64,
            "logits": digest(out64["logits"]),
            "grads": {k[5:]: digest(v) for k, v in out64.items() if groups[1][1](k)},
            "state_grads": {k[11:]: digest(v) for k, v in out64.items() if groups[2][1](k)},
            "final": {k[6:]: digest(v) for k, v in out64.items() if groups[3][1](k)},
        }
        write_golden(args.golden, golden)
        print(f"wrote {args.golden} ({os.path.getsize(args.golden)} bytes)")


# ---------------------------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------------------------
# configs/recall/dnc-10.toml: recall of 10 9-bit vectors, flat rows of the 9 bits and a query
# flag (X = 10), 10 items + 1 query step (T = 11), the answer at the last step (Y = 9).
# configs/sort/dnc-20.toml: sort of 20 9-bit vectors, rows of 9 bits, the priority and an
# answer flag (X = 11), 20 items + 20 answer steps (T = 40), answers at the last 20 steps.
PRESETS = {
    "recall-dnc-10": dict(batch=32, steps=11, answers=1, input=10, output=9, controller=384,
                          slots=500, word=16, reads=4, writes=1, clip=20.0),
    "sort-dnc-20": dict(batch=32, steps=40, answers=20, input=11, output=9, controller=383,
                        slots=500, word=16, reads=4, writes=1, clip=20.0),
}
DEFAULTS = dict(batch=32, steps=11, answers=None, input=10, output=9, controller=384, slots=500,
                word=16, reads=4, writes=1, clip=20.0)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def busy_seconds():
    """CPU seconds all processes spent busy so far (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def timed(fn, warmup, iters):
    """(min, median) seconds of `iters` calls after `warmup` ones, and the cores' worth of CPU
    other processes used meanwhile (None where /proc/stat is missing)."""
    for _ in range(warmup):
        fn()
    ts = []
    b0, c0, w0 = busy_seconds(), time.process_time(), time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    b1, c1, w1 = busy_seconds(), time.process_time(), time.perf_counter()
    other = None
    if b0 is not None and b1 is not None:
        other = round(max(0.0, (b1 - b0) - (c1 - c0)) / (w1 - w0), 2)
    return min(ts), statistics.median(ts), other


class TfRmsProp:
    """What `mg-train`'s tf-rmsprop does per step: ms <- 0.9 ms + 0.1 g^2 (ms starting at 1),
    p <- p - lr g / sqrt(ms + 1e-10)."""

    def __init__(self, params, lr=1e-4, decay=0.9, eps=1e-10):
        self.params = list(params)
        self.ms = [torch.ones_like(p) for p in self.params]
        self.lr, self.decay, self.eps = lr, decay, eps

    @torch.no_grad()
    def step(self, clip_norm):
        grads = [p.grad for p in self.params]
        torch.nn.utils.clip_grad_norm_(self.params, clip_norm, foreach=True)
        torch._foreach_mul_(self.ms, self.decay)
        torch._foreach_addcmul_(self.ms, grads, grads, value=1.0 - self.decay)
        denom = torch._foreach_add(self.ms, self.eps)
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr)


def bench(args):
    sizes = dict(DEFAULTS)
    if args.preset:
        sizes.update(PRESETS[args.preset])
    for k in sizes:
        v = getattr(args, k)
        if v is not None:
            sizes[k] = v
    b, t = sizes["batch"], sizes["steps"]
    answers = sizes["answers"] or t
    if not 1 <= answers <= t:
        sys.exit(f"--answers {answers}: expected 1..{t}")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = DNC(sizes["input"], sizes["output"], sizes["controller"], sizes["slots"],
                sizes["word"], sizes["reads"], sizes["writes"], sizes["clip"])
    params = num_params(model)
    dims = [sizes[k] for k in ("input", "output", "controller", "slots", "word", "reads", "writes")]
    assert params == expected_params(*dims), (params, expected_params(*dims))
    print(f"# {args.preset or 'custom'}: {params} parameters", file=sys.stderr)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(t, b, sizes["input"], generator=gen) < 0.5).float()
    target = (torch.rand(answers * b, sizes["output"], generator=gen) < 0.5).float()
    optim = TfRmsProp(model.parameters()) if args.optimizer == "tf-rmsprop" else None

    def train_window():
        for p in model.parameters():
            p.grad = None
        y, _ = model.forward_window(x, model.zero_state(b))
        loss = F.binary_cross_entropy_with_logits(y[(t - answers) * b :], target, reduction="sum")
        loss.backward()
        if optim is not None:
            optim.step(args.clip_norm)

    with torch.no_grad():
        _, warm_state = model.forward_window(x, model.zero_state(b))
    holder = {"state": warm_state}

    @torch.no_grad()
    def inference_step():
        _, holder["state"] = model.step(x[0], holder["state"])

    base = dict(impl="torch", batch=b, sizes=dict(zip(
        ("input", "output", "controller", "slots", "word", "reads", "writes"), dims)),
        clip=sizes["clip"], params=params, preset=args.preset, torch=torch.__version__,
        threads=torch.get_num_threads(), cpu=cpu_name(), iters=args.iters, warmup=args.warmup)
    @torch.no_grad()
    def inference_window():
        model.forward_window(x, model.zero_state(b))

    phases = {
        "train_window": (train_window, t, dict(answers=answers, optimizer=args.optimizer)),
        "inference_step": (inference_step, 1, dict(state_after_steps=t)),
        "inference_window": (inference_window, t, {}),
    }
    for phase in args.phases.split(","):
        if phase not in phases:
            sys.exit(f"--phases: {phase}? expected some of {', '.join(phases)}")
        fn, steps, extra = phases[phase]
        lo, med, other = timed(fn, args.warmup, args.iters)
        rec = dict(phase=phase, **base, steps=steps, min_s=round(lo, 6), median_s=round(med, 6),
                   other_load=other, **extra)
        print(json.dumps(rec), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crosscheck", metavar="FILE", help="the dnc_crosscheck example's file")
    ap.add_argument("--golden", help="with --crosscheck: write the float64 digest here (JSON)")
    ap.add_argument("--verbose", action="store_true", help="with --crosscheck: every tensor")
    ap.add_argument("--bench", action="store_true", help="time a training window and a step")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    sizes = dict(batch="batch B", steps="time steps T of the training window",
                 answers="loss on the last A steps (default: all)", input="input width X",
                 output="output width Y", controller="LSTM width C", slots="memory slots N",
                 word="word size W", reads="read heads R", writes="write heads K")
    for k, what in sizes.items():
        default = "" if k == "answers" else f"; default {DEFAULTS[k]}"
        ap.add_argument(f"--{k}", type=int, help=f"{what} (overrides the preset{default})")
    ap.add_argument("--clip", type=float, help="forward clamp of h, c, y (presets: 20)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--iters", type=int, default=5, help="timed repetitions")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    ap.add_argument("--phases", default="train_window,inference_step",
                    help="train_window, inference_step, inference_window (comma-separated)")
    ap.add_argument("--optimizer", choices=["tf-rmsprop", "none"], default="tf-rmsprop",
                    help="in the training window after backward (mg-train bench times one)")
    ap.add_argument("--clip-norm", type=float, default=1e4, help="global gradient-norm clip")
    args = ap.parse_args()
    if args.crosscheck:
        crosscheck(args)
    elif args.bench:
        bench(args)
    else:
        ap.error("pass --crosscheck FILE or --bench")


if __name__ == "__main__":
    main()
