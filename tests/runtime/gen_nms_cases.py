#!/usr/bin/python3
"""Writes class-wise NMS cases with torchvision.ops.batched_nms's keep lists, for nms_parity tests.

Usage: /usr/bin/python3 tests/runtime/gen_nms_cases.py OUT.json
Each case: boxes (n*4 floats), scores, labels, iou threshold and `keep` (batched_nms output, best
first). Boxes are clustered so that suppression really happens, with some degenerate ones.
"""
import json
import sys

import torch
import torchvision


def make_case(n, num_labels, iou, seed, clusters):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(clusters, 2, generator=g) * 500
    which = torch.randint(0, clusters, (n,), generator=g)
    ctr = centres[which] + torch.randn(n, 2, generator=g) * 8
    wh = torch.rand(n, 2, generator=g) * 80 + 4
    boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)
    boxes[::97, 2:] = boxes[::97, :2]  # zero-area boxes
    # Distinct scores: how ties are broken is implementation-defined (torch.sort is not stable).
    scores = (torch.randperm(n, generator=g).to(torch.float32) + 1) / (n + 1)
    labels = torch.randint(0, num_labels, (n,), generator=g)
    keep = torchvision.ops.batched_nms(boxes, scores, labels, iou)
    return {
        "name": f"n{n}_labels{num_labels}_iou{iou}",
        "boxes": boxes.reshape(-1).tolist(),
        "scores": scores.tolist(),
        "labels": labels.tolist(),
        "iou": iou,
        "keep": keep.tolist(),
    }


def main():
    cases = [
        make_case(2000, 10, 0.5, 1, 60),
        make_case(600, 3, 0.5, 2, 20),    # <= 1000 boxes: torchvision's coordinate-offset path
        make_case(5000, 50, 0.3, 3, 200),
        make_case(3000, 1, 0.7, 4, 40),
    ]
    with open(sys.argv[1], "w") as f:
        json.dump({"cases": cases}, f)


if __name__ == "__main__":
    main()
