// The only translation unit that includes torch headers.
#include "server/runtime/detector_runtime.h"

#include <dlfcn.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/runtime/manifest.h"
#include "common/sha256.h"

namespace logn {
namespace {

std::string ShapeString(const at::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

// One image after preprocessing: the model input (on the device) and the sizes to map boxes back.
struct Prepared {
  at::Tensor input;  // [3, h, w] float32
  int32_t image_height, image_width, input_height, input_width;
};

// Outputs in input pixels, on the CPU, float32 contiguous.
struct ModelOutputs {
  at::Tensor boxes;   // [N, 4] or [N, C, 4]
  at::Tensor logits;  // [N, C+1]
};

void ScaleBoxes(float* boxes, int64_t count, float sx, float sy) {
  for (int64_t i = 0; i < count; ++i) {
    boxes[4 * i] *= sx;
    boxes[4 * i + 1] *= sy;
    boxes[4 * i + 2] *= sx;
    boxes[4 * i + 3] *= sy;
  }
}

// Loads the shared library registering a model's custom ops (none when `path` is empty).
absl::Status LoadOpsLibrary(const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  // Registering ops happens in the library's static initialisers; it is never unloaded.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load ops library ", path, ": ", dlerror()));
  }
  return absl::OkStatus();
}

std::vector<float> ToVector(const at::Tensor& t) {
  const float* p = t.data_ptr<float>();
  return std::vector<float>(p, p + t.numel());
}

// The outputs the load-time probe compares between the original and the optimised module.
struct ProbeOutputs {
  std::vector<ModelOutputs> forward;
  std::vector<at::Tensor> roi_logits;  // classify_rois on fixed RoIs, when declared
  std::vector<at::Tensor> proposals;   // when declared
};

}  // namespace

struct DetectorRuntime::Impl {
  v1::ModelManifest manifest;
  LogitLayout layout;
  std::string sha256;
  std::string device_string;
  torch::Device device{torch::kCPU};
  RuntimeLimits limits;
  bool class_specific = false;
  bool has_classify_rois = false;
  bool has_proposals = false;
  // Immutable after Load. jit::Module is a handle whose methods are safe to run concurrently;
  // its C++ API is just not const-qualified, hence mutable.
  mutable torch::jit::Module module;
  at::Tensor pixel_mean;  // [3, 1, 1] on the device
  at::Tensor pixel_std;
  bool optimized = false;
  std::string optimization_note;
  int64_t parameter_bytes = 0;

  // Output size for an image under the manifest's resize rule. Float32 arithmetic, as torchvision.
  std::pair<int32_t, int32_t> InputSize(int32_t height, int32_t width) const {
    const v1::InputPolicy& input = manifest.input();
    if (input.has_fixed()) return {input.fixed().height(), input.fixed().width()};
    const float shorter = static_cast<float>(std::min(height, width));
    const float longer = static_cast<float>(std::max(height, width));
    const float scale =
        std::min(static_cast<float>(input.shorter_side().shorter_side()) / shorter,
                 static_cast<float>(input.shorter_side().max_longer_side()) / longer);
    return {static_cast<int32_t>(std::floor(static_cast<double>(height) * scale)),
            static_cast<int32_t>(std::floor(static_cast<double>(width) * scale))};
  }

