// logn detect: images -> detections, as a table per image (class names, scores, boxes), JSON
// lines or an LVIS results file; --draw DIR also writes the images with their detections drawn.

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/cli/commands.h"
#include "client/cli/draw.h"
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
  SetModel(options.model, &request);
  SetSelector(options.selector, &request);
  *request.add_calibrations() = options.setting;
  for (const v1::CalibrationSetting& setting : options.more_settings) {
    *request.add_calibrations() = setting;
  }
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

// The file name of each image's picture under --draw: its stem (".png" added later), made unique
// within the run ("a.jpg" and "a.png" give "a" and "a-2").
std::vector<std::string> DrawStems(const std::vector<std::string>& images) {
  std::vector<std::string> stems;
  absl::flat_hash_set<std::string> taken;
  for (const std::string& image : images) {
    const std::string stem = fs::path(image).stem().string();
    std::string name = stem.empty() ? "image" : stem;
    for (int n = 2; !taken.insert(name).second; ++n) name = absl::StrCat(stem, "-", n);
    stems.push_back(name);
  }
  return stems;
}

// A setting's name as part of a file name: anything but letters, digits, '.', '_' and '-'
// becomes '_' ("t2:mu" -> "t2_mu").
std::string FileNamePart(std::string name) {
  for (char& c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      c = '_';
    }
  }
  return name;
}

