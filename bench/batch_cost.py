#!/usr/bin/python3
"""CPU cost of a batch of images through a frozen demo detector against the same images one at a
time (docs/performance.md, "Batching, profiled").

Loads the TorchScript model, freezes and optimises it for inference as logn_server does, and runs
N images either as one batch or as N single-image calls: CPU ms per N images over --rounds rounds
(after 3 of warm-up), minor page faults and kernel time. --profile prints torch's operator table.
One LibTorch thread, as the server's default.

    batch_cost.py --model models/demo_ce/model.pt --images DIR --mode batch|single [--profile]
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import export_torchvision  # noqa: E402  (the runtime's preprocessing)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--mode", choices=("batch", "single"), required=True)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    from torchvision.io import ImageReadMode, read_image

    torch.set_num_threads(1)
    with open(os.path.splitext(args.model)[0] + ".json") as f:
        policy = json.load(f)["input"]
    files = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.count]
    images = [export_torchvision.preprocess(read_image(f, ImageReadMode.RGB).permute(1, 2, 0), policy)[0]
              for f in files]
    model = torch.jit.load(args.model).eval()
    model = torch.jit.optimize_for_inference(
        torch.jit.freeze(model, preserved_attrs=["classify_rois", "proposals"]))

    def run():
        if args.mode == "batch":
            model(images)
        else:
            for x in images:
                model([x])

    with torch.inference_mode():
        for _ in range(3):
            run()
        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu = time.process_time()
        for _ in range(args.rounds):
            run()
        cpu = (time.process_time() - cpu) / args.rounds
        after = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({
            "mode": args.mode, "images": len(images),
            "cpu_ms": round(1000 * cpu, 1),
            "minor_faults": (after.ru_minflt - before.ru_minflt) / args.rounds,
            "system_ms": round(1000 * (after.ru_stime - before.ru_stime) / args.rounds, 1)}))
        if args.profile:
            with torch.autograd.profiler.profile() as prof:
                run()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