  // uint8 RGB -> channel order -> value range -> (x - mean) / std -> bilinear resize, on the
  // device. Normalise-then-resize is torchvision's order (GeneralizedRCNNTransform), so a
  // torchvision model sees bit-identical inputs here and through its own transform.
  Prepared Prepare(const Image& image) const {
    Prepared p;
    p.image_height = image.height;
    p.image_width = image.width;
    std::tie(p.input_height, p.input_width) = InputSize(image.height, image.width);
    at::Tensor x = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                    {image.height, image.width, 3}, torch::kUInt8)
                       .to(device)
                       .permute({2, 0, 1})
                       .contiguous()          // CHW, like decoders give torchvision; HWC-strided
                       .to(torch::kFloat32);  // elementwise ops are several times slower
    if (manifest.input().channel_order() == v1::CHANNEL_ORDER_BGR) x = x.flip({0});
    // In place: x is already a fresh float copy; same values as the out-of-place ops.
    if (manifest.input().value_range() == v1::VALUE_RANGE_UNIT) x.div_(255.0);
    x.sub_(pixel_mean).div_(pixel_std);
    if (p.input_height != image.height || p.input_width != image.width) {
      x = torch::nn::functional::interpolate(
              x.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{p.input_height, p.input_width})
                                  .mode(torch::kBilinear)
                                  .align_corners(false))
              .squeeze(0);
    }
    p.input = x.contiguous();
    return p;
  }

  // Checks one image's (boxes, logits) against the manifest; "" when they conform.
  std::string CheckOutputs(const at::Tensor& boxes, const at::Tensor& logits) const {
    const int64_t width = layout.width();
    const int64_t c = layout.num_classes;
    if (!logits.is_floating_point() || !boxes.is_floating_point()) {
      return absl::StrCat("outputs must be floating point, got boxes ",
                          c10::toString(boxes.scalar_type()), " and logits ",
                          c10::toString(logits.scalar_type()));
    }
    if (logits.dim() != 2 || logits.size(1) != width) {
      return absl::StrCat("logits are ", ShapeString(logits), "; the manifest (",
                          layout.DebugString(), ") needs [N, ", width, "]");
    }
    const int64_t n = logits.size(0);
    if (class_specific) {
      if (boxes.dim() != 3 || boxes.size(0) != n || boxes.size(1) != c || boxes.size(2) != 4) {
        return absl::StrCat(
            "boxes are ", ShapeString(boxes), "; the manifest (BOX_LAYOUT_CLASS_SPECIFIC, ", c,
            " classes) with logits ", ShapeString(logits), " needs [", n, ", ", c, ", 4]");
      }
    } else if (boxes.dim() != 2 || boxes.size(0) != n || boxes.size(1) != 4) {
      return absl::StrCat("boxes are ", ShapeString(boxes),
                          "; the manifest (BOX_LAYOUT_CLASS_AGNOSTIC) with logits ",
                          ShapeString(logits), " needs [", n, ", 4]");
    }
    return "";
  }

  // Runs forward on the batch. On a contract violation returns `violation_code` with the details
  // (FAILED_PRECONDITION at load, INTERNAL when serving).
  absl::StatusOr<std::vector<ModelOutputs>> RunForward(const std::vector<Prepared>& batch,
                                                       absl::StatusCode violation_code) const {
    std::vector<at::Tensor> inputs;
    inputs.reserve(batch.size());
    for (const Prepared& p : batch) inputs.push_back(p.input);
    c10::IValue result;
    try {
      result = module.forward({c10::List<at::Tensor>(inputs)});
    } catch (const std::exception& e) {
      return absl::Status(violation_code, absl::StrCat("model forward failed: ", e.what()));
    }
    if (!result.isList()) {
      return absl::Status(
          violation_code,
          absl::StrCat("forward must return List[Tuple[Tensor, Tensor]], got ", result.tagKind()));
    }
    c10::List<c10::IValue> list = result.toList();
    if (list.size() != batch.size()) {
      return absl::Status(violation_code, absl::StrCat("forward returned ", list.size(),
                                                       " outputs for ", batch.size(), " images"));
    }
    std::vector<ModelOutputs> outputs;
    for (size_t i = 0; i < list.size(); ++i) {
      const c10::IValue item = list.get(i);
      if (!item.isTuple() || item.toTupleRef().elements().size() != 2 ||
          !item.toTupleRef().elements()[0].isTensor() ||
          !item.toTupleRef().elements()[1].isTensor()) {
        return absl::Status(
            violation_code,
            absl::StrCat("forward output ", i, " must be a (boxes, logits) tuple of tensors, got ",
                         item.tagKind()));
      }
      const at::Tensor boxes = item.toTupleRef().elements()[0].toTensor();
      const at::Tensor logits = item.toTupleRef().elements()[1].toTensor();
      const std::string problem = CheckOutputs(boxes, logits);
      if (!problem.empty()) {
        return absl::Status(violation_code, absl::StrCat("forward output ", i, ": ", problem));
      }
      outputs.push_back(ModelOutputs{boxes.to(torch::kCPU, torch::kFloat32).contiguous(),
                                     logits.to(torch::kCPU, torch::kFloat32).contiguous()});
    }
    return outputs;
  }

  // Calls the List[Tensor]-returning method `name` and checks that it returned one tensor per
  // image (the shapes are the caller's to check).
  absl::StatusOr<std::vector<at::Tensor>> CallPerImageMethod(const char* name,
                                                             std::vector<c10::IValue> args,
                                                             size_t images,
                                                             absl::StatusCode violation_code) const {
    c10::IValue result;
    try {
      result = module.get_method(name)(std::move(args));
    } catch (const std::exception& e) {
      return absl::Status(violation_code, absl::StrCat(name, " failed: ", e.what()));
    }
    if (!result.isTensorList() && !result.isList()) {
      return absl::Status(violation_code, absl::StrCat(name, " must return List[Tensor], got ",
                                                       result.tagKind()));
    }
    const std::vector<c10::IValue> items = result.toListRef().vec();
    if (items.size() != images) {
      return absl::Status(violation_code, absl::StrCat(name, " returned ", items.size(),
                                                       " outputs for ", images, " images"));
    }
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].isTensor()) {
        return absl::Status(violation_code,
                            absl::StrCat(name, " output ", i, " is not a tensor"));
      }
      out.push_back(items[i].toTensor());
    }
    return out;
  }

  absl::StatusOr<std::vector<at::Tensor>> RunClassifyRois(const std::vector<Prepared>& batch,
                                                          const std::vector<at::Tensor>& rois,
                                                          absl::StatusCode violation_code) const {
    std::vector<at::Tensor> inputs;
    for (const Prepared& p : batch) inputs.push_back(p.input);
    LOGN_ASSIGN_OR_RETURN(
        std::vector<at::Tensor> items,
        CallPerImageMethod("classify_rois",
                           {c10::List<at::Tensor>(inputs), c10::List<at::Tensor>(rois)},
                           batch.size(), violation_code));
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < items.size(); ++i) {
      const at::Tensor& t = items[i];
      if (!t.is_floating_point() || t.dim() != 2 || t.size(0) != rois[i].size(0) ||
          t.size(1) != layout.width()) {
        return absl::Status(
            violation_code,
            absl::StrCat("classify_rois output ", i, " is ", ShapeString(t), " (",
                         c10::toString(t.scalar_type()), "); ", rois[i].size(0),
                         " RoIs and the manifest (", layout.DebugString(), ") need float [",
                         rois[i].size(0), ", ", layout.width(), "]"));
      }
      out.push_back(t.to(torch::kCPU, torch::kFloat32).contiguous());
    }
    return out;
  }

  // proposals(images) -> per image [P, 4] boxes (CPU float32 contiguous, input pixels).
  absl::StatusOr<std::vector<at::Tensor>> RunProposals(const std::vector<Prepared>& batch,
                                                       absl::StatusCode violation_code) const {
    std::vector<at::Tensor> inputs;
    for (const Prepared& p : batch) inputs.push_back(p.input);
    LOGN_ASSIGN_OR_RETURN(std::vector<at::Tensor> items,
                          CallPerImageMethod("proposals", {c10::List<at::Tensor>(inputs)},
                                             batch.size(), violation_code));
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < items.size(); ++i) {
      const at::Tensor& t = items[i];
      if (!t.is_floating_point() || t.dim() != 2 || t.size(1) != 4) {
        return absl::Status(
            violation_code,
            absl::StrCat("proposals output ", i, " is ", ShapeString(t), " (",
                         c10::toString(t.scalar_type()),
                         "); the contract needs float [P, 4] (xyxy boxes)"));
      }
      out.push_back(t.to(torch::kCPU, torch::kFloat32).contiguous());
    }
    return out;
  }

  // Decodes and prepares every image; fills timings.decode / preprocess.
  absl::StatusOr<std::vector<Prepared>> DecodeAndPrepare(absl::Span<const ImageSource> images,
                                                         StageTimings& timings) const {
    if (images.empty()) return absl::InvalidArgumentError("no images");
    if (static_cast<int64_t>(images.size()) > limits.max_images_per_call) {
      return absl::InvalidArgumentError(absl::StrCat(
          images.size(), " images in one call, over the limit of ", limits.max_images_per_call));
    }
    absl::Time start = absl::Now();
    std::vector<Image> decoded;
    decoded.reserve(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      absl::StatusOr<Image> image = DecodeImageSource(images[i], limits.image);
      if (!image.ok()) {
        return absl::Status(image.status().code(),
                            absl::StrCat("image ", i, ": ", image.status().message()));
      }
      decoded.push_back(*std::move(image));
    }
    const absl::Time decoded_at = absl::Now();
    timings.decode += decoded_at - start;
    std::vector<Prepared> prepared;
    prepared.reserve(decoded.size());
    try {
      for (const Image& image : decoded) prepared.push_back(Prepare(image));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("preprocessing failed: ", e.what()));
    }
    timings.preprocess += absl::Now() - decoded_at;
    return prepared;
  }

  // Load steps: the device and intra-op threads; the TorchScript file (hashed) and the
  // normalisation constants on the device; forward (and classify_rois, proposals) on a blank
  // image, checked against the manifest (FAILED_PRECONDITION naming both files).
  absl::Status SetDevice(const Options& options);
  absl::Status LoadModule(const std::string& model_path);
  absl::Status ValidateOnBlankImage(const std::string& model_path,
                                    const std::string& manifest_path) const;
  // Freezes the module and runs optimize_for_inference (keeping classify_rois and proposals),
  // then keeps the result only when every declared method's outputs on a textured probe image
  // match the original's (OptimizationMismatch). Never fails the load: a model that cannot be
  // optimised is served as it is, and optimization_note says why.
  void OptimizeForInference();
  absl::StatusOr<ProbeOutputs> RunProbe(const std::vector<Prepared>& batch) const;
  std::string OptimizationMismatch(const ProbeOutputs& reference,
                                   const ProbeOutputs& optimized) const;

  absl::StatusOr<std::vector<ModelOutputs>> TimedForward(const std::vector<Prepared>& batch,
                                                         StageTimings& timings,
                                                         absl::StatusCode violation_code) const {
    const absl::Time start = absl::Now();
    auto outputs = RunForward(batch, violation_code);
    timings.forward += absl::Now() - start;
    return outputs;
  }
};

