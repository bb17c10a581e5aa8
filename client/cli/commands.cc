#include "client/cli/commands.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/cli/logits_file.h"
#include "client/cli/progress.h"
#include "client/eval/lvis_dataset.h"
#include "client/eval/lvis_eval.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace logn::cli {
namespace {

namespace fs = std::filesystem;

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

std::string ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string MethodName(v1::CalibrationMethod method) {
  switch (method) {
    case v1::CALIBRATION_METHOD_NONE:
      return "none";
    case v1::CALIBRATION_METHOD_LOGA:
      return "loga";
    default:
      return "logn";
  }
}

std::string SettingName(const v1::CalibrationSetting& setting) {
  return setting.name().empty() ? MethodName(setting.method()) : setting.name();
}

std::string SelectorText(const v1::StatisticsSelector& selector) {
  if (selector.selector_case() == v1::StatisticsSelector::kVersion) {
    return absl::StrCat(selector.version());
  }
  if (selector.selector_case() == v1::StatisticsSelector::kAlias) return selector.alias();
  return "active";
}

absl::Status WriteFile(const std::string& path, absl::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  out.write(content.data(), content.size());
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

// LVIS ground truth boxes are xywh; the service speaks x1y1x2y2.
v1::BoundingBox ToProtoBox(const BoxXywh& box) {
  v1::BoundingBox out;
  out.set_x1(static_cast<float>(box.x));
  out.set_y1(static_cast<float>(box.y));
  out.set_x2(static_cast<float>(box.x + box.w));
  out.set_y2(static_cast<float>(box.y + box.h));
  return out;
}

Detection ToLvisDetection(int64_t image_id, const v1::Detection& d) {
  Detection out;
  out.image_id = image_id;
  out.category_id = d.category_id();
  out.bbox = {d.box().x1(), d.box().y1(), d.box().x2() - d.box().x1(), d.box().y2() - d.box().y1()};
  out.score = d.score();
  return out;
}

std::string FormatSeconds(absl::Duration d) {
  return absl::StrFormat("%.2fs", absl::ToDoubleSeconds(d));
}

std::string TimestampText(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(ts.seconds()),
                          absl::UTCTimeZone());
}

std::string VersionLine(const v1::VersionInfo& v) {
  std::string method = v.method() == v1::ACCUMULATION_METHOD_EMA
                           ? absl::StrFormat("ema(%g)", v.momentum())
                           : "exact";
  const std::string source_name = v1::VersionSource_Name(v.source());
  const std::string source(absl::StripPrefix(source_name, "VERSION_SOURCE_"));
  return absl::StrFormat(
      "%7d  %-20s  %10d  %7d  %-12s  %-7s  %-16s  %s", v.version(), TimestampText(v.created_at()),
      v.rows_seen(), v.images_seen(), method, absl::AsciiStrToLower(source),
      v.aliases().empty() ? "-" : absl::StrJoin(v.aliases(), ","), v.description());
}

std::string VersionHeader() {
  return absl::StrFormat("%7s  %-20s  %10s  %7s  %-12s  %-7s  %-16s  %s\n", "version", "created",
                         "rows", "images", "method", "source", "aliases", "description");
}

int64_t DefaultRowsPerBatch(int32_t width) {
  // ~4 MiB messages: well under the server's 64 MiB limit, large enough to amortise the RPC.
  return std::max<int64_t>(1, (int64_t{4} << 20) / (int64_t{4} * std::max(1, width)));
}

}  // namespace

int ReportError(const Io& io, const std::string& command, const absl::Status& status) {
  *io.err << "logn " << command << ": " << absl::StatusCodeToString(status.code()) << ": "
          << status.message() << "\n";
  return kExitError;
}

// ----- detect -----

