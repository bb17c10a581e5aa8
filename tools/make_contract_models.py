#!/usr/bin/python3
"""Builds tiny deterministic detectors that follow the LogN Serve model contract, for tests.

Each model is a small convnet plus a fixed grid of proposals: the RoI head samples the feature map
at each box centre and maps (features, box geometry) to C+1 logits and box refinements. The weights
are random but seeded, so every run writes the same models. Per model it writes <name>.pt
(TorchScript), <name>.json (the manifest) and, with --reference, <name>_ref/ (test images and the
eager model's outputs, see export_torchvision.write_reference).

Models:
  contract_agnostic  5 classes, background first, boxes [N, 4], RGB 0-1, shorter side 64 / longer
                     <= 96, with classify_rois.
  contract_specific  7 classes, background last, boxes [N, C, 4], BGR 0-255, fixed 80x96, no
                     classify_rois.
  contract_bad_rows  like contract_agnostic but returns one logit row fewer than boxes: a contract
                     violation the runtime must refuse at load.
  contract_proposals like contract_agnostic (other weights), also exporting proposals(images): a
                     5 x 5 lattice at two sizes (50 boxes, input pixels) shifted by up to 1 px by
                     the image content.
  contract_bad_proposals  like contract_proposals, but its proposals carry a fifth column (the
                     score): [P, 5], a contract violation the runtime must refuse at load.
  contract_lvis      1,203 classes (LVIS-sized logits), for serving benchmarks.

Usage: /usr/bin/python3 tools/make_contract_models.py --out-dir DIR [--reference]
"""

import argparse
import json
import os
import sys
from typing import List, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_torchvision  # noqa: E402  (shared reference preprocessing and manifest helpers)


class TinyDetector(torch.nn.Module):
    def __init__(self, num_classes: int, class_specific: bool, grid: int, drop_row: bool):
        super().__init__()
        self.num_classes = num_classes
        self.class_specific = class_specific
        self.grid = grid
        self.drop_row = drop_row
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        self.cls = torch.nn.Linear(16 + 4, num_classes + 1)
        self.reg = torch.nn.Linear(16 + 4, 4 * (num_classes if class_specific else 1))

    def _proposals(self, h: int, w: int) -> torch.Tensor:
        """A grid x grid lattice of boxes at two sizes, in input pixels."""
        boxes: List[List[float]] = []
        for size in [0.25, 0.5]:
            for gy in range(self.grid):
                for gx in range(self.grid):
                    cx = (gx + 0.5) * w / self.grid
                    cy = (gy + 0.5) * h / self.grid
                    bw = size * w
                    bh = size * h
                    boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        return torch.tensor(boxes)

    def _head(self, feat: torch.Tensor, rois: torch.Tensor, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        cx = (rois[:, 0] + rois[:, 2]) / 2
        cy = (rois[:, 1] + rois[:, 3]) / 2
        grid = torch.stack([cx / w * 2 - 1, cy / h * 2 - 1], dim=-1).view(1, -1, 1, 2)
        sampled = F.grid_sample(feat[None], grid, mode="bilinear", align_corners=False)[0, :, :, 0].t()
        geometry = rois / torch.tensor([w, h, w, h], dtype=rois.dtype)
        x = torch.cat([sampled, geometry], dim=1)
        return self.cls(x), self.reg(x)

    def forward(self, images: List[torch.Tensor]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        out: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for img in images:
            h = int(img.shape[1])
            w = int(img.shape[2])
            feat = self.features(img[None])[0]
            proposals = self._proposals(h, w).to(img.device)
            logits, deltas = self._head(feat, proposals, h, w)
            sizes = torch.stack(
                [proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]] * 2, dim=1
            )
            k = self.num_classes if self.class_specific else 1
            boxes = proposals[:, None, :] + 0.1 * deltas.view(-1, k, 4) * sizes[:, None, :]
            boxes = torch.stack(
                [
                    boxes[..., 0].clamp(0, w),
                    boxes[..., 1].clamp(0, h),
                    boxes[..., 2].clamp(0, w),
                    boxes[..., 3].clamp(0, h),
                ],
                dim=-1,
            )
            if not self.class_specific:
                boxes = boxes[:, 0]
            if self.drop_row:
                logits = logits[1:]
            out.append((boxes.contiguous(), logits))
        return out

    def _classify_rois(self, images: List[torch.Tensor], rois: List[torch.Tensor]) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        for img, r in zip(images, rois):
            h = int(img.shape[1])
            w = int(img.shape[2])
            feat = self.features(img[None])[0]
            logits, _ = self._head(feat, r.to(img.dtype), h, w)
            out.append(logits)
        return out


class TinyDetectorWithRois(TinyDetector):
    """The same detector, also exporting the optional classify_rois method."""

    @torch.jit.export
    def classify_rois(self, images: List[torch.Tensor], rois: List[torch.Tensor]) -> List[torch.Tensor]:
        return self._classify_rois(images, rois)


class TinyDetectorWithProposals(TinyDetectorWithRois):
    """Also exports the optional proposals method; `proposal_columns` 5 breaks the contract."""

    def __init__(self, num_classes: int, class_specific: bool, grid: int, drop_row: bool, proposal_columns: int):
        super().__init__(num_classes, class_specific, grid, drop_row)
        self.proposal_columns = proposal_columns

    @torch.jit.export
    def proposals(self, images: List[torch.Tensor]) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        for img in images:
            h = int(img.shape[1])
            w = int(img.shape[2])
            feat = self.features(img[None])[0]
            boxes: List[List[float]] = []
            n = self.grid + 1  # not forward's lattice: the two must not be confused
            for size in [0.2, 0.4]:
                for gy in range(n):
                    for gx in range(n):
                        cx = (gx + 0.5) * w / n
                        cy = (gy + 0.5) * h / n
                        boxes.append([cx - size * w / 2, cy - size * h / 2, cx + size * w / 2, cy + size * h / 2])
            b = torch.tensor(boxes, device=img.device) + torch.tanh(feat.mean())
            b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1)
            scores = torch.sigmoid(feat.mean(0).flatten()[: b.shape[0]])
            if scores.shape[0] < b.shape[0]:
                scores = torch.cat([scores, scores.new_zeros([b.shape[0] - scores.shape[0]])])
            out.append(torch.cat([b, scores[:, None]], 1)[:, : self.proposal_columns].contiguous())
        return out