DetectorRuntime::DetectorRuntime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DetectorRuntime::~DetectorRuntime() = default;

const v1::ModelManifest& DetectorRuntime::manifest() const { return impl_->manifest; }
const LogitLayout& DetectorRuntime::layout() const { return impl_->layout; }
const std::string& DetectorRuntime::model_sha256() const { return impl_->sha256; }
const std::string& DetectorRuntime::device() const { return impl_->device_string; }
bool DetectorRuntime::class_specific_boxes() const { return impl_->class_specific; }
bool DetectorRuntime::has_classify_rois() const { return impl_->has_classify_rois; }
bool DetectorRuntime::has_proposals() const { return impl_->has_proposals; }
bool DetectorRuntime::optimized_for_inference() const { return impl_->optimized; }
const std::string& DetectorRuntime::optimization_note() const { return impl_->optimization_note; }
int64_t DetectorRuntime::parameter_bytes() const { return impl_->parameter_bytes; }

absl::StatusOr<std::unique_ptr<DetectorRuntime>> DetectorRuntime::Load(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->limits = options.limits;
  const std::string manifest_path = options.manifest_path.empty()
                                        ? DefaultManifestPath(options.model_path)
                                        : options.manifest_path;
  LOGN_ASSIGN_OR_RETURN(impl->manifest, ReadManifestFile(manifest_path));
  impl->layout = ManifestLayout(impl->manifest);
  impl->class_specific = impl->manifest.box_layout() == v1::BOX_LAYOUT_CLASS_SPECIFIC;
  impl->has_classify_rois = impl->manifest.has_classify_rois();
  impl->has_proposals = impl->manifest.has_proposals();
  LOGN_RETURN_IF_ERROR(impl->SetDevice(options));
  LOGN_RETURN_IF_ERROR(LoadOpsLibrary(options.ops_library_path));
  LOGN_RETURN_IF_ERROR(impl->LoadModule(options.model_path));
  LOGN_RETURN_IF_ERROR(impl->ValidateOnBlankImage(options.model_path, manifest_path));
  if (options.optimize_for_inference) {
    impl->OptimizeForInference();
  } else {
    impl->optimization_note = "off (Options::optimize_for_inference = false)";
  }
  return std::unique_ptr<DetectorRuntime>(new DetectorRuntime(std::move(impl)));
}