// Draws the top detections of every setting on the response's images and writes the PNGs;
// returns how many it wrote.
absl::StatusOr<int> DrawResponse(const DetectOptions& options,
                                 const std::vector<std::string>& stems, const ClassNames& classes,
                                 size_t begin, const v1::DetectResponse& response) {
  int written = 0;
  if (response.results_size() == 0) return written;
  for (int k = 0; k < response.results(0).image_detections_size(); ++k) {
    const size_t index = begin + static_cast<size_t>(k);
    if (index >= options.images.size()) break;
    absl::StatusOr<std::string> bytes = ReadFileToString(options.images[index]);
    if (!bytes.ok()) return bytes.status();
    for (const v1::CalibrationResult& result : response.results()) {
      if (k >= result.image_detections_size()) continue;
      const v1::ImageDetections& image = result.image_detections(k);
      const int shown = options.top > 0 ? std::min(options.top, image.detections_size())
                                         : image.detections_size();
      std::vector<DrawnBox> boxes;
      for (int j = 0; j < shown; ++j) {
        const v1::Detection& d = image.detections(j);
        boxes.push_back({d.box().x1(), d.box().y1(), d.box().x2(), d.box().y2(), d.category_id(),
                         absl::StrFormat("%s %.2f", classes.Name(d.category_id()), d.score())});
      }
      absl::StatusOr<std::string> png = RenderDetectionsPng(*bytes, boxes, options.draw_scale);
      if (!png.ok()) {
        return absl::Status(png.status().code(), absl::StrCat(options.images[index], ": ",
                                                               png.status().message()));
      }
      std::string name = stems[index];
      if (!options.more_settings.empty()) {
        absl::StrAppend(&name, ".", FileNamePart(SettingName(result.setting())));
      }
      const std::string path = (fs::path(options.draw_dir) / (name + ".png")).string();
      if (absl::Status s = WriteFile(path, *png); !s.ok()) return s;
      ++written;
    }
  }
  return written;
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

// The manifest's class names, from the model version `model` names; pins `model` to the version
// that answered, so that the detections come from the model the names are of. Without them
// (GetModelInfo failed) tables show category ids.
ClassNames FetchClassNames(Client& client, const Io& io, ModelRef* model, std::string* model_name) {
  v1::GetModelInfoRequest request;
  SetModel(*model, &request);
  absl::StatusOr<v1::GetModelInfoResponse> info = client.GetModelInfo(request);
  if (!info.ok()) {
    *io.err << "logn detect: no class names (GetModelInfo: "
            << absl::StatusCodeToString(info.status().code()) << ": " << info.status().message()
            << "); showing category ids\n";
    return ClassNames();
  }
  *model = PinModelVersion(*model, info->model_version());
  *model_name = info->manifest().name();
  return ClassNames(info->manifest());
}

// What the responses say about the model version that served them: the line above the tables
// when it changes (the first response's, then only news), and the fallback warning once.
class ServingNotes {
 public:
  std::string Line(const v1::DetectResponse& response, const std::string& model_name,
                   const std::vector<v1::CalibrationSetting>& requested) {
    std::string line = ServingLine(response, model_name, requested);
    if (line == last_line_) return "";
    last_line_ = line;
    return line;
  }
  std::string Warning(const v1::DetectResponse& response) {
    if (!response.calibration_fallback() || warned_) return "";
    warned_ = true;
    return absl::StrCat("logn detect: ", FallbackWarning(response.model_version()));
  }

 private:
  std::string last_line_;
  bool warned_ = false;
};

DetectOptions ParseDetectOptions(const Args& args) {
  if (args.positional().empty()) args.Fail("no IMAGE given");
  DetectOptions o;
  o.images = args.positional();
  o.model = ReadModel(args);
  o.selector = ReadSelector(args);
  const std::string methods = args.Get("--method");
  if (methods.find(',') == std::string::npos) {
    o.setting = ReadMethod(args);
  } else {
    // Several settings: each read as a --method of its own.
    bool first = true;
    for (absl::string_view method : absl::StrSplit(methods, ',')) {
      Args one(FlagSpec{{"--method"}, {}, /*connects=*/false});
      (void)one.Parse({"--method", std::string(method)});
      v1::CalibrationSetting setting = ReadMethod(one);
      if (!one.error().empty()) args.Fail(one.error());
      if (first) {
        o.setting = std::move(setting);
      } else {
        o.more_settings.push_back(std::move(setting));
      }
      first = false;
    }
  }
  o.postprocess = ReadPostprocess(args);
  o.images_per_request = static_cast<int>(args.Int("--batch", 4, 1, 1024));
  o.json = args.Has("--json");
  o.top = static_cast<int>(args.Int("--top", 10, 0, 1000000));
  o.draw_dir = args.Get("--draw");
  if (args.Has("--draw") && o.draw_dir.empty()) args.Fail("--draw needs a directory");
  if (args.Has("--draw-scale")) {
    if (o.draw_dir.empty()) args.Fail("--draw-scale only applies with --draw");
    if (args.Get("--draw-scale") != "auto") {
      o.draw_scale = static_cast<int>(args.Int("--draw-scale", 0, 1, 16));
    }
  }
  o.lvis_results_path = args.Get("--lvis-results");
  o.gt_path = args.Get("--gt");
  o.stream = args.Has("--stream");
  if (!o.gt_path.empty() && o.lvis_results_path.empty()) {
    args.Fail("--gt only applies with --lvis-results");
  }
  if (!o.lvis_results_path.empty()) {
    if (o.json) args.Fail("--json and --lvis-results are exclusive");
    if (!o.more_settings.empty()) args.Fail("--lvis-results takes a single --method");
  }
  return o;
}

int RunDetect(Client& client, const DetectOptions& options, const Io& io) {
  const bool lvis = !options.lvis_results_path.empty();
  const bool draw = !options.draw_dir.empty();
  const bool table = !lvis && !options.json;
  std::vector<int64_t> image_ids;
  if (lvis) {
    if (int exit = LvisImageIds(options, io, &image_ids); exit != kExitOk) return exit;
  }
  std::vector<std::string> stems;
  if (draw) {
    std::error_code ec;
    fs::create_directories(options.draw_dir, ec);
    if (ec) {
      return ReportError(io, "detect",
                         absl::PermissionDeniedError(absl::StrCat(
                             "cannot create '", options.draw_dir, "': ", ec.message())));
    }
    stems = DrawStems(options.images);
  }
  // Tables and pictures name the classes (JSON lines and LVIS results carry category ids).
  DetectOptions run = options;
  std::string model_name;
  const ClassNames classes =
      table || draw ? FetchClassNames(client, io, &run.model, &model_name) : ClassNames();
  std::vector<LvisDetection> results;
  bool first_table = true;
  int drawn = 0;
  absl::Status draw_status;
  ServingNotes notes;
  std::vector<v1::CalibrationSetting> requested = {options.setting};
  requested.insert(requested.end(), options.more_settings.begin(), options.more_settings.end());
  const ResponseHandler handle = [&](size_t begin, const v1::DetectResponse& response) {
    *io.err << notes.Warning(response);
    if (draw && draw_status.ok()) {
      absl::StatusOr<int> written = DrawResponse(options, stems, classes, begin, response);
      if (written.ok()) {
        drawn += *written;
      } else {
        draw_status = written.status();
      }
    }
    if (options.json) {
      *io.out << DetectionJsonLines(response);
    } else if (table) {
      *io.out << (first_table ? "" : "\n") << notes.Line(response, model_name, requested)
              << DetectionTables(response, classes, options.top);
      first_table = false;
    } else {
      const v1::CalibrationResult& result = response.results(0);
      for (int k = 0; k < result.image_detections_size(); ++k) {
        for (const v1::Detection& d : result.image_detections(k).detections()) {
          results.push_back(ToLvisDetection(image_ids[begin + k], d));
        }
      }
    }
    io.out->flush();
  };
  absl::Status status =
      options.stream ? DetectStreamed(client, run, handle) : DetectUnary(client, run, handle);
  if (status.ok()) status = draw_status;
  if (status.ok() && lvis)
    status = WriteFile(options.lvis_results_path, LvisResultsToJson(results));
  if (!status.ok()) return ReportError(io, "detect", status);
  if (lvis) {
    *io.err << "wrote " << results.size() << " detections of " << options.images.size()
            << " images to " << options.lvis_results_path << "\n";
  }
  if (draw) {
    *io.err << "drew " << drawn << " image" << (drawn == 1 ? "" : "s") << " in "
            << options.draw_dir << "\n";
  }
  return kExitOk;
}

}  // namespace

