// logn detect: images -> detections, as JSON lines or an LVIS results file.

#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/eval/lvis_dataset.h"

namespace logn::cli {
namespace {

namespace fs = std::filesystem;

// The LVIS image id of every image: from the ground truth's file names when `gt_path` is set,
// else each file's numeric stem. Prints why and returns kExitUsage (kExitError for an unreadable
// ground truth) when an image has none.
int LvisImageIds(const DetectOptions& options, const Io& io, std::vector<int64_t>* ids) {
  absl::flat_hash_map<std::string, int64_t> id_by_name;
  if (!options.gt_path.empty()) {
    absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
    if (!gt.ok()) return ReportError(io, "detect", gt.status());
    for (const LvisImage& image : gt->images) {
      id_by_name[fs::path(image.file_name).filename().string()] = image.id;
    }
  }
  ids->assign(options.images.size(), 0);
  for (size_t i = 0; i < options.images.size(); ++i) {
    const std::string name = fs::path(options.images[i]).filename().string();
    if (!options.gt_path.empty()) {
      auto it = id_by_name.find(name);
      if (it == id_by_name.end()) {
        *io.err << "logn detect: " << name << " is not an image of --gt (matched by file name)\n";
        return kExitUsage;
      }
      (*ids)[i] = it->second;
    } else if (!absl::SimpleAtoi(fs::path(options.images[i]).stem().string(), &(*ids)[i])) {
      *io.err << "logn detect: cannot derive an LVIS image id from '" << name
              << "' (name files <id>.png or pass --gt)\n";
      return kExitUsage;
    }
  }
  return kExitOk;
}

// The request for the images [begin, begin + images_per_request).
absl::StatusOr<v1::DetectRequest> BuildRequest(const DetectOptions& options, size_t begin) {
  const size_t end =
      std::min(options.images.size(), begin + static_cast<size_t>(options.images_per_request));
  v1::DetectRequest request;
  *request.mutable_selector() = options.selector;
  *request.add_calibrations() = options.setting;
  *request.mutable_postprocess() = options.postprocess;
  request.set_request_id(std::to_string(begin));
  for (size_t i = begin; i < end; ++i) {
    absl::StatusOr<std::string> bytes = ReadFileToString(options.images[i]);
    if (!bytes.ok()) return bytes.status();
    v1::Image* image = request.add_images();
    image->set_encoded(*std::move(bytes));
    image->set_image_id(options.images[i]);
  }
  return request;
}

// One JSON line per image of a response.
void PrintJsonLines(const v1::DetectResponse& response, const Io& io) {
  const v1::CalibrationResult& result = response.results(0);
  for (const v1::ImageDetections& image : result.image_detections()) {
    std::string line = absl::StrCat("{\"image\":", JsonString(image.image_id()),
                                    ",\"setting\":", JsonString(SettingName(result.setting())),
                                    ",\"version\":", response.version(), ",\"detections\":[");
    for (int j = 0; j < image.detections_size(); ++j) {
      const v1::Detection& d = image.detections(j);
      absl::StrAppendFormat(&line,
                            "%s{\"category_id\":%d,\"score\":%.6g,\"box\":[%.2f,%.2f,%.2f,%.2f]}",
                            j ? "," : "", d.category_id(), d.score(), d.box().x1(), d.box().y1(),
                            d.box().x2(), d.box().y2());
    }
    *io.out << line << "]}\n";
  }
}

// Sends every request and hands each response, with the index of its first image, to `handle`.
using ResponseHandler = std::function<void(size_t begin, const v1::DetectResponse&)>;

absl::Status DetectUnary(Client& client, const DetectOptions& options,
                         const ResponseHandler& handle) {
  for (size_t begin = 0; begin < options.images.size(); begin += options.images_per_request) {
    absl::StatusOr<v1::DetectRequest> request = BuildRequest(options, begin);
    if (!request.ok()) return request.status();
    absl::StatusOr<v1::DetectResponse> response = client.Detect(*request);
    if (!response.ok()) return response.status();
    handle(begin, *response);
  }
  return absl::OkStatus();
}

// Over one DetectStream: a writer thread sends the requests (reading files as it goes; Write
// blocks under flow control), this thread reads the responses, which come back in order.
absl::Status DetectStreamed(Client& client, const DetectOptions& options,
                            const ResponseHandler& handle) {
  std::unique_ptr<DetectStream> stream = client.OpenDetectStream();
  absl::Status read_error;
  std::thread writer([&] {
    for (size_t begin = 0; begin < options.images.size(); begin += options.images_per_request) {
      absl::StatusOr<v1::DetectRequest> request = BuildRequest(options, begin);
      if (!request.ok()) {
        read_error = request.status();
        break;
      }
      if (!stream->Write(*std::move(request))) break;
    }
    stream->WritesDone();
  });
  size_t begin = 0;
  while (std::optional<v1::DetectResponse> response = stream->Read()) {
    handle(begin, *response);
    begin += options.images_per_request;
  }
  writer.join();
  absl::Status status = stream->Finish();
  return read_error.ok() ? status : read_error;
}

DetectOptions ParseDetectOptions(const Args& args) {
  if (args.positional().empty()) args.Fail("no IMAGE given");
  DetectOptions o;
  o.images = args.positional();
  o.selector = ReadSelector(args);
  o.setting = ReadMethod(args);
  o.postprocess = ReadPostprocess(args);
  o.images_per_request = static_cast<int>(args.Int("--batch", 4, 1, 1024));
  o.lvis_results_path = args.Get("--lvis-results");
  o.gt_path = args.Get("--gt");
  o.stream = args.Has("--stream");
  if (!o.gt_path.empty() && o.lvis_results_path.empty()) {
    args.Fail("--gt only applies with --lvis-results");
  }
  return o;
}

int RunDetect(Client& client, const DetectOptions& options, const Io& io) {
  const bool lvis = !options.lvis_results_path.empty();
  std::vector<int64_t> image_ids;
  if (lvis) {
    if (int exit = LvisImageIds(options, io, &image_ids); exit != kExitOk) return exit;
  }
  std::vector<Detection> results;
  const ResponseHandler handle = [&](size_t begin, const v1::DetectResponse& response) {
    if (!lvis) return PrintJsonLines(response, io);
    const v1::CalibrationResult& result = response.results(0);
    for (int k = 0; k < result.image_detections_size(); ++k) {
      for (const v1::Detection& d : result.image_detections(k).detections()) {
        results.push_back(ToLvisDetection(image_ids[begin + k], d));
      }
    }
  };
  absl::Status status = options.stream ? DetectStreamed(client, options, handle)
                                       : DetectUnary(client, options, handle);
  if (status.ok() && lvis)
    status = WriteFile(options.lvis_results_path, LvisResultsToJson(results));
  if (!status.ok()) return ReportError(io, "detect", status);
  if (lvis) {
    *io.err << "wrote " << results.size() << " detections of " << options.images.size()
            << " images to " << options.lvis_results_path << "\n";
  }
  return kExitOk;
}

}  // namespace

Command DetectCommand() {
  return {
      "detect",
      "detect objects in images (JSON lines or an LVIS results file)",
      absl::StrCat(
          R"(usage: logn detect --server ADDR [flags] IMAGE...

Detects objects in JPEG/PNG files. Prints one JSON line per image:
  {"image":PATH,"setting":"logn","version":N,
   "detections":[{"category_id":C,"score":S,"box":[x1,y1,x2,y2]},...]}
("version": the statistics version used, as in DetectResponse; 0 for none / loga)
or writes an LVIS/COCO results file with --lvis-results.

)",
          SelectorGroup().help, MethodGroup().help, PostprocessGroup().help,
          R"(  --lvis-results FILE    write [{image_id,category_id,bbox:[x,y,w,h],score}] to FILE
  --gt FILE              LVIS ground truth mapping file names to image ids (default:
                         the numeric file stem, e.g. 42.png -> 42)
  --batch N              images per request (default 4)
  --stream               send the requests over one DetectStream (bidirectional,
                         ordered, flow-controlled) instead of unary Detect calls

)",
          ConnectionGroup().help),
      FlagSpec{{"--lvis-results", "--gt", "--batch"},
               {"--stream"},
               /*connects=*/true,
               /*positional=*/true}
          .Add({&SelectorGroup(), &MethodGroup(), &PostprocessGroup()}),
      ParseInto(&ParseDetectOptions),
      RunWithClient(&RunDetect)};
}

}  // namespace logn::cli