int RunDetect(Client& client, const DetectOptions& options, const Io& io) {
  const bool lvis = !options.lvis_results_path.empty();
  // LVIS image ids: from the ground truth's file names, else the file's numeric stem.
  absl::flat_hash_map<std::string, int64_t> id_by_name;
  if (lvis && !options.gt_path.empty()) {
    absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
    if (!gt.ok()) return ReportError(io, "detect", gt.status());
    for (const LvisImage& image : gt->images) {
      id_by_name[fs::path(image.file_name).filename().string()] = image.id;
    }
  }
  std::vector<int64_t> image_ids(options.images.size(), 0);
  if (lvis) {
    for (size_t i = 0; i < options.images.size(); ++i) {
      const fs::path path(options.images[i]);
      if (!options.gt_path.empty()) {
        auto it = id_by_name.find(path.filename().string());
        if (it == id_by_name.end()) {
          *io.err << "logn detect: " << path.filename().string()
                  << " is not an image of --gt (matched by file name)\n";
          return kExitUsage;
        }
        image_ids[i] = it->second;
      } else if (!absl::SimpleAtoi(path.stem().string(), &image_ids[i])) {
        *io.err << "logn detect: cannot derive an LVIS image id from '" << path.filename().string()
                << "' (name files <id>.png or pass --gt)\n";
        return kExitUsage;
      }
    }
  }

  const size_t per_request = static_cast<size_t>(options.images_per_request);
  // The request for the images [begin, begin + per_request).
  auto build_request = [&](size_t begin) -> absl::StatusOr<v1::DetectRequest> {
    const size_t end = std::min(options.images.size(), begin + per_request);
    v1::DetectRequest request;
    *request.mutable_statistics() = options.statistics;
    *request.add_calibrations() = options.setting;
    *request.mutable_postprocess() = options.postprocess;
    request.set_request_id(std::to_string(begin));
    for (size_t i = begin; i < end; ++i) {
      absl::StatusOr<std::string> bytes = ReadFileToString(options.images[i]);
      if (!bytes.ok()) return bytes.status();
      v1::Image* image = request.add_images();
      image->set_encoded(*std::move(bytes));
      image->set_id(options.images[i]);
    }
    return request;
  };
  std::vector<Detection> results;
  auto handle = [&](size_t begin, const v1::DetectResponse& response) {
    const v1::CalibrationResult& result = response.results(0);
    for (int k = 0; k < result.images_size(); ++k) {
      const v1::ImageDetections& image = result.images(k);
      if (lvis) {
        for (const v1::Detection& d : image.detections()) {
          results.push_back(ToLvisDetection(image_ids[begin + k], d));
        }
        continue;
      }
      std::string line = absl::StrCat("{\"image\":", JsonString(image.image_id()),
                                      ",\"setting\":", JsonString(SettingName(result.setting())),
                                      ",\"statistics_version\":", response.statistics_version(),
                                      ",\"detections\":[");
      for (int j = 0; j < image.detections_size(); ++j) {
        const v1::Detection& d = image.detections(j);
        absl::StrAppend(
            &line, j ? "," : "",
            absl::StrFormat("{\"category_id\":%d,\"score\":%.6g,\"box\":[%.2f,%.2f,%.2f,%.2f]}",
                            d.category_id(), d.score(), d.box().x1(), d.box().y1(), d.box().x2(),
                            d.box().y2()));
      }
      *io.out << line << "]}\n";
    }
  };

  if (!options.stream) {
    for (size_t begin = 0; begin < options.images.size(); begin += per_request) {
      absl::StatusOr<v1::DetectRequest> request = build_request(begin);
      if (!request.ok()) return ReportError(io, "detect", request.status());
      absl::StatusOr<v1::DetectResponse> response = client.Detect(*request);
      if (!response.ok()) return ReportError(io, "detect", response.status());
      handle(begin, *response);
    }
  } else {
    // DetectStream: one writer thread sends the requests (reading files as it goes; Write blocks
    // under flow control), this thread reads the responses, which come back in request order.
    std::unique_ptr<DetectStream> stream = client.OpenDetectStream();
    absl::Status read_error;
    std::thread writer([&] {
      for (size_t begin = 0; begin < options.images.size(); begin += per_request) {
        absl::StatusOr<v1::DetectRequest> request = build_request(begin);
        if (!request.ok()) {
          read_error = request.status();
          break;
        }
        if (!stream->Write(*request)) break;
      }
      stream->WritesDone();
    });
    size_t begin = 0;
    while (std::optional<v1::DetectResponse> response = stream->Read()) {
      handle(begin, *response);
      begin += per_request;
    }
    writer.join();
    absl::Status status = stream->Finish();
    if (!read_error.ok()) return ReportError(io, "detect", read_error);
    if (!status.ok()) return ReportError(io, "detect", status);
  }
  if (lvis) {
    if (absl::Status s = WriteFile(options.lvis_results_path, LvisResultsToJson(results));
        !s.ok()) {
      return ReportError(io, "detect", s);
    }
    *io.err << "wrote " << results.size() << " detections of " << options.images.size()
            << " images to " << options.lvis_results_path << "\n";
  }
  return kExitOk;
}

// ----- calibrate -----

