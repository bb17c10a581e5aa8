#ifndef LOGN_SERVER_RUNTIME_DETECTOR_RUNTIME_H_
#define LOGN_SERVER_RUNTIME_DETECTOR_RUNTIME_H_

// The detector runtime: hosts one TorchScript detector that follows the model contract
// (docs/model-contract.md) and turns images into raw outputs, and raw outputs into calibrated
// detections.
// No torch type appears here (pimpl): only this component's .cc files include torch headers.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "calibration/calibrator.h"
#include "calibration/layout.h"
#include "logn/v1/model.pb.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"

namespace logn {

struct RuntimeLimits {
  ImageLimits image;
  int32_t max_images_per_call = 32;
  int64_t max_rois_per_image = 100000;  // ClassifyRois
};

// Wall time spent in each stage of one call. On a GPU, forward includes the device sync of copying
// the outputs back.
struct StageTimings {
  absl::Duration decode;       // JPEG/PNG/raw -> RGB
  absl::Duration preprocess;   // upload, normalise, resize (per the manifest)
  absl::Duration forward;      // the TorchScript method
};

// One image's raw model outputs, boxes mapped back to the original image's pixels.
struct RawOutputs {
  int32_t image_height = 0;  // original
  int32_t image_width = 0;
  int32_t input_height = 0;  // after the manifest's resize
  int32_t input_width = 0;
  int64_t num_candidates = 0;   // N
  bool class_specific = false;  // boxes [N, C, 4] rather than [N, 4]
  std::vector<float> boxes;     // xyxy, original image pixels
  std::vector<float> logits;    // [N, C+1], pre-softmax, uncalibrated

  CandidatesView view() const {
    return CandidatesView{num_candidates, class_specific, boxes, logits};
  }
};

class DetectorRuntime {
 public:
  struct Options {
    std::string model_path;     // TorchScript file
    std::string manifest_path;  // empty: DefaultManifestPath(model_path)
    // torch device string: "cpu", "cuda", "cuda:N". Everything (inputs, resize, model) runs there.
    std::string device = "cpu";
    // Intra-op threads (at::set_num_threads; process-wide). 0: hardware concurrency. LibTorch's
    // OpenMP pool here defaults to 1 thread, so this is always set explicitly. Keep it <= the
    // cores the server has to itself: oversubscribed OpenMP threads wait on descheduled siblings
    // (10x slower small ops measured on a busy 2-core box; docs/model-contract.md).
    int32_t intra_op_threads = 0;
    // Shared library registering custom ops the model needs (torchvision's _C.so for nms and
    // roi_align), loaded with dlopen before the model. Empty: none.
    std::string ops_library_path;
    RuntimeLimits limits;
    // Freeze the TorchScript module and apply torch::jit::optimize_for_inference (oneDNN
    // convolutions, batch norm folded into them), kept only when the optimised model's outputs
    // match the original's on a probe image at load (tolerances in detector_runtime.cc).
    bool optimize_for_inference = true;
  };

  // Loads and validates the model: parses the manifest, loads the ops library and the TorchScript
  // file on the device, hashes the file (sha256), then runs a blank image through forward (and
  // classify_rois and proposals when the manifest declares them) and checks every output shape
  // against the manifest and the contract. NOT_FOUND for a missing file; INVALID_ARGUMENT for a
  // bad manifest or device string; FAILED_PRECONDITION when the ops library or model cannot be
  // loaded, CUDA is unavailable, or the outputs do not match the manifest or the contract (the
  // message spells out expected vs got).
  static absl::StatusOr<std::unique_ptr<DetectorRuntime>> Load(const Options& options);
  ~DetectorRuntime();
  DetectorRuntime(const DetectorRuntime&) = delete;
  DetectorRuntime& operator=(const DetectorRuntime&) = delete;

  const v1::ModelManifest& manifest() const;
  const LogitLayout& layout() const;
  const std::string& model_sha256() const;  // lowercase hex of the TorchScript file
  const std::string& device() const;
  bool class_specific_boxes() const;
  bool has_classify_rois() const;
  bool has_proposals() const;  // the manifest's hasProposals (implies has_classify_rois())
  // Whether the served module is the frozen, optimised one, and why (not).
  bool optimized_for_inference() const;
  const std::string& optimization_note() const;
  // Bytes of the model's parameters and buffers as loaded (before any optimisation): the
  // memory estimate ListModels reports.
  int64_t parameter_bytes() const;

  // All calls below are thread-safe and may run concurrently (inference mode, no shared mutable
  // state). Images are decoded, resized per the manifest and run as ONE batch. INVALID_ARGUMENT
  // for no images, too many, or a bad image (its index and the decoder's reason); INTERNAL when
  // the model fails or breaks the contract on this input.

  struct ForwardResult {
    std::vector<RawOutputs> images;
    StageTimings timings;
  };
  absl::StatusOr<ForwardResult> Forward(absl::Span<const ImageSource> images) const;

  // Logits the RoI head gives to caller-chosen boxes: rois[i] has R_i * 4 floats (xyxy, original
  // image pixels) for images[i]. Returns per image R_i * (C+1) logits. FAILED_PRECONDITION if the
  // model has no classify_rois; INVALID_ARGUMENT on mismatched counts or a non-multiple of 4.
  struct RoiResult {
    std::vector<std::vector<float>> logits;
    StageTimings timings;
  };
  absl::StatusOr<RoiResult> ClassifyRois(absl::Span<const ImageSource> images,
                                         absl::Span<const std::vector<float>> rois) const;

  // The RPN's proposals with the model's TRAINING-time settings (manifest proposalSettings): the
  // pool training sampled the RoI head's RoIs from, so calibration can sample the same way.
  // boxes[i] has P_i * 4 floats (xyxy, original image pixels, mapped back from the model's input
  // pixels as Forward's boxes are, so they go to ClassifyRois as they are) for images[i], in the
  // model's order; P_i may be 0. FAILED_PRECONDITION if the model has no proposals method
  // (manifest hasProposals).
  struct ProposalResult {
    std::vector<std::vector<float>> boxes;
    StageTimings timings;
  };
  absl::StatusOr<ProposalResult> Proposals(absl::Span<const ImageSource> images) const;

  // The post-processing of Forward's outputs: the one detection path, which the server serves
  // and the torchvision parity test checks. For each calibrator (at least one; each must have
  // layout() == this->layout(), INVALID_ARGUMENT otherwise) and each image, Postprocess on the
  // image's candidates in original-image pixels (so options.min_box_size is in those pixels).
  // IoU, and so NMS, is unchanged by the per-axis scaling back from the model's input pixels;
  // only float rounding differs from post-processing before it. detections[s][i] are image i's
  // detections under calibrators[s], best first. Pure C++: no forward pass, thread-safe.
  // Candidates dropped for non-finite logits are added to `stats` when it is not null.
  using Detections = std::vector<std::vector<std::vector<Detection>>>;
  absl::StatusOr<Detections> PostprocessOutputs(absl::Span<const RawOutputs> outputs,
                                                absl::Span<const Calibrator* const> calibrators,
                                                const PostprocessOptions& options,
                                                PostprocessStats* stats = nullptr) const;

 private:
  struct Impl;
  explicit DetectorRuntime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace logn

#endif  // LOGN_SERVER_RUNTIME_DETECTOR_RUNTIME_H_