absl::Status DetectorRuntime::Impl::SetDevice(const Options& options) {
  try {
    device = torch::Device(options.device);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad device \"", options.device, "\" (want cpu, cuda or cuda:N): ", e.what()));
  }
  device_string = device.str();
  if (device.is_cuda() && !torch::cuda::is_available()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", options.device, " requested but CUDA is not available to this LibTorch"));
  }
  const int32_t threads = options.intra_op_threads > 0
                              ? options.intra_op_threads
                              : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(threads);
  return absl::OkStatus();
}

absl::Status DetectorRuntime::Impl::LoadModule(const std::string& model_path) {
  LOGN_ASSIGN_OR_RETURN(sha256, Sha256File(model_path));
  try {
    module = torch::jit::load(model_path, device);
  } catch (const std::exception& e) {
    std::string hint;
    if (std::string(e.what()).find("torchvision::") != std::string::npos) {
      hint =
          " (the model uses torchvision ops: pass the torchvision _C library as the ops library)";
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load TorchScript model ", model_path, hint, ": ", e.what()));
  }
  module.eval();
  for (const at::Tensor& p : module.parameters()) parameter_bytes += p.nbytes();
  for (const at::Tensor& b : module.buffers()) parameter_bytes += b.nbytes();
  if (has_classify_rois && !module.find_method("classify_rois").has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("the manifest declares hasClassifyRois but ",
                                                      model_path, " has no classify_rois method"));
  }
  if (has_proposals && !module.find_method("proposals").has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("the manifest declares hasProposals but ",
                                                      model_path, " has no proposals method"));
  }
  const v1::InputPolicy& input = manifest.input();
  pixel_mean =
      torch::tensor(std::vector<float>(input.pixel_mean().begin(), input.pixel_mean().end()))
          .view({3, 1, 1})
          .to(device);
  pixel_std =
      torch::tensor(std::vector<float>(input.pixel_std().begin(), input.pixel_std().end()))
          .view({3, 1, 1})
          .to(device);
  return absl::OkStatus();
}