namespace {

// The version a job committed as (0: none), so that resuming a finished job never commits it a
// second time.
absl::StatusOr<int64_t> VersionOfJob(Client& client, const std::string& job_id) {
  v1::ListVersionsRequest request;
  request.set_page_size(1000);
  while (true) {
    absl::StatusOr<v1::ListVersionsResponse> page = client.ListVersions(request);
    if (absl::IsNotFound(page.status())) return 0;  // the model has no version yet
    if (!page.ok()) return page.status();
    for (const v1::VersionInfo& v : page->versions()) {
      if (v.job_id() == job_id) return v.version();
    }
    if (page->next_page_token().empty()) return 0;
    request.set_page_token(page->next_page_token());
  }
}

// [begin, end) of shard `index` of `count` contiguous slices of `total` items.
std::pair<int64_t, int64_t> ShardRange(int64_t total, int index, int count) {
  return {total * index / count, total * (index + 1) / count};
}

}  // namespace

int RunCalibrate(Client& client, const CalibrateOptions& options, const Io& io) {
  const bool from_images = !options.dataset_path.empty();
  v1::CalibrateHeader header;
  header.set_source(from_images ? v1::CALIBRATION_SOURCE_IMAGES : v1::CALIBRATION_SOURCE_LOGITS);
  header.set_description(options.description);
  header.set_activate_on_commit(options.activate);
  header.set_job_id(options.job_id);
  header.set_partial(options.partial);
  header.set_checkpoint_every_batches(options.checkpoint_every);
  if (options.ema_momentum.has_value()) {
    header.mutable_ema()->set_momentum(*options.ema_momentum);
    if (options.ema_init.has_value()) *header.mutable_ema()->mutable_init() = *options.ema_init;
  } else {
    header.mutable_exact();
  }

  // Open the input before the stream so a bad file costs no server job.
  LvisDataset dataset;
  absl::flat_hash_map<int64_t, std::vector<const LvisAnnotation*>> annotations;
  std::unique_ptr<LogitsReader> reader;
  ProgressOptions progress_options;
  progress_options.terminal = io.terminal;
  progress_options.interval = options.progress_interval;
  progress_options.rows_known = !from_images;
  int64_t total = 0;  // images or rows in the file
  if (from_images) {
    absl::StatusOr<LvisDataset> read = ReadLvisDataset(options.dataset_path);
    if (!read.ok()) return ReportError(io, "calibrate", read.status());
    dataset = *std::move(read);
    for (const LvisAnnotation& a : dataset.annotations) annotations[a.image_id].push_back(&a);
    total = static_cast<int64_t>(dataset.images.size());
  } else {
    absl::StatusOr<std::unique_ptr<LogitsReader>> opened =
        LogitsReader::Open(options.logits_path, options.width);
    if (!opened.ok()) return ReportError(io, "calibrate", opened.status());
    reader = *std::move(opened);
    total = reader->rows();
  }
  const auto [shard_begin, shard_end] =
      ShardRange(total, options.shard_index, options.shard_count);
  if (shard_begin == shard_end) {
    return ReportError(io, "calibrate",
                       absl::InvalidArgumentError(absl::StrCat(
                           "shard ", options.shard_index, "/", options.shard_count, " of ", total,
                           from_images ? " images" : " rows", " is empty: use fewer shards")));
  }
  const int64_t per_batch =
      from_images ? options.images_per_batch
                  : (options.rows_per_batch > 0 ? options.rows_per_batch
                                                : DefaultRowsPerBatch(reader->width()));

  // Resuming: the server holds the job's accumulation up to its last checkpoint; send only the
  // batches after it.
  int64_t first_batch = 0;
  if (options.resume) {
    v1::GetCalibrationJobRequest request;
    request.set_job_id(options.job_id);
    absl::StatusOr<v1::CalibrationJob> job = client.GetCalibrationJob(request);
    if (job.ok()) {
      first_batch = job->batches();
      header.set_resume(true);
      header.set_resume_from_batch(first_batch);
      *io.err << "calibrate: resuming job '" << options.job_id << "' after batch " << first_batch
              << " (" << job->rows() << " rows, " << job->images() << " images)\n";
    } else if (absl::IsNotFound(job.status())) {
      absl::StatusOr<int64_t> committed = VersionOfJob(client, options.job_id);
      if (!committed.ok()) return ReportError(io, "calibrate", committed.status());
      if (*committed > 0) {
        return ReportError(io, "calibrate",
                           absl::FailedPreconditionError(absl::StrCat(
                               "job '", options.job_id, "' already committed as version ",
                               *committed, "; nothing to resume")));
      }
      *io.err << "calibrate: job '" << options.job_id
              << "' has no checkpoint: starting from the beginning\n";
    } else {
      return ReportError(io, "calibrate", job.status());
    }
  }
  const int64_t first_item = shard_begin + first_batch * per_batch;
  if (first_item >= shard_end) {
    return ReportError(io, "calibrate",
                       absl::FailedPreconditionError(absl::StrCat(
                           "job '", options.job_id, "' checkpointed after batch ", first_batch,
                           ", past the end of this input: is it the same input and batch size?")));
  }
  if (from_images) {
    progress_options.total_images = shard_end - first_item;
  } else {
    progress_options.total_rows = shard_end - first_item;
    if (absl::Status s = reader->Skip(first_item); !s.ok()) {
      return ReportError(io, "calibrate", s);
    }
  }

  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<CalibrationWriter>> writer = client.Calibrate(header);
  if (!writer.ok()) return ReportError(io, "calibrate", writer.status());
  // Progress goes to stdout's terminal when there is one, else to stderr as plain lines.
  ProgressReporter progress(io.terminal ? io.out : io.err, progress_options);

  if (from_images) {
    int64_t sent = 0;
    for (int64_t begin = first_item; begin < shard_end; begin += per_batch) {
      const int64_t end = std::min(shard_end, begin + per_batch);
      v1::ImageBatch batch;
      for (int64_t i = begin; i < end; ++i) {
        const LvisImage& image = dataset.images[static_cast<size_t>(i)];
        if (image.file_name.empty()) {
          (*writer)->Cancel();
          return ReportError(io, "calibrate",
                             absl::InvalidArgumentError(absl::StrCat(
                                 options.dataset_path, ": image ", image.id, " has no file_name")));
        }
        absl::StatusOr<std::string> bytes =
            ReadFileToString((fs::path(options.images_dir) / image.file_name).string());
        if (!bytes.ok()) {
          (*writer)->Cancel();
          return ReportError(io, "calibrate", bytes.status());
        }
        v1::AnnotatedImage* annotated = batch.add_images();
        annotated->mutable_image()->set_encoded(*std::move(bytes));
        annotated->mutable_image()->set_id(absl::StrCat(image.id));
        auto it = annotations.find(image.id);
        if (it == annotations.end()) continue;
        for (const LvisAnnotation* a : it->second) {
          *annotated->mutable_ground_truth()->add_boxes() = ToProtoBox(a->bbox);
          annotated->mutable_ground_truth()->add_category_ids(static_cast<int32_t>(a->category_id));
        }
      }
      if (absl::Status s = (*writer)->WriteImages(batch); !s.ok()) {
        return ReportError(io, "calibrate", s);
      }
      sent += end - begin;
      progress.Update(0, sent);
    }
  } else {
    std::vector<float> values;
    while (reader->rows_read() < shard_end) {
      absl::StatusOr<int64_t> n =
          reader->Read(std::min(per_batch, shard_end - reader->rows_read()), &values);
      if (!n.ok()) {
        (*writer)->Cancel();
        return ReportError(io, "calibrate", n.status());
      }
      if (*n == 0) break;
      if (absl::Status s = (*writer)->WriteLogits(values.data(), *n, reader->width()); !s.ok()) {
        return ReportError(io, "calibrate", s);
      }
      progress.Update(reader->rows_read() - first_item, 0);
    }
  }
  absl::StatusOr<v1::CalibrateResponse> response = (*writer)->Commit();
  if (!response.ok()) return ReportError(io, "calibrate", response.status());
  progress.Update(response->rows(), response->images());
  progress.Finish();
  if (options.json) {
    *io.out << ProtoJson(*response) << "\n";
  } else {
    *io.out << absl::StrFormat("committed version %d: %d rows, %d images, %d batches in %s%s%s\n",
                               response->version().version(), response->rows(), response->images(),
                               response->batches(), FormatSeconds(absl::Now() - start),
                               options.partial ? " (partial)" : "",
                               options.activate ? " (active)" : "");
  }
  return kExitOk;
}

