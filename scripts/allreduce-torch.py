#!/usr/bin/env python3
"""PyTorch's all-reduce between processes on one machine (gloo over 127.0.0.1), the reference
for `mg-train --nodes`' per-window sums in docs/BENCHMARKS.md: the time of one all-reduce of
`--floats` float32 values between `--procs` processes, as one JSON line.

    python3 scripts/allreduce-torch.py --floats 62420 --procs 2 --iters 200
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, args, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.procs)
    x = torch.ones(args.floats)
    for _ in range(args.warmup):
        dist.all_reduce(x)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.iters):
        dist.all_reduce(x)
    seconds = (time.perf_counter() - start) / args.iters
    if rank == 0:
        out.put(seconds)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--floats", type=int, required=True)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, args, args.port, out)) for r in range(args.procs)]
    for proc in procs:
        proc.start()
    seconds = out.get()
    for proc in procs:
        proc.join()
    print(json.dumps({
        "bench": "torch_allreduce_gloo",
        "torch": torch.__version__,
        "floats": args.floats,
        "procs": args.procs,
        "ms_per_allreduce": 1e3 * seconds,
    }))


if __name__ == "__main__":
    main()