absl::Status DetectorRuntime::Impl::ValidateOnBlankImage(const std::string& model_path,
                                                         const std::string& manifest_path) const {
  // A blank (mid-grey) image that needs no resize.
  c10::InferenceMode inference_mode;
  const v1::InputPolicy& input = manifest.input();
  int32_t height, width;
  if (input.has_fixed()) {
    height = input.fixed().height();
    width = input.fixed().width();
  } else {
    height = input.shorter_side().shorter_side();
    width = std::min(input.shorter_side().max_longer_side(), height * 4 / 3);
  }
  Image blank;
  blank.height = height;
  blank.width = width;
  blank.pixels.assign(static_cast<size_t>(height) * width * 3, 128);
  std::vector<Prepared> batch;
  try {
    batch.push_back(Prepare(blank));
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat("preprocessing failed: ", e.what()));
  }
  const auto checked = [&](absl::Status status) {
    return absl::Status(
        status.code(),
        absl::StrCat(model_path, " does not match its manifest ", manifest_path, " on a blank ",
                     height, "x", width, " image: ", status.message()));
  };
  absl::StatusOr<std::vector<ModelOutputs>> outputs =
      RunForward(batch, absl::StatusCode::kFailedPrecondition);
  if (!outputs.ok()) return checked(outputs.status());
  if (has_classify_rois) {
    std::vector<at::Tensor> rois = {
        torch::tensor({0.0f, 0.0f, width / 2.0f, height / 2.0f}).view({1, 4}).to(device)};
    absl::StatusOr<std::vector<at::Tensor>> logits =
        RunClassifyRois(batch, rois, absl::StatusCode::kFailedPrecondition);
    if (!logits.ok()) return checked(logits.status());
  }
  if (has_proposals) {
    absl::StatusOr<std::vector<at::Tensor>> proposals =
        RunProposals(batch, absl::StatusCode::kFailedPrecondition);
    if (!proposals.ok()) return checked(proposals.status());
  }
  return absl::OkStatus();
}