// ----- apply -----

int RunApply(Client& client, const ApplyOptions& options, const Io& io) {
  absl::StatusOr<std::unique_ptr<LogitsReader>> reader =
      LogitsReader::Open(options.logits_path, options.width);
  if (!reader.ok()) return ReportError(io, "apply", reader.status());
  const int32_t width = (*reader)->width();
  const int64_t rows_per_batch =
      options.rows_per_batch > 0 ? options.rows_per_batch : DefaultRowsPerBatch(width);
  std::vector<float> calibrated, scores, values;
  calibrated.reserve((*reader)->rows() * width);
  int64_t version = 0;
  while (true) {
    absl::StatusOr<int64_t> n = (*reader)->Read(rows_per_batch, &values);
    if (!n.ok()) return ReportError(io, "apply", n.status());
    if (*n == 0) break;
    v1::ApplyRequest request;
    *request.mutable_statistics() = options.statistics;
    *request.mutable_calibration() = options.setting;
    request.set_include_scores(!options.scores_path.empty());
    request.mutable_logits()->set_rows(*n);
    request.mutable_logits()->set_width(width);
    request.mutable_logits()->set_data(values.data(), values.size() * sizeof(float));
    absl::StatusOr<v1::ApplyResponse> response = client.Apply(request);
    if (!response.ok()) return ReportError(io, "apply", response.status());
    version = response->statistics_version();
    auto append = [&](const v1::LogitBatch& batch, std::vector<float>* out) {
      const size_t old = out->size();
      out->resize(old + batch.data().size() / sizeof(float));
      std::memcpy(out->data() + old, batch.data().data(), batch.data().size());
    };
    append(response->logits(), &calibrated);
    if (!options.scores_path.empty()) append(response->scores(), &scores);
  }
  const int64_t rows = (*reader)->rows();
  if (absl::Status s = WriteLogitsFile(options.out_path, calibrated.data(), rows, width); !s.ok()) {
    return ReportError(io, "apply", s);
  }
  if (!options.scores_path.empty()) {
    if (absl::Status s = WriteLogitsFile(options.scores_path, scores.data(), rows, width);
        !s.ok()) {
      return ReportError(io, "apply", s);
    }
  }
  *io.out << absl::StrFormat("calibrated %d rows x %d with %s (statistics version %d) -> %s\n",
                             rows, width, SettingName(options.setting), version, options.out_path);
  return kExitOk;
}