Command DetectCommand() {
  return {
      "detect",
      "detect objects in images: a table per image, pictures (--draw), JSON or LVIS results",
      absl::StrCat(
          R"(usage: logn detect --server ADDR [flags] IMAGE...

Detects objects in JPEG/PNG files and prints a table per image: its best
detections by score with rank, class name, frequency group (r/c/f), score and
box (x1 y1 x2 y2, pixels of the original image), then how many were left out:

  val/38.png: 300 detections (setting logn, statistics version 1), top 10
   rank  class            group    score        x1       y1       x2       y2
      1  disc_warm-solid  f        0.829      81.0     75.4    128.0    128.0
    ...  (290 more, down to score 1.2e-04; --top 0 shows all)

A line above the tables names the model version that served them, and says when
the model's default calibration fell back (that version has no active statistics).

  --top N                rows per table and boxes per drawn image (default 10;
                         0: all)
  --draw DIR             also write DIR/<image name>.png: the image with its top
                         detections drawn (box, class name and score, one colour
                         per class); DIR/<image name>.<setting>.png with several
                         settings
  --draw-scale N|auto    enlarge the drawn images N times (1-16; default auto:
                         images under 480 px grow so that labels stay legible)
  --json                 one JSON line per image (and setting) instead, with
                         every detection, for scripts:
                           {"image":PATH,"setting":"logn","version":N,
                            "model_version":M,"calibration_fallback":false,"detections":
                            [{"category_id":C,"score":S,"box":[x1,y1,x2,y2]},...]}
                         ("version": the statistics version used, as in
                         DetectResponse; 0 for none / loga; "model_version" and
                         "calibration_fallback" as in DetectResponse)
)",
          ModelGroup().help, SelectorGroup().help, MethodGroup().help,
          R"(                         several, comma-separated (--method none,logn,loga):
                         computed from one forward pass, one table each
)",
          PostprocessGroup().help,
          R"(  --lvis-results FILE    write [{image_id,category_id,bbox:[x,y,w,h],score}] to FILE
                         (every detection) instead of printing
  --gt FILE              LVIS ground truth mapping file names to image ids (default:
                         the numeric file stem, e.g. 42.png -> 42)
  --batch N              images per request (default 4)
  --stream               send the requests over one DetectStream (bidirectional,
                         ordered, flow-controlled) instead of unary Detect calls

)",
          ConnectionGroup().help),
      FlagSpec{{"--lvis-results", "--gt", "--batch", "--top", "--draw", "--draw-scale"},
               {"--stream", "--json"},
               /*connects=*/true,
               /*positional=*/true}
          .Add({&ModelGroup(), &SelectorGroup(), &MethodGroup(), &PostprocessGroup()}),
      ParseInto(&ParseDetectOptions),
      RunWithClient(&RunDetect)};
}

}  // namespace logn::cli