void DetectorRuntime::Impl::OptimizeForInference() {
  c10::InferenceMode inference_mode;
  // A textured probe (a blank image gives few candidates) at the size the blank check used.
  const auto [height, width] = InputSize(480, 640);
  Image probe;
  probe.height = height;
  probe.width = width;
  probe.pixels.resize(static_cast<size_t>(height) * width * 3);
  for (size_t i = 0; i < probe.pixels.size(); ++i) {
    const size_t pixel = i / 3;
    const size_t x = pixel % width, y = pixel / width;
    probe.pixels[i] = static_cast<uint8_t>((x * 7 + y * 13 + (i % 3) * 29 + (x / 40) * (y / 40) * 17) % 256);
  }
  std::vector<Prepared> batch;
  std::vector<std::string> methods;
  for (const char* name : {"classify_rois", "proposals"}) {
    if (module.find_method(name).has_value()) methods.push_back(name);
  }
  torch::jit::Module plain = module;
  try {
    batch.push_back(Prepare(probe));
    torch::jit::Module frozen = torch::jit::freeze(plain, methods);
    module = torch::jit::optimize_for_inference(frozen, methods);
  } catch (const std::exception& e) {
    module = plain;
    optimization_note = absl::StrCat("off: freeze/optimize_for_inference failed: ", e.what());
    return;
  }
  absl::StatusOr<ProbeOutputs> optimized_outputs = RunProbe(batch);
  std::swap(module, plain);
  absl::StatusOr<ProbeOutputs> reference = RunProbe(batch);
  std::string mismatch = !optimized_outputs.ok() ? std::string(optimized_outputs.status().message())
                         : !reference.ok()       ? std::string(reference.status().message())
                                                 : OptimizationMismatch(*reference, *optimized_outputs);
  if (!mismatch.empty()) {
    optimization_note = absl::StrCat("off: the optimised model differs on the probe image: ", mismatch);
    return;
  }
  module = std::move(plain);  // the optimised one, swapped back
  optimized = true;
  optimization_note = "on (frozen, optimize_for_inference; outputs matched on the probe image)";
}

// Every declared method on the probe: forward, classify_rois on a few fixed RoIs, proposals.
absl::StatusOr<ProbeOutputs> DetectorRuntime::Impl::RunProbe(
    const std::vector<Prepared>& batch) const {
  ProbeOutputs out;
  LOGN_ASSIGN_OR_RETURN(out.forward, RunForward(batch, absl::StatusCode::kFailedPrecondition));
  if (has_classify_rois) {
    std::vector<at::Tensor> rois;
    for (const Prepared& p : batch) {
      const float w = static_cast<float>(p.input_width), h = static_cast<float>(p.input_height);
      rois.push_back(torch::tensor({0.0f, 0.0f, w / 2, h / 2, w / 4, h / 4, w * 3 / 4, h * 3 / 4,
                                    w / 8, h / 2, w * 7 / 8, h})
                         .view({3, 4})
                         .to(device));
    }
    LOGN_ASSIGN_OR_RETURN(out.roi_logits,
                          RunClassifyRois(batch, rois, absl::StatusCode::kFailedPrecondition));
  }
  if (has_proposals) {
    LOGN_ASSIGN_OR_RETURN(out.proposals,
                          RunProposals(batch, absl::StatusCode::kFailedPrecondition));
  }
  return out;
}