// ----- stats -----

int RunStats(Client& client, const StatsOptions& options, const Io& io) {
  switch (options.action) {
    case StatsAction::kList: {
      std::vector<v1::VersionInfo> versions;
      v1::ListVersionsRequest request;
      request.set_page_size(1000);
      do {
        absl::StatusOr<v1::ListVersionsResponse> page = client.ListVersions(request);
        if (!page.ok()) return ReportError(io, "stats list", page.status());
        versions.insert(versions.end(), page->versions().begin(), page->versions().end());
        request.set_page_token(page->next_page_token());
      } while (!request.page_token().empty());
      if (options.json) {
        std::vector<std::string> items;
        for (const auto& v : versions) items.push_back(ProtoJson(v));
        *io.out << "[" << absl::StrJoin(items, ",") << "]\n";
      } else {
        *io.out << VersionHeader();
        for (const auto& v : versions) *io.out << VersionLine(v) << "\n";
      }
      return kExitOk;
    }
    case StatsAction::kShow: {
      v1::GetVersionRequest request;
      *request.mutable_version() = options.version;
      request.set_include_statistics(options.include_statistics);
      absl::StatusOr<v1::GetVersionResponse> got = client.GetVersion(request);
      if (!got.ok()) return ReportError(io, "stats show", got.status());
      if (options.json) {
        *io.out << ProtoJson(*got) << "\n";
        return kExitOk;
      }
      const v1::VersionInfo& v = got->version();
      *io.out << VersionHeader() << VersionLine(v) << "\n";
      *io.out << "model " << v.model().name() << " sha256 " << v.model().sha256() << "\n"
              << "payload_sha256 " << v.payload_sha256() << (v.partial() ? " (partial)" : "")
              << "\n";
      if (!v.parent_versions().empty()) {
        *io.out << "parents " << absl::StrJoin(v.parent_versions(), ",") << "\n";
      }
      if (options.include_statistics) {
        const v1::Statistics& s = got->statistics();
        *io.out << "column        mean    variance\n";
        for (int j = 0; j < s.mean_size(); ++j) {
          *io.out << absl::StrFormat("%6d  %10.5g  %10.5g\n", j, s.mean(j),
                                     j < s.variance_size() ? s.variance(j) : NAN);
        }
      }
      return kExitOk;
    }
    case StatsAction::kActivate: {
      v1::ActivateRequest request;
      request.set_version(options.version_number);
      absl::StatusOr<v1::ActivateResponse> r = client.Activate(request);
      if (!r.ok()) return ReportError(io, "stats activate", r.status());
      *io.out << "active -> " << options.version_number << " (was " << r->previous_version()
              << ")\n";
      return kExitOk;
    }
    case StatsAction::kRollback: {
      absl::StatusOr<v1::RollbackResponse> r = client.Rollback({});
      if (!r.ok()) return ReportError(io, "stats rollback", r.status());
      *io.out << "active -> " << r->active_version() << "\n";
      return kExitOk;
    }
    case StatsAction::kAlias: {
      v1::SetAliasRequest request;
      request.set_alias(options.alias);
      request.set_version(options.version_number);
      absl::StatusOr<v1::SetAliasResponse> r = client.SetAlias(request);
      if (!r.ok()) return ReportError(io, "stats alias", r.status());
      *io.out << options.alias << " -> " << options.version_number << " (was "
              << r->previous_version() << ")\n";
      return kExitOk;
    }
    case StatsAction::kDelete: {
      v1::DeleteVersionRequest request;
      request.set_version(options.version_number);
      absl::StatusOr<v1::DeleteVersionResponse> r = client.DeleteVersion(request);
      if (!r.ok()) return ReportError(io, "stats delete", r.status());
      *io.out << "deleted version " << options.version_number << "\n";
      return kExitOk;
    }
    case StatsAction::kExport: {
      v1::ExportVersionRequest request;
      *request.mutable_version() = options.version;
      request.set_format(options.format);
      absl::StatusOr<v1::ExportVersionResponse> r = client.ExportVersion(request);
      if (!r.ok()) return ReportError(io, "stats export", r.status());
      if (options.path.empty()) {
        *io.out << r->content();
        return kExitOk;
      }
      if (absl::Status s = WriteFile(options.path, r->content()); !s.ok()) {
        return ReportError(io, "stats export", s);
      }
      *io.err << "exported version " << SelectorText(options.version) << " (" << r->content().size()
              << " bytes) to " << options.path << "\n";
      return kExitOk;
    }
    case StatsAction::kImport: {
      absl::StatusOr<std::string> content = ReadFileToString(options.path);
      if (!content.ok()) return ReportError(io, "stats import", content.status());
      v1::ImportVersionRequest request;
      request.set_content(*std::move(content));
      request.set_format(options.format);
      request.set_description(options.description);
      request.set_activate(options.activate);
      absl::StatusOr<v1::ImportVersionResponse> r = client.ImportVersion(request);
      if (!r.ok()) return ReportError(io, "stats import", r.status());
      if (options.json) {
        *io.out << ProtoJson(r->version()) << "\n";
      } else {
        *io.out << "imported as version " << r->version().version()
                << (options.activate ? " (active)" : "") << "\n";
      }
      return kExitOk;
    }
    case StatsAction::kMerge: {
      v1::MergeRequest request;
      for (int64_t v : options.merge_versions) request.add_versions(v);
      request.set_description(options.description);
      request.set_job_id(options.job_id);
      request.set_activate(options.activate);
      request.set_partial(options.partial);
      absl::StatusOr<v1::MergeResponse> r = client.Merge(request);
      if (!r.ok()) return ReportError(io, "stats merge", r.status());
      if (options.json) {
        *io.out << ProtoJson(r->version()) << "\n";
      } else {
        *io.out << "merged versions " << absl::StrJoin(r->version().parent_versions(), ", ")
                << " into version " << r->version().version() << ": "
                << r->version().rows_seen() << " rows, " << r->version().images_seen()
                << " images" << (options.partial ? " (partial)" : "")
                << (options.activate ? " (active)" : "") << "\n";
      }
      return kExitOk;
    }
    case StatsAction::kJob: {
      v1::GetCalibrationJobRequest request;
      request.set_job_id(options.job_id);
      absl::StatusOr<v1::CalibrationJob> r = client.GetCalibrationJob(request);
      if (!r.ok()) return ReportError(io, "stats job", r.status());
      if (options.json) {
        *io.out << ProtoJson(*r) << "\n";
      } else {
        *io.out << "job '" << r->job_id() << "' checkpointed after batch " << r->batches() << ": "
                << r->rows() << " rows, " << r->images() << " images\n";
      }
      return kExitOk;
    }
  }
  return kExitError;
}

