#!/usr/bin/python3
"""A minimal Python service of the same model speaking the same proto: the peer LogN Serve is
measured against (docs/performance.md, figure 3). Written the way a user would write it, with
Debian's python3-torch, python3-torchvision and python3-grpcio: grpc's thread pool, TorchScript
forward, torchvision decoding and batched_nms.

    server.py --model models/demo_ce/model.pt --port 0 --port-file F [--threads 2] [--workers 8]

Implements DetectionService.Detect (methods NONE and LOGN with a statistics JSON exported by
`logn stats export`); the rest answers UNIMPLEMENTED.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from concurrent import futures

import grpc
import torch
import torchvision
from torchvision.ops import batched_nms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client",
                                "testing"))
from grpc_stubs import compile_protos  # noqa: E402  (protoc + grpc_python_plugin)


class Detector:
    def __init__(self, model_path: str, statistics_path: str):
        self.model = torch.jit.load(model_path).eval()
        with open(os.path.splitext(model_path)[0] + ".json") as f:
            self.manifest = json.load(f)
        self.class_ids = [c["id"] for c in self.manifest["classes"]]
        self.background_first = self.manifest["background"] == "BACKGROUND_POSITION_FIRST"
        policy = self.manifest["input"]
        self.mean = torch.tensor(policy["pixelMean"]).view(3, 1, 1)
        self.std = torch.tensor(policy["pixelStd"]).view(3, 1, 1)
        self.unit = policy.get("valueRange") == "VALUE_RANGE_UNIT"
        self.shorter = policy["shorterSide"]["shorterSide"]
        self.longer = policy["shorterSide"]["maxLongerSide"]
        self.scale = self.shift = None
        if statistics_path:
            with open(statistics_path) as f:
                stats = json.load(f)["statistics"]
            mean = torch.tensor(stats["mean"], dtype=torch.float64)
            var = torch.tensor(stats["variance"], dtype=torch.float64)
            fg = slice(1, None) if self.background_first else slice(0, -1)
            beta = mean[fg].min()
            scale = torch.ones_like(mean)
            shift = torch.zeros_like(mean)
            scale[fg] = 1 / torch.sqrt(var[fg] + 1e-5)
            shift[fg] = (beta - mean[fg]) * scale[fg]
            self.scale, self.shift = scale.float(), shift.float()

    def prepare(self, data: bytes) -> torch.Tensor:
        img = torchvision.io.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                          mode=torchvision.io.ImageReadMode.RGB).float()
        if self.unit:
            img = img / 255.0
        img = (img - self.mean) / self.std
        h, w = img.shape[1:]
        scale = min(self.shorter / min(h, w), self.longer / max(h, w))
        size = (int(h * scale), int(w * scale))
        if size != (h, w):
            img = torch.nn.functional.interpolate(img[None], size=size, mode="bilinear",
                                                  align_corners=False)[0]
        return img, (h / size[0], w / size[1])

    def detect(self, images, logn: bool, threshold: float, iou: float, top_k: int):
        with torch.inference_mode():
            t0 = time.perf_counter()
            prepared = [self.prepare(data) for data in images]
            t1 = time.perf_counter()
            outputs = self.model.forward([p[0] for p in prepared])
            t2 = time.perf_counter()
            results = []
            for (boxes, logits), (_, (sy, sx)) in zip(outputs, prepared):
                if logn and self.scale is not None:
                    logits = logits * self.scale + self.shift
                probs = torch.softmax(logits, dim=1)
                fg = probs[:, 1:] if self.background_first else probs[:, :-1]
                keep = fg > threshold
                cand, label = keep.nonzero(as_tuple=True)
                scores = fg[cand, label]
                b = boxes[cand] * torch.tensor([sx, sy, sx, sy])
                kept = batched_nms(b, scores, label, iou)[:top_k]
                results.append((b[kept], scores[kept], label[kept]))
            t3 = time.perf_counter()
        return results, (t1 - t0, t2 - t1, t3 - t2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--statistics", default="", help="`logn stats export` JSON for LogN")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", default="")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=8, help="gRPC worker threads")
    parser.add_argument("--proto-dir", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                             "proto"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stubs = tempfile.mkdtemp(prefix="logn_py_")
    compile_protos(args.proto_dir, stubs)
    sys.path.insert(0, stubs)
    from logn.v1 import common_pb2, detection_service_pb2, detection_service_pb2_grpc

    detector = Detector(args.model, args.statistics)

    class Detection(detection_service_pb2_grpc.DetectionServiceServicer):
        def Detect(self, request, context):
            arrived = time.perf_counter()
            none = common_pb2.CALIBRATION_METHOD_NONE
            logn = (not request.calibrations or
                    request.calibrations[0].calibration_method != none)
            post = request.postprocess
            results, (decode, forward, postprocess) = detector.detect(
                [im.encoded for im in request.images], logn, post.score_threshold or 1e-4,
                post.nms_iou or 0.5, post.max_detections or 300)
            response = detection_service_pb2.DetectResponse(request_id=request.request_id)
            result = response.results.add()
            for image, (boxes, scores, labels) in zip(request.images, results):
                out = result.image_detections.add(image_id=image.image_id)
                for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                    d = out.detections.add(category_id=detector.class_ids[label], score=score)
                    d.box.x1, d.box.y1, d.box.x2, d.box.y2 = box
            timing = response.timing
            queue = max(0.0, time.perf_counter() - arrived - decode - forward - postprocess)
            for duration, seconds in ((timing.decode_duration, decode),
                                      (timing.inference_duration, forward),
                                      (timing.postprocess_duration, postprocess),
                                      (timing.queue_duration, queue)):
                duration.FromNanoseconds(int(seconds * 1e9))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    detection_service_pb2_grpc.add_DetectionServiceServicer_to_server(Detection(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"grpc={port}\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"python baseline serving {args.model} on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
