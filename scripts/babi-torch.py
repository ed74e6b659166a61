#!/usr/bin/env python3
"""An independent PyTorch implementation of the 1D multigrid bAbI model (paper appendix B.3.1,
Figure 11; `mg_models::QaWidths::paper`), to time it against `mg-train bench` on the same sizes.

Usage:
    python3 scripts/babi-torch.py                       # parameter and memory counts
    python3 scripts/babi-torch.py --bench --batch 16 --steps 80 --threads 2

Model. A one-hot word (|V| = 159) on a 1x1 grid feeds seven multigrid conv-LSTM layers whose
level l is a 1 x 2^l row (levels 2, 2, 3, 3, 4, 4, 5, channels 11, 11, 21, 21, 41, 41, 41).
Level l of a layer reads [up2(prev[l-1]), prev[l], maxpool2(prev[l+1])] of the layer below
(missing levels dropped), concatenated with its own h, through one 1x3 convolution (padding
0, 1) to the gates (i, j, f, o): c' = sig(f + 1) c + sig(i) tanh(j), h' = tanh(c') sig(o).
Residuals W3 <- W1, W5 <- W3, W7 <- W5 add the source's levels to the target's outputs,
zero-padding channels. The head: multigrid conv layers of 41, 21 and 11 channels with ReLU,
each one level coarser than its input, then a linear one to 159 channels on the 1x1 grid:
998,068 parameters and 2,861 memory cells, as `mg-train info configs/babi/paper.toml` says.

Benchmark. Times a training window as `mg-train bench` does for a bAbI config: forward over
--steps words of --batch sequences from the zero state, the softmax cross-entropy averaged
over the answer words (every --answer-every-th word here; the loss's cost does not depend on
which), backward, clipping by global norm 10 and an Adam step. Two evaluation orders, both
timed: `step` runs the whole network one time step after the other (burn's step path);
`window` runs layer by layer, each level's input half of its convolution over all T*B rows at
once and only the recurrent half inside the time loop (burn's window path). One JSON line
each, with seconds per window (min and median), words per second, `other_load` (the cores'
worth of CPU other processes used meanwhile) and the CPU's name.

Needs torch (not a project dependency).
"""
import argparse
import importlib.util
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

_spec = importlib.util.spec_from_file_location(
    "dnc_torch", os.path.join(os.path.dirname(os.path.abspath(__file__)), "dnc-torch.py"))
_dnc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_dnc)
cpu_name, timed = _dnc.cpu_name, _dnc.timed

LEVELS = [2, 2, 3, 3, 4, 4, 5]
CHANNELS = [11, 11, 21, 21, 41, 41, 41]
HEAD = [41, 21, 11]
VOCAB = 159


def up2(x):
    return x.repeat_interleave(2, dim=3)


def pool2(x):
    return F.max_pool2d(x, (1, 2), (1, 2))


def gather(prev, level):
    """[up2(prev[l-1]), prev[l], pool2(prev[l+1])] of a pyramid (list over levels, None where
    absent), concatenated on channels."""
    parts = []
    if level >= 1 and level - 1 < len(prev) and prev[level - 1] is not None:
        parts.append(up2(prev[level - 1]))
    if level < len(prev) and prev[level] is not None:
        parts.append(prev[level])
    if level + 1 < len(prev) and prev[level + 1] is not None:
        parts.append(pool2(prev[level + 1]))
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def gather_channels(prev_ch, level):
    return sum(prev_ch[l] for l in (level - 1, level, level + 1) if 0 <= l < len(prev_ch))


def pad_add(dst, src):
    """dst + src with src's channels zero-padded to dst's."""
    cs, cd = src.shape[1], dst.shape[1]
    return dst + (src if cs == cd else F.pad(src, (0, 0, 0, 0, 0, cd - cs)))