// ----- eval -----

int RunEval(const EvalOptions& options, const Io& io) {
  absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
  if (!gt.ok()) return ReportError(io, "eval", gt.status());
  absl::StatusOr<std::vector<Detection>> dt = ReadLvisResults(options.dt_path);
  if (!dt.ok()) return ReportError(io, "eval", dt.status());
  absl::StatusOr<LvisEvalResult> result = EvaluateLvis(*gt, *dt);
  if (!result.ok()) return ReportError(io, "eval", result.status());
  if (options.json) {
    *io.out << LvisEvalResultToJson(*result, options.per_class) << "\n";
  } else {
    *io.out << FormatLvisEvalResult(*result, options.per_class);
  }
  return kExitOk;
}

// ----- compare -----

std::vector<v1::CalibrationSetting> CompareSettings(bool include_loga) {
  std::vector<v1::CalibrationSetting> settings;
  auto add = [&](const std::string& name, v1::CalibrationMethod method) -> v1::CalibrationSetting& {
    settings.emplace_back();
    settings.back().set_name(name);
    settings.back().set_method(method);
    return settings.back();
  };
  add("none", v1::CALIBRATION_METHOD_NONE);
  if (include_loga) add("loga", v1::CALIBRATION_METHOD_LOGA);
  {
    // Plain BatchNorm inference over all C+1 logits: LogN without beta, background normalised.
    v1::LogNParams* p = add("bn", v1::CALIBRATION_METHOD_LOGN).mutable_logn();
    p->set_use_beta(false);
    p->set_normalize_background(true);
  }
  add("logn", v1::CALIBRATION_METHOD_LOGN);
  // Table 2: which of mu, sigma, beta are on.
  const struct {
    const char* name;
    bool mu, sigma, beta;
  } kTable2[] = {{"t2:-", false, false, false},
                 {"t2:mu", true, false, false},
                 {"t2:sigma", false, true, false},
                 {"t2:beta", false, false, true},
                 {"t2:mu+sigma+beta", true, true, true}};
  for (const auto& row : kTable2) {
    v1::LogNParams* p = add(row.name, v1::CALIBRATION_METHOD_LOGN).mutable_logn();
    p->set_use_mean(row.mu);
    p->set_use_std(row.sigma);
    p->set_use_beta(row.beta);
  }
  // Table 3: how beta is chosen.
  const struct {
    const char* name;
    v1::BetaPolicy policy;
    double constant;
  } kTable3[] = {{"t3:const-4", v1::BETA_POLICY_CONSTANT, -4},
                 {"t3:const-12", v1::BETA_POLICY_CONSTANT, -12},
                 {"t3:background_mean", v1::BETA_POLICY_BACKGROUND_MEAN, 0},
                 {"t3:max_fg_mean", v1::BETA_POLICY_MAX_FOREGROUND_MEAN, 0},
                 {"t3:avg_fg_mean", v1::BETA_POLICY_AVG_FOREGROUND_MEAN, 0},
                 {"t3:min_fg_mean", v1::BETA_POLICY_MIN_FOREGROUND_MEAN, 0}};
  for (const auto& row : kTable3) {
    v1::LogNParams* p = add(row.name, v1::CALIBRATION_METHOD_LOGN).mutable_logn();
    p->set_beta_policy(row.policy);
    if (row.policy == v1::BETA_POLICY_CONSTANT) p->set_beta_constant(row.constant);
  }
  return settings;
}