# A contract model carrying 128 MiB of buffers it never reads: loading and unloading it moves the
# process's RSS by a measurable amount (the model repository's memory tests).
HEAVY_BALLAST_FLOATS = 32 * 1024 * 1024


def heavy_model() -> torch.nn.Module:
    torch.manual_seed(17)
    model = TinyDetector(5, False, grid=4, drop_row=False).eval()
    model.register_buffer("ballast", torch.zeros(HEAVY_BALLAST_FLOATS))
    return model


def manifest_for(name: str, num_classes: int, background: str, class_specific: bool, input_policy: dict,
                 has_classify_rois: bool, has_proposals: bool = False) -> dict:
    manifest = {
        "name": name,
        "description": "tiny contract model from tools/make_contract_models.py (seeded random weights)",
        "classes": export_torchvision.synthetic_classes(num_classes, seed=1),
        "background": background,
        "boxLayout": "BOX_LAYOUT_CLASS_SPECIFIC" if class_specific else "BOX_LAYOUT_CLASS_AGNOSTIC",
        "input": input_policy,
        "hasClassifyRois": has_classify_rois,
    }
    if has_proposals:
        manifest["hasProposals"] = True
        # Informational: what a real detector's training-time RPN settings would be.
        manifest["proposalSettings"] = {"preNmsTopN": 50, "postNmsTopN": 50, "nmsThreshold": 0.7}
    return manifest


SHORTER_SIDE = {
    "shorterSide": {"shorterSide": 64, "maxLongerSide": 96},
    "pixelMean": [0.485, 0.456, 0.406],
    "pixelStd": [0.229, 0.224, 0.225],
    "channelOrder": "CHANNEL_ORDER_RGB",
    "valueRange": "VALUE_RANGE_UNIT",
}
FIXED_BGR = {
    "fixed": {"height": 80, "width": 96},
    "pixelMean": [103.53, 116.28, 123.675],
    "pixelStd": [57.375, 57.12, 58.395],
    "channelOrder": "CHANNEL_ORDER_BGR",
    "valueRange": "VALUE_RANGE_BYTE",
}

MODELS = {
    # name: (classes, class_specific, background, input policy, classify_rois, drop_row, seed,
    #        proposal columns: 0 no proposals method, 4 the contract's [P, 4], 5 a broken [P, 5])
    "contract_agnostic": (5, False, "BACKGROUND_POSITION_FIRST", SHORTER_SIDE, True, False, 11, 0),
    "contract_specific": (7, True, "BACKGROUND_POSITION_LAST", FIXED_BGR, False, False, 12, 0),
    "contract_bad_rows": (5, False, "BACKGROUND_POSITION_FIRST", SHORTER_SIDE, True, True, 13, 0),
    # LVIS-sized logits (1,203 classes, background last as mmdetection): serving benchmarks.
    "contract_lvis": (1203, False, "BACKGROUND_POSITION_LAST", SHORTER_SIDE, False, False, 14, 0),
    "contract_proposals": (5, False, "BACKGROUND_POSITION_FIRST", SHORTER_SIDE, True, False, 15, 4),
    "contract_bad_proposals": (5, False, "BACKGROUND_POSITION_FIRST", SHORTER_SIDE, True, False, 16, 5),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--reference", action="store_true", help="also write parity references")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out_dir, exist_ok=True)
    for name, (c, specific, background, policy, rois, drop_row, seed, proposal_columns) in MODELS.items():
        torch.manual_seed(seed)
        if proposal_columns:
            model = TinyDetectorWithProposals(c, specific, 4, drop_row, proposal_columns).eval()
        else:
            cls = TinyDetectorWithRois if rois else TinyDetector
            model = cls(c, specific, grid=4, drop_row=drop_row).eval()
        manifest = manifest_for(name, c, background, specific, policy, rois, has_proposals=proposal_columns > 0)
        torch.jit.script(model).save(os.path.join(args.out_dir, name + ".pt"))
        with open(os.path.join(args.out_dir, name + ".json"), "w") as f:
            json.dump(manifest, f, indent=1)
        if args.reference and not drop_row and proposal_columns != 5:
            export_torchvision.write_reference(
                model, manifest, os.path.join(args.out_dir, name + "_ref"), [(120, 90), (50, 75)], seed
            )
    torch.jit.script(heavy_model()).save(os.path.join(args.out_dir, "contract_heavy.pt"))
    with open(os.path.join(args.out_dir, "contract_heavy.json"), "w") as f:
        json.dump(manifest_for("contract_heavy", 5, "BACKGROUND_POSITION_FIRST", False, SHORTER_SIDE, False), f,
                  indent=1)
    print(f"wrote {len(MODELS) + 1} contract models to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
