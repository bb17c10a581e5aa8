"""The demo detector: a small two-stage detector of the paper's family, scriptable, no custom ops.

Backbone (4 conv stages, BatchNorm, ReLU) + a light FPN (strides 4 and 8); an RPN with anchors on
the stride-8 map; RoIAlign written with torch.nn.functional.grid_sample on the stride-4 map; an RoI
head (2 fully connected layers) with a C+1 linear classifier (background FIRST, column 0) and
class-agnostic box regression. Everything in this file is TorchScript-compatible and uses only
aten operators, so the exported model loads in a bare LibTorch (no torchvision library).

Model contract (docs/model-contract.md, proto/logn/v1/model.proto):
  forward(images: List[Tensor[3, H, W]]) -> List[(boxes [N, 4] xyxy input pixels, logits [N, C+1])]
  classify_rois(images, rois: List[Tensor[R, 4]]) -> List[logits [R, C+1]]
  proposals(images) -> List[boxes [P, 4] xyxy input pixels]: the RPN's proposals with the TRAINING
    settings (top 1000 -> NMS 0.7 -> 600), the pool the RoI head's training RoIs were sampled from
The logits are the raw classifier outputs for every demo model: the linear classifier's, or the
cosine classifier's temperature * cos (a training-time BatchNorm on the logits, when the recipe
has one, is not part of the exported module).
"""

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# The RPN's training-time proposal settings (tools/demo_detector/train.py's recipe).
TRAIN_PRE_NMS_TOP_N = 1000
TRAIN_POST_NMS_TOP_N = 600
RPN_NMS_THRESH = 0.7  # training and inference


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes [N, 4] x [M, 4] -> [N, M] (torchvision's definition)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS (a box is suppressed by a kept higher-scoring box with IoU > threshold; ties in
    score keep the lower index first), indices kept in decreasing score order. torchvision.ops.nms
    semantics, in aten ops only."""
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros([0], dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True)[1]
    b = boxes[order]
    # suppresses[i, j], i < j: box i, if kept, suppresses box j. Greedy NMS keeps j iff no kept
    # i < j suppresses it. Iterating keep <- "no kept box suppresses it" from all-kept fixes one
    # more leading entry per round, and a round that changes nothing has reached the unique fixed
    # point, i.e. the greedy result: a few matrix-vector rounds instead of n interpreted steps
    # (the latter was a third of the demo model's CPU time).
    suppresses = (box_iou(b, b) > iou_threshold).triu(1).to(torch.float32).t().contiguous()
    keep = torch.ones([n], dtype=torch.bool, device=boxes.device)
    changed = True
    while changed:
        # Sums of 0/1 values below 2^24: exact in float32.
        next_keep = torch.mv(suppresses, keep.to(torch.float32)) == 0
        changed = not bool(torch.equal(next_keep, keep))
        keep = next_keep
    return order[keep]


def encode(ref: torch.Tensor, gt: torch.Tensor, weights: List[float]) -> torch.Tensor:
    """Box deltas (dx, dy, dw, dh) taking `ref` boxes to `gt` boxes (R-CNN parametrisation)."""
    rw = ref[:, 2] - ref[:, 0]
    rh = ref[:, 3] - ref[:, 1]
    rx = ref[:, 0] + 0.5 * rw
    ry = ref[:, 1] + 0.5 * rh
    gw = gt[:, 2] - gt[:, 0]
    gh = gt[:, 3] - gt[:, 1]
    gx = gt[:, 0] + 0.5 * gw
    gy = gt[:, 1] + 0.5 * gh
    return torch.stack(
        [
            weights[0] * (gx - rx) / rw,
            weights[1] * (gy - ry) / rh,
            weights[2] * torch.log(gw / rw),
            weights[3] * torch.log(gh / rh),
        ],
        dim=1,
    )


def decode(ref: torch.Tensor, deltas: torch.Tensor, weights: List[float]) -> torch.Tensor:
    rw = ref[:, 2] - ref[:, 0]
    rh = ref[:, 3] - ref[:, 1]
    rx = ref[:, 0] + 0.5 * rw
    ry = ref[:, 1] + 0.5 * rh
    dx = deltas[:, 0] / weights[0]
    dy = deltas[:, 1] / weights[1]
    dw = (deltas[:, 2] / weights[2]).clamp(max=4.135166556742356)
    dh = (deltas[:, 3] / weights[3]).clamp(max=4.135166556742356)
    cx = dx * rw + rx
    cy = dy * rh + ry
    w = torch.exp(dw) * rw
    h = torch.exp(dh) * rh
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)


def clip_boxes(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1
    )


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DemoDetector(nn.Module):
    def __init__(
        self,
        num_classes: int,
        widths: List[int],
        fpn_width: int,
        roi_width: int,
        pool: int,
        sampling: int,
        rep: int,
        anchor_sizes: List[float],
        aspect_ratios: List[float],
        cosine: bool = False,
        temperature: float = 20.0,
    ):
        super().__init__()
        c0, c1, c2, c3 = widths
        self.num_classes = num_classes
        self.stem = conv_bn_relu(3, c0, 2)  # stride 2
        self.layer2 = nn.Sequential(conv_bn_relu(c0, c1, 2), conv_bn_relu(c1, c1, 1))  # stride 4
        self.layer3 = nn.Sequential(conv_bn_relu(c1, c2, 2), conv_bn_relu(c2, c2, 1))  # stride 8
        self.layer4 = nn.Sequential(conv_bn_relu(c2, c3, 2), conv_bn_relu(c3, c3, 1))  # stride 16
        self.lat2 = nn.Conv2d(c1, fpn_width, 1)
        self.lat3 = nn.Conv2d(c2, fpn_width, 1)
        self.lat4 = nn.Conv2d(c3, fpn_width, 1)
        self.out2 = nn.Conv2d(fpn_width, roi_width, 3, 1, 1)
        # RPN on stride 8.
        self.rpn_conv = nn.Conv2d(fpn_width, fpn_width, 3, 1, 1)
        num_anchors = len(anchor_sizes) * len(aspect_ratios)
        self.rpn_obj = nn.Conv2d(fpn_width, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(fpn_width, 4 * num_anchors, 1)
        # RoI head.
        # Fully connected layers written as convolutions (fc1: kernel = the pooled size; the others
        # 1x1): the same maps, but they run on oneDNN, ~20x faster on CPU than this BLAS's GEMM.
        self.fc1 = nn.Conv2d(roi_width, rep, pool)
        self.fc2 = nn.Conv2d(rep, rep, 1)
        # Column 0: background. Linear classifier, or (cosine) the normalised linear classifier of
        # the paper's implementation details (Seesaw Loss's NormedLinear): logits = temperature *
        # cos(feature, class weight), no bias.
        self.cosine = cosine
        self.temperature = temperature
        self.cls_score = nn.Conv2d(rep, num_classes + 1, 1, bias=not cosine)
        self.bbox_pred = nn.Conv2d(rep, 4, 1)  # class-agnostic
        for m in [self.rpn_obj, self.rpn_reg]:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        if self.cls_score.bias is not None:
            nn.init.zeros_(self.cls_score.bias)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

        self.rpn_stride = 8
        self.roi_stride = 4
        self.pool = pool
        self.sampling = sampling
        self.size_divisible = 16
        # Base anchors centred at 0: [A, 4].
        base: List[List[float]] = []
        for s in anchor_sizes:
            for r in aspect_ratios:
                w = s / math.sqrt(r)
                h = s * math.sqrt(r)
                base.append([-w / 2, -h / 2, w / 2, h / 2])
        self.register_buffer("base_anchors", torch.tensor(base, dtype=torch.float32), persistent=True)
        self.rpn_weights: List[float] = [1.0, 1.0, 1.0, 1.0]
        self.roi_weights: List[float] = [10.0, 10.0, 5.0, 5.0]
        # Proposal settings at inference (forward's candidates).
        self.pre_nms_top_n = 600
        self.post_nms_top_n = 300
        # The training settings (train.py's recipe): proposals() and train.fast_proposals use them,
        # so the server can sample calibration RoIs from the pool training sampled from.
        self.train_pre_nms_top_n = TRAIN_PRE_NMS_TOP_N
        self.train_post_nms_top_n = TRAIN_POST_NMS_TOP_N
        self.rpn_nms_thresh = RPN_NMS_THRESH
        self.min_size = 1.0

    # ---- shared pieces ----

    def batch_images(self, images: List[torch.Tensor]) -> Tuple[torch.Tensor, List[Tuple[int, int]]]:
        """Zero-pads to a common size divisible by 16 (zero = mean colour after normalisation)."""
        max_h = 0
        max_w = 0
        sizes: List[Tuple[int, int]] = []
        for img in images:
            torch._assert(img.dim() == 3 and img.shape[0] == 3, "images must be [3, H, W]")
            h = int(img.shape[1])
            w = int(img.shape[2])
            sizes.append((h, w))
            max_h = max(max_h, h)
            max_w = max(max_w, w)
        d = self.size_divisible
        max_h = (max_h + d - 1) // d * d
        max_w = (max_w + d - 1) // d * d
        batched = images[0].new_zeros([len(images), 3, max_h, max_w])
        for i in range(len(images)):
            img = images[i]
            batched[i, :, : img.shape[1], : img.shape[2]].copy_(img)
        return batched, sizes

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (stride-8 map for the RPN, stride-4 map for RoI pooling)."""
        c2 = self.layer2(self.stem(x))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        p4 = self.lat4(c4)
        p3 = self.lat3(c3) + F.interpolate(p4, size=[c3.shape[2], c3.shape[3]], mode="nearest")
        p2 = self.lat2(c2) + F.interpolate(p3, size=[c2.shape[2], c2.shape[3]], mode="nearest")
        return p3, F.relu(self.out2(p2))

    def anchors(self, fh: int, fw: int, device: torch.device) -> torch.Tensor:
        """Anchors [fh * fw * A, 4] in (y, x, a) order, centred on the stride-8 cells."""
        s = float(self.rpn_stride)
        ys = (torch.arange(fh, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(fw, device=device, dtype=torch.float32) + 0.5) * s
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centers = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
        return (centers + self.base_anchors[None]).reshape(-1, 4)

    def rpn_outputs(self, p3: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> objectness [B, H*W*A], deltas [B, H*W*A, 4] (same order as anchors())."""
        t = F.relu(self.rpn_conv(p3))
        obj = self.rpn_obj(t)  # [B, A, H, W]
        reg = self.rpn_reg(t)  # [B, 4A, H, W]
        b = obj.shape[0]
        a = obj.shape[1]
        obj = obj.permute(0, 2, 3, 1).reshape(b, -1)
        reg = reg.view(b, a, 4, reg.shape[2], reg.shape[3]).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        return obj, reg

    def proposal_candidates(
        self, obj: torch.Tensor, reg: torch.Tensor, anchors: torch.Tensor, size: Tuple[int, int], pre_nms: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One image's top `pre_nms` decoded, clipped anchors (boxes, objectness), before NMS."""
        h, w = size
        # Anchors whose centre lies in the padding never see the image.
        cx = (anchors[:, 0] + anchors[:, 2]) * 0.5
        cy = (anchors[:, 1] + anchors[:, 3]) * 0.5
        valid = (cx < float(w)) & (cy < float(h))
        obj = obj.masked_fill(~valid, -1e9)
        k = min(pre_nms, int(obj.shape[0]))
        scores, idx = obj.topk(k)
        boxes = clip_boxes(decode(anchors[idx], reg[idx], self.rpn_weights), h, w)
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        ok = (bw >= self.min_size) & (bh >= self.min_size)
        return boxes[ok], scores[ok]

    def image_proposals(
        self, obj: torch.Tensor, reg: torch.Tensor, anchors: torch.Tensor, size: Tuple[int, int],
        pre_nms: int, post_nms: int
    ) -> torch.Tensor:
        """One image's proposals [P, 4] (input pixels), best objectness first."""
        boxes, scores = self.proposal_candidates(obj, reg, anchors, size, pre_nms)
        keep = nms(boxes, scores, self.rpn_nms_thresh)[:post_nms]
        return boxes[keep]

    def roi_align(self, feat: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """RoIAlign (aligned=True, `sampling` x `sampling` points per bin) of one image's map
        [C, H, W] -> [R, C, pool, pool], with grid_sample (zeros outside, like RoIAlign)."""
        r = rois.shape[0]
        c = feat.shape[0]
        fh = feat.shape[1]
        fw = feat.shape[2]
        n = self.pool * self.sampling
        steps = (torch.arange(n, device=feat.device, dtype=feat.dtype) + 0.5) / float(n)  # [n]
        scale = 1.0 / float(self.roi_stride)
        x1 = rois[:, 0:1] * scale
        y1 = rois[:, 1:2] * scale
        x2 = rois[:, 2:3] * scale
        y2 = rois[:, 3:4] * scale
        xs = x1 + (x2 - x1) * steps[None, :]  # [R, n], feature-map continuous coordinates
        ys = y1 + (y2 - y1) * steps[None, :]
        gx = xs / float(fw) * 2.0 - 1.0  # align_corners=False: -1 is the left edge of cell 0
        gy = ys / float(fh) * 2.0 - 1.0
        grid = torch.stack([gx[:, None, :].expand(r, n, n), gy[:, :, None].expand(r, n, n)], dim=-1)
        sampled = F.grid_sample(
            feat[None], grid.reshape(1, r * n, n, 2), mode="bilinear", padding_mode="zeros", align_corners=False
        )  # [1, C, R*n, n]
        sampled = sampled.view(c, r, n, n).permute(1, 0, 2, 3)
        if self.sampling == 1:
            return sampled  # avg_pool2d with a 1x1 kernel is a copy (an eighth of the forward)
        return F.avg_pool2d(sampled, self.sampling)

    def roi_head(self, pooled: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.fc1(pooled))  # [R, rep, 1, 1]
        x = F.relu(self.fc2(x))
        if self.cosine:
            # Normalised features and weights (eps 1e-6 as mmdetection's NormedLinear), scaled by
            # the temperature: the raw logits are temperature * cosine, in [-T, T].
            xn = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + 1e-6)
            w = self.cls_score.weight
            wn = w / (torch.linalg.vector_norm(w.flatten(1), dim=1).view(-1, 1, 1, 1) + 1e-6)
            logits = F.conv2d(xn, wn) * self.temperature
        else:
            logits = self.cls_score(x)
        return logits.flatten(1), self.bbox_pred(x).flatten(1)

    # ---- the contract ----

    def forward(self, images: List[torch.Tensor]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        batched, sizes = self.batch_images(images)
        p3, p2 = self.features(batched)
        obj, reg = self.rpn_outputs(p3)
        anchors = self.anchors(int(p3.shape[2]), int(p3.shape[3]), batched.device)
        out: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for i in range(len(sizes)):
            h, w = sizes[i]
            props = self.image_proposals(obj[i], reg[i], anchors, sizes[i], self.pre_nms_top_n, self.post_nms_top_n)
            logits, deltas = self.roi_head(self.roi_align(p2[i], props))
            boxes = clip_boxes(decode(props, deltas, self.roi_weights), h, w)
            out.append((boxes.contiguous(), logits))
        return out

    @torch.jit.export
    def classify_rois(self, images: List[torch.Tensor], rois: List[torch.Tensor]) -> List[torch.Tensor]:
        batched, sizes = self.batch_images(images)
        _, p2 = self.features(batched)
        out: List[torch.Tensor] = []
        for i in range(len(sizes)):
            logits, _ = self.roi_head(self.roi_align(p2[i], rois[i].to(p2.dtype)))
            out.append(logits)
        return out

    @torch.jit.export
    def proposals(self, images: List[torch.Tensor]) -> List[torch.Tensor]:
        """Per image the RPN's proposals [P, 4] (xyxy, input pixels, best objectness first) with the
        training settings: what train.py sampled the RoI head's training RoIs from (with the ground
        truth boxes added), so calibration can sample its RoIs the same way."""
        batched, sizes = self.batch_images(images)
        p3, _ = self.features(batched)
        obj, reg = self.rpn_outputs(p3)
        anchors = self.anchors(int(p3.shape[2]), int(p3.shape[3]), batched.device)
        out: List[torch.Tensor] = []
        for i in range(len(sizes)):
            props = self.image_proposals(
                obj[i], reg[i], anchors, sizes[i], self.train_pre_nms_top_n, self.train_post_nms_top_n
            )
            out.append(props.contiguous())
        return out


COSINE_TEMPERATURE = 20.0  # the paper's implementation details (following Seesaw Loss)


def build(num_classes: int, tiny: bool, classifier: str = "linear",
          temperature: float = COSINE_TEMPERATURE) -> DemoDetector:
    """classifier: "linear" (C+1 linear layer with bias) or "cosine" (normalised, temperature)."""
    if classifier not in ("linear", "cosine"):
        raise ValueError(f"unknown classifier {classifier}")
    cos = classifier == "cosine"
    if tiny:
        return DemoDetector(num_classes, [8, 16, 24, 24], 16, 8, 5, 2, 64, [12.0, 24.0, 48.0, 96.0], [0.5, 1.0, 2.0],
                            cos, temperature)
    return DemoDetector(num_classes, [16, 32, 48, 64], 48, 24, 7, 1, 256, [12.0, 24.0, 48.0, 96.0], [0.5, 1.0, 2.0],
                        cos, temperature)