int RunCompare(Client& client, const CompareOptions& options, const Io& io) {
  absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
  if (!gt.ok()) return ReportError(io, "compare", gt.status());
  absl::StatusOr<v1::GetModelInfoResponse> info = client.GetModelInfo();
  if (!info.ok()) return ReportError(io, "compare", info.status());
  // LogA needs every class's training instance count.
  bool include_loga = info->manifest().classes_size() > 0;
  for (const v1::ClassInfo& c : info->manifest().classes()) {
    if (c.instance_count() <= 0) include_loga = false;
  }
  if (!include_loga) *io.err << "logn compare: skipping LogA (the model has no instance counts)\n";
  const std::vector<v1::CalibrationSetting> settings = CompareSettings(include_loga);

  std::vector<std::vector<Detection>> detections(settings.size());
  int64_t statistics_version = 0;
  ProgressOptions progress_options;
  progress_options.terminal = io.terminal;
  progress_options.total_images = static_cast<int64_t>(gt->images.size());
  progress_options.rows_known = false;  // detection has no rows
  progress_options.label = "detect";
  ProgressReporter progress(io.terminal ? io.out : io.err, progress_options);
  int64_t done = 0;
  for (const LvisImage& image : gt->images) {
    // One request per image carrying every setting: all settings share one forward pass.
    v1::DetectRequest request;
    absl::StatusOr<std::string> bytes =
        ReadFileToString((fs::path(options.images_dir) / image.file_name).string());
    if (!bytes.ok()) return ReportError(io, "compare", bytes.status());
    request.add_images()->set_encoded(*std::move(bytes));
    request.mutable_images(0)->set_id(absl::StrCat(image.id));
    *request.mutable_statistics() = options.statistics;
    *request.mutable_postprocess() = options.postprocess;
    for (const auto& s : settings) *request.add_calibrations() = s;
    absl::StatusOr<v1::DetectResponse> response = client.Detect(request);
    if (!response.ok()) {
      return ReportError(
          io, "compare",
          absl::Status(response.status().code(),
                       absl::StrCat("image ", image.id, ": ", response.status().message())));
    }
    statistics_version = response->statistics_version();
    for (int k = 0; k < response->results_size() && k < static_cast<int>(settings.size()); ++k) {
      for (const v1::Detection& d : response->results(k).images(0).detections()) {
        detections[k].push_back(ToLvisDetection(image.id, d));
      }
    }
    progress.Update(0, ++done);
  }
  progress.Finish();

  std::vector<std::pair<std::string, LvisEvalResult>> rows;
  for (size_t k = 0; k < settings.size(); ++k) {
    absl::StatusOr<LvisEvalResult> result = EvaluateLvis(*gt, detections[k]);
    if (!result.ok()) return ReportError(io, "compare", result.status());
    rows.emplace_back(settings[k].name(), *std::move(result));
  }

  std::vector<std::string> items;
  for (const auto& [name, r] : rows) {
    items.push_back(absl::StrFormat(
        "{\"setting\":%s,\"AP\":%.17g,\"AP50\":%.17g,\"AP75\":%.17g,\"APr\":%.17g,\"APc\":%.17g,"
        "\"APf\":%.17g,\"detections\":%d}",
        JsonString(name), r.ap, r.ap50, r.ap75, r.ap_rare, r.ap_common, r.ap_frequent,
        r.num_detections));
  }
  const std::string json = absl::StrCat("{\"statistics_version\":", statistics_version,
                                        ",\"images\":", gt->images.size(), ",\"settings\":[",
                                        absl::StrJoin(items, ","), "]}");
  if (!options.out_path.empty()) {
    if (absl::Status s = WriteFile(options.out_path, json + "\n"); !s.ok()) {
      return ReportError(io, "compare", s);
    }
  }
  if (options.json) {
    *io.out << json << "\n";
    return kExitOk;
  }
  auto cell = [](double v) { return v < 0 ? std::string("     -") : absl::StrFormat("%6.3f", v); };
  *io.out << absl::StrFormat("%d images, statistics version %d\n", gt->images.size(),
                             statistics_version);
  *io.out << absl::StrFormat("%-20s %6s %6s %6s %6s %6s %6s\n", "setting", "AP", "AP50", "AP75",
                             "APr", "APc", "APf");
  for (const auto& [name, r] : rows) {
    *io.out << absl::StrFormat("%-20s %s %s %s %s %s %s\n", name, cell(r.ap), cell(r.ap50),
                               cell(r.ap75), cell(r.ap_rare), cell(r.ap_common),
                               cell(r.ap_frequent));
  }
  return kExitOk;
}

// ----- info -----

int RunInfo(Client& client, const Io& io) {
  absl::StatusOr<v1::GetModelInfoResponse> info = client.GetModelInfo();
  if (!info.ok()) return ReportError(io, "info", info.status());
  *io.out << ProtoJson(*info) << "\n";
  return kExitOk;
}

// ----- health -----

int RunHealth(Client& client, const HealthOptions& options, const Io& io) {
  absl::StatusOr<ServingStatus> status = client.Health(options.service);
  if (!status.ok()) return ReportError(io, "health", status.status());
  switch (*status) {
    case ServingStatus::kServing:
      *io.out << "SERVING\n";
      return kExitOk;
    case ServingStatus::kNotServing:
      *io.out << "NOT_SERVING\n";
      break;
    case ServingStatus::kServiceUnknown:
      *io.out << "SERVICE_UNKNOWN\n";
      break;
    default:
      *io.out << "UNKNOWN\n";
  }
  return kExitError;
}

}  // namespace logn::cli