class LstmLevel(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.cin, self.c = cin, c
        self.conv = nn.Conv2d(cin + c, 4 * c, (1, 3), padding=(0, 1))

    @staticmethod
    def gates(g, c):
        i, j, f, o = g.chunk(4, 1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
        return torch.tanh(c) * torch.sigmoid(o), c


class QaModel(nn.Module):
    def __init__(self, levels=LEVELS, channels=CHANNELS, head=HEAD, vocab=VOCAB):
        super().__init__()
        self.levels, self.channels, self.vocab = levels, channels, vocab
        self.writer = nn.ModuleList()
        prev_ch = [vocab]
        for n, c in zip(levels, channels):
            self.writer.append(nn.ModuleList(
                LstmLevel(gather_channels(prev_ch, j), c) for j in range(n)))
            prev_ch = [c] * n
        self.residuals = [(k - 2, k) for k in range(2, len(channels), 2)
                          if channels[k - 2] <= channels[k]]
        self.head = nn.ModuleList()
        for cout in head + [vocab]:
            n = len(prev_ch) - 1
            self.head.append(nn.ModuleList(
                nn.Conv2d(gather_channels(prev_ch, l), cout, (1, 3), padding=(0, 1))
                for l in range(n)))
            prev_ch = [cout] * n

    def memory_cells(self):
        return sum(c * 2 ** j for n, c in zip(self.levels, self.channels) for j in range(n))

    def zero_state(self, batch):
        return [torch.zeros(batch, c, 1, 2 ** j)
                for n, c in zip(self.levels, self.channels) for j in range(n) for _ in (0, 1)]

    def _residuals(self, k, cur, outs):
        for src, dst in self.residuals:
            if dst == k:
                for l, x in enumerate(outs[src]):
                    cur[l] = pad_add(cur[l], x)

    def step(self, x, state):
        """One time step: x [B, V, 1, 1]; returns the last layer's pyramid and the state."""
        prev, outs, new_state, si = [x], [], [], 0
        for k, layer in enumerate(self.writer):
            cur = []
            for j, cell in enumerate(layer):
                h, c = cell.gates(cell.conv(torch.cat([gather(prev, j), state[si]], 1)),
                                  state[si + 1])
                si += 2
                new_state += [h, c]
                cur.append(h)
            self._residuals(k, cur, outs)
            outs.append(cur)
            prev = cur
        return outs[-1], new_state

    def writer_steps(self, words, state):
        """words [T, B, V]: the whole network one step after the other."""
        t, b, v = words.shape
        mem = []
        for x in words.unbind(0):
            out, state = self.step(x.reshape(b, v, 1, 1), state)
            mem.append(out)
        return [torch.cat([m[l] for m in mem], 0) for l in range(len(mem[0]))], state

    def writer_window(self, words, state):
        """words [T, B, V]: layer by layer, the input half of each convolution over all rows."""
        t, b, v = words.shape
        prev, outs, new_state, si = [words.reshape(t * b, v, 1, 1)], [], [], 0
        for k, layer in enumerate(self.writer):
            cur = []
            for j, cell in enumerate(layer):
                w, bias = cell.conv.weight, cell.conv.bias
                gx = F.conv2d(gather(prev, j), w[:, :cell.cin], bias, padding=(0, 1))
                gx = gx.view(t, b, *gx.shape[1:])
                wh = w[:, cell.cin:]
                h, c = state[si], state[si + 1]
                si += 2
                hs = []
                for s in range(t):
                    h, c = cell.gates(gx[s] + F.conv2d(h, wh, None, padding=(0, 1)), c)
                    hs.append(h)
                new_state += [h, c]
                cur.append(torch.cat(hs, 0))
            self._residuals(k, cur, outs)
            outs.append(cur)
            prev = cur
        return outs[-1], new_state

    def forward(self, words, state, window=True):
        """words [T, B, V] -> logits [T*B, V] (time-major rows) and the state."""
        mem, state = (self.writer_window if window else self.writer_steps)(words, state)
        x = mem
        for i, layer in enumerate(self.head):
            last = i + 1 == len(self.head)
            x = [conv(gather(x, l)) for l, conv in enumerate(layer)]
            if not last:
                x = [F.relu(y) for y in x]
        return x[0].reshape(-1, self.vocab), state


def bench(args):
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = QaModel()
    params = sum(p.numel() for p in model.parameters())
    b, t = args.batch, args.steps
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(VOCAB, (t, b), generator=gen)
    words = F.one_hot(ids, VOCAB).float()
    target = torch.randint(VOCAB, (t * b,), generator=gen)
    answers = torch.arange(t * b) // b % args.answer_every == args.answer_every - 1
    optim = torch.optim.Adam(model.parameters(), lr=3e-3, foreach=True)

    def train_window(window):
        optim.zero_grad(set_to_none=True)
        logits, _ = model(words, model.zero_state(b), window=window)
        loss = F.cross_entropy(logits[answers], target[answers])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0, foreach=True)
        optim.step()

    for path in args.paths.split(","):
        if path not in ("window", "step"):
            sys.exit(f"--paths: {path}? expected window and/or step")
        lo, med, other = timed(lambda: train_window(path == "window"), args.warmup, args.iters)
        print(json.dumps(dict(
            impl="torch", bench=f"train_window_{path}_path", model="babi-paper", params=params,
            memory=model.memory_cells(), batch=b, steps=t, min_s=round(lo, 6),
            median_s=round(med, 6), words_per_s=round(b * t / med, 1),
            answers=int(answers.sum()), torch=torch.__version__, threads=torch.get_num_threads(),
            cpu=cpu_name(), iters=args.iters, warmup=args.warmup, other_load=other)), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", action="store_true", help="time training windows (JSON lines)")
    ap.add_argument("--batch", type=int, default=16, help="sequences B (babi/paper.toml: 16)")
    ap.add_argument("--steps", type=int, default=80, help="words per sequence T")
    ap.add_argument("--answer-every", type=int, default=8, help="every n-th word is an answer")
    ap.add_argument("--paths", default="window,step", help="window and/or step")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--iters", type=int, default=3, help="timed repetitions")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    args = ap.parse_args()
    for name in ("batch", "steps", "answer_every", "threads", "iters"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected at least 1")
    if args.bench:
        bench(args)
    else:
        model = QaModel()
        params = sum(p.numel() for p in model.parameters())
        print(json.dumps(dict(params=params, memory=model.memory_cells())))
        assert (params, model.memory_cells()) == (998_068, 2_861), "the paper model's counts"


if __name__ == "__main__":
    main()