// Tolerances: the candidate (and proposal) counts must be equal, logits within 1e-3 * (1 + |x|)
// and boxes within 1e-2 px * (1 + |x| / 1000): oneDNN's convolutions reorder float sums
// (measured differences on the demo detectors: 1e-5 in logits, 1e-4 px in boxes), while a real
// divergence (a different candidate or proposal set) moves them by whole units.
std::string DetectorRuntime::Impl::OptimizationMismatch(const ProbeOutputs& reference,
                                                        const ProbeOutputs& optimized) const {
  const auto logit_error = [](const at::Tensor& a, const at::Tensor& b) {
    return a.numel() == 0 ? 0.0f : ((a - b).abs() / (a.abs() + 1)).max().item<float>();
  };
  const auto box_error = [](const at::Tensor& a, const at::Tensor& b) {
    return a.numel() == 0 ? 0.0f : ((a - b).abs() / (a.abs() / 1000 + 1)).max().item<float>();
  };
  for (size_t i = 0; i < reference.forward.size(); ++i) {
    const ModelOutputs& a = reference.forward[i];
    const ModelOutputs& b = optimized.forward[i];
    if (!a.boxes.sizes().equals(b.boxes.sizes()) || !a.logits.sizes().equals(b.logits.sizes())) {
      return absl::StrCat("output shapes ", c10::str(a.logits.sizes()), " vs ",
                          c10::str(b.logits.sizes()));
    }
    const float logits = logit_error(a.logits, b.logits);
    const float boxes = box_error(a.boxes, b.boxes);
    if (!(logits <= 1e-3f) || !(boxes <= 1e-2f)) {
      return absl::StrCat("relative logit error ", logits, ", box error ", boxes, " px");
    }
  }
  for (size_t i = 0; i < reference.roi_logits.size(); ++i) {
    const float logits = logit_error(reference.roi_logits[i], optimized.roi_logits[i]);
    if (!(logits <= 1e-3f)) return absl::StrCat("classify_rois relative logit error ", logits);
  }
  for (size_t i = 0; i < reference.proposals.size(); ++i) {
    const at::Tensor& a = reference.proposals[i];
    const at::Tensor& b = optimized.proposals[i];
    if (!a.sizes().equals(b.sizes())) {
      return absl::StrCat("proposals ", c10::str(a.sizes()), " vs ", c10::str(b.sizes()));
    }
    const float boxes = box_error(a, b);
    if (!(boxes <= 1e-2f)) return absl::StrCat("proposal box error ", boxes, " px");
  }
  return "";
}

absl::StatusOr<DetectorRuntime::ForwardResult> DetectorRuntime::Forward(
    absl::Span<const ImageSource> images) const {
  c10::InferenceMode inference_mode;
  ForwardResult result;
  LOGN_ASSIGN_OR_RETURN(std::vector<Prepared> batch,
                        impl_->DecodeAndPrepare(images, result.timings));
  LOGN_ASSIGN_OR_RETURN(std::vector<ModelOutputs> outputs,
                        impl_->TimedForward(batch, result.timings, absl::StatusCode::kInternal));
  for (size_t i = 0; i < batch.size(); ++i) {
    RawOutputs raw;
    raw.image_height = batch[i].image_height;
    raw.image_width = batch[i].image_width;
    raw.input_height = batch[i].input_height;
    raw.input_width = batch[i].input_width;
    raw.num_candidates = outputs[i].logits.size(0);
    raw.class_specific = impl_->class_specific;
    raw.boxes = ToVector(outputs[i].boxes);
    raw.logits = ToVector(outputs[i].logits);
    ScaleBoxes(raw.boxes.data(), static_cast<int64_t>(raw.boxes.size() / 4),
               static_cast<float>(raw.image_width) / static_cast<float>(raw.input_width),
               static_cast<float>(raw.image_height) / static_cast<float>(raw.input_height));
    result.images.push_back(std::move(raw));
  }
  return result;
}

