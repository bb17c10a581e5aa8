// logn apply: calibrates a logits file through CalibrationService.Apply, a batch at a time.

#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/logits_file.h"
#include "client/cli/output.h"
#include "client/lib/calibration_jobs.h"

namespace logn::cli {
namespace {

void AppendFloats(const v1::LogitBatch& batch, std::vector<float>* out) {
  const size_t old = out->size();
  out->resize(old + batch.data().size() / sizeof(float));
  std::memcpy(out->data() + old, batch.data().data(), batch.data().size());
}

// The calibrated logits (and scores when asked) of the whole file, and the statistics version
// the server used.
struct Applied {
  std::vector<float> logits;
  std::vector<float> scores;
  int64_t version = 0;
};

absl::Status ApplyAll(Client& client, const ApplyOptions& options, LogitsReader& reader,
                      Applied* applied) {
  const int64_t rows_per_batch =
      options.rows_per_batch > 0 ? options.rows_per_batch : DefaultRowsPerBatch(reader.width());
  applied->logits.reserve(reader.rows() * reader.width());
  std::vector<float> values;
  while (true) {
    absl::StatusOr<int64_t> n = reader.Read(rows_per_batch, &values);
    if (!n.ok()) return n.status();
    if (*n == 0) return absl::OkStatus();
    v1::ApplyRequest request;
    SetModel(options.model, &request);
    SetSelector(options.selector, &request);
    *request.mutable_calibration() = options.setting;
    request.set_include_scores(!options.scores_path.empty());
    request.mutable_logits()->set_rows(*n);
    request.mutable_logits()->set_width(reader.width());
    request.mutable_logits()->set_data(values.data(), values.size() * sizeof(float));
    absl::StatusOr<v1::ApplyResponse> response = client.Apply(request);
    if (!response.ok()) return response.status();
    applied->version = response->version();
    AppendFloats(response->logits(), &applied->logits);
    if (!options.scores_path.empty()) AppendFloats(response->scores(), &applied->scores);
  }
}

ApplyOptions ParseApplyOptions(const Args& args) {
  ApplyOptions o;
  o.logits_path = args.Required("--logits");
  o.out_path = args.Required("--out");
  o.scores_path = args.Get("--scores-out");
  if (!IsNpyPath(o.logits_path) && !args.Has("--width")) {
    args.Fail("raw logits file needs --width (or use a .npy file)");
  }
  o.width = static_cast<int32_t>(args.Int("--width", 0, 1, 1 << 20));
  o.rows_per_batch = args.Int("--batch-rows", 0, 1, int64_t{1} << 30);
  o.model = ReadModel(args);
  o.selector = ReadSelector(args);
  o.setting = ReadMethod(args);
  return o;
}

int RunApply(Client& client, const ApplyOptions& options, const Io& io) {
  absl::StatusOr<std::unique_ptr<LogitsReader>> reader =
      LogitsReader::Open(options.logits_path, options.width);
  if (!reader.ok()) return ReportError(io, "apply", reader.status());
  Applied applied;
  absl::Status status = ApplyAll(client, options, **reader, &applied);
  const int64_t rows = (*reader)->rows();
  const int32_t width = (*reader)->width();
  if (status.ok()) status = WriteLogitsFile(options.out_path, applied.logits.data(), rows, width);
  if (status.ok() && !options.scores_path.empty()) {
    status = WriteLogitsFile(options.scores_path, applied.scores.data(), rows, width);
  }
  if (!status.ok()) return ReportError(io, "apply", status);
  *io.out << absl::StrFormat("calibrated %d rows x %d with %s (statistics version %d) -> %s\n",
                             rows, width, SettingName(options.setting), applied.version,
                             options.out_path);
  return kExitOk;
}

}  // namespace

Command ApplyCommand() {
  return {"apply",
          "calibrate a logits file through the service",
          absl::StrCat(
              R"(usage: logn apply --server ADDR --logits FILE --out FILE [flags]

Calibrates logits with a stored statistics version and writes them back in the
input's format (.npy when the output path ends in .npy, raw float32 otherwise).
  --logits FILE          .npy float32 2-D, or raw float32 with --width
  --width N              columns per row of a raw file
  --out FILE             calibrated logits
  --scores-out FILE      also write the softmax scores
  --batch-rows N         rows per request (default: ~4 MiB)
)",
              ModelGroup().help, SelectorGroup().help, MethodGroup().help, "\n",
              ConnectionGroup().help),
          FlagSpec{{"--logits", "--width", "--out", "--scores-out", "--batch-rows"}, {}}.Add(
              {&ModelGroup(), &SelectorGroup(), &MethodGroup()}),
          ParseInto(&ParseApplyOptions),
          RunWithClient(&RunApply)};
}

}  // namespace logn::cli