absl::StatusOr<DetectorRuntime::RoiResult> DetectorRuntime::ClassifyRois(
    absl::Span<const ImageSource> images, absl::Span<const std::vector<float>> rois) const {
  if (!impl_->has_classify_rois) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", impl_->manifest.name(), " has no classify_rois (manifest hasClassifyRois)"));
  }
  if (rois.size() != images.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(images.size(), " images but ", rois.size(), " RoI lists"));
  }
  for (size_t i = 0; i < rois.size(); ++i) {
    if (rois[i].size() % 4 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("RoIs of image ", i, " have ", rois[i].size(), " floats, not 4 per box"));
    }
    if (static_cast<int64_t>(rois[i].size() / 4) > impl_->limits.max_rois_per_image) {
      return absl::InvalidArgumentError(absl::StrCat("image ", i, " has ", rois[i].size() / 4,
                                                     " RoIs, over the limit of ",
                                                     impl_->limits.max_rois_per_image));
    }
  }
  c10::InferenceMode inference_mode;
  RoiResult result;
  LOGN_ASSIGN_OR_RETURN(std::vector<Prepared> batch,
                        impl_->DecodeAndPrepare(images, result.timings));
  std::vector<at::Tensor> roi_tensors;
  for (size_t i = 0; i < batch.size(); ++i) {
    std::vector<float> scaled = rois[i];
    ScaleBoxes(
        scaled.data(), static_cast<int64_t>(scaled.size() / 4),
        static_cast<float>(batch[i].input_width) / static_cast<float>(batch[i].image_width),
        static_cast<float>(batch[i].input_height) / static_cast<float>(batch[i].image_height));
    roi_tensors.push_back(
        torch::tensor(scaled).view({static_cast<int64_t>(scaled.size() / 4), 4}).to(impl_->device));
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<at::Tensor>> logits =
      impl_->RunClassifyRois(batch, roi_tensors, absl::StatusCode::kInternal);
  result.timings.forward = absl::Now() - start;
  if (!logits.ok()) return logits.status();
  for (const at::Tensor& t : *logits) result.logits.push_back(ToVector(t));
  return result;
}

absl::StatusOr<DetectorRuntime::ProposalResult> DetectorRuntime::Proposals(
    absl::Span<const ImageSource> images) const {
  if (!impl_->has_proposals) {
    return absl::FailedPreconditionError(absl::StrCat("model ", impl_->manifest.name(),
                                                      " has no proposals (manifest hasProposals)"));
  }
  c10::InferenceMode inference_mode;
  ProposalResult result;
  LOGN_ASSIGN_OR_RETURN(std::vector<Prepared> batch,
                        impl_->DecodeAndPrepare(images, result.timings));
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<at::Tensor>> proposals =
      impl_->RunProposals(batch, absl::StatusCode::kInternal);
  result.timings.forward = absl::Now() - start;
  if (!proposals.ok()) return proposals.status();
  for (size_t i = 0; i < batch.size(); ++i) {
    std::vector<float> boxes = ToVector((*proposals)[i]);
    // Back to original-image pixels, as Forward's boxes.
    ScaleBoxes(
        boxes.data(), static_cast<int64_t>(boxes.size() / 4),
        static_cast<float>(batch[i].image_width) / static_cast<float>(batch[i].input_width),
        static_cast<float>(batch[i].image_height) / static_cast<float>(batch[i].input_height));
    result.boxes.push_back(std::move(boxes));
  }
  return result;
}

absl::StatusOr<DetectorRuntime::Detections> DetectorRuntime::PostprocessOutputs(
    absl::Span<const RawOutputs> outputs, absl::Span<const Calibrator* const> calibrators,
    const PostprocessOptions& options, PostprocessStats* stats) const {
  if (calibrators.empty()) return absl::InvalidArgumentError("no calibration setting");
  for (size_t s = 0; s < calibrators.size(); ++s) {
    if (calibrators[s] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("calibrator ", s, " is null"));
    }
    if (calibrators[s]->layout() != impl_->layout) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibrator ", s, " is for ", calibrators[s]->layout().DebugString(),
                       "; model ", impl_->manifest.name(), " has ", impl_->layout.DebugString()));
    }
  }
  LOGN_RETURN_IF_ERROR(options.Validate());
  Detections detections(calibrators.size());
  for (size_t s = 0; s < calibrators.size(); ++s) {
    detections[s].reserve(outputs.size());
    for (const RawOutputs& raw : outputs) {
      LOGN_ASSIGN_OR_RETURN(std::vector<Detection> image,
                            Postprocess(*calibrators[s], raw.view(), options, stats));
      detections[s].push_back(std::move(image));
    }
  }
  return detections;
}

}  // namespace logn
