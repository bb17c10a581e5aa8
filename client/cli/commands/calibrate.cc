// logn calibrate: streams a dataset's images (with ground truth) or a logits file through one
// Calibrate stream and commits a statistics version. Shards and resumed jobs follow
// client/lib/calibration_jobs.h.

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/logits_file.h"
#include "client/cli/output.h"
#include "client/cli/progress.h"
#include "client/eval/lvis_dataset.h"
#include "client/eval/repeat_factors.h"
#include "client/lib/calibration_jobs.h"

namespace logn::cli {
namespace {

namespace fs = std::filesystem;

// The job's input, opened before the stream so that a bad file costs no server job.
struct CalibrationInput {
  // From a dataset: its images in file order, and each image's annotations.
  LvisDataset dataset;
  absl::flat_hash_map<int64_t, std::vector<const LvisAnnotation*>> annotations;
  // With --rfs-threshold: each image's repeat factor, sent as its weight.
  absl::flat_hash_map<int64_t, double> repeat_factors;
  // From a logits file.
  std::unique_ptr<LogitsReader> reader;
  int64_t total = 0;  // images or rows
  int64_t per_batch = 0;
};

absl::StatusOr<std::unique_ptr<CalibrationInput>> OpenInput(const CalibrateOptions& options) {
  auto input = std::make_unique<CalibrationInput>();
  if (!options.dataset_path.empty()) {
    absl::StatusOr<LvisDataset> read = ReadLvisDataset(options.dataset_path);
    if (!read.ok()) return read.status();
    input->dataset = *std::move(read);
    for (const LvisAnnotation& a : input->dataset.annotations) {
      input->annotations[a.image_id].push_back(&a);
    }
    input->total = static_cast<int64_t>(input->dataset.images.size());
    input->per_batch = options.images_per_batch;
    if (options.rfs_threshold > 0) {
      absl::StatusOr<absl::flat_hash_map<int64_t, double>> factors =
          RepeatFactors(input->dataset, options.rfs_threshold);
      if (!factors.ok()) return factors.status();
      input->repeat_factors = *std::move(factors);
    }
    return input;
  }
  absl::StatusOr<std::unique_ptr<LogitsReader>> opened =
      LogitsReader::Open(options.logits_path, options.width);
  if (!opened.ok()) return opened.status();
  input->reader = *std::move(opened);
  input->total = input->reader->rows();
  input->per_batch = options.rows_per_batch > 0 ? options.rows_per_batch
                                                : DefaultRowsPerBatch(input->reader->width());
  return input;
}

v1::CalibrateHeader HeaderFor(const CalibrateOptions& options) {
  v1::CalibrateHeader header;
  SetModel(options.model, &header);
  header.set_source(options.dataset_path.empty() ? v1::VERSION_SOURCE_LOGITS
                                                 : v1::VERSION_SOURCE_IMAGES);
  header.set_description(options.description);
  header.set_activate(options.activate);
  header.set_job_id(options.job_id);
  header.set_partial(options.partial);
  header.set_checkpoint_every_batches(options.checkpoint_every);
  if (options.ema_momentum.has_value()) {
    header.mutable_ema()->set_momentum(*options.ema_momentum);
    if (options.ema_init.has_value()) *header.mutable_ema()->mutable_init() = *options.ema_init;
    header.mutable_ema()->set_from_prior(options.ema_from_prior);
  } else {
    header.mutable_exact();
  }
  *header.mutable_sampler() = options.sampler;
  header.set_rfs_threshold(options.rfs_threshold);
  return header;
}

// --resume: where the job continues, said on stderr.
absl::StatusOr<ResumePoint> Resume(Client& client, v1::CalibrateHeader* header, const Io& io) {
  absl::StatusOr<ResumePoint> resume = PrepareResume(client, header);
  if (!resume.ok()) return resume.status();
  if (resume->checkpoint.has_value()) {
    *io.err << "calibrate: resuming job '" << header->job_id() << "' after batch "
            << resume->first_batch << " (" << resume->checkpoint->rows_seen() << " rows, "
            << resume->checkpoint->images_seen() << " images)\n";
  } else {
    *io.err << "calibrate: job '" << header->job_id()
            << "' has no checkpoint: starting from the beginning\n";
  }
  return resume;
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

// The dataset's images [begin, end) with their ground truth.
absl::StatusOr<v1::ImageBatch> BuildImageBatch(const CalibrateOptions& options,
                                               const CalibrationInput& input, int64_t begin,
                                               int64_t end) {
  v1::ImageBatch batch;
  for (int64_t i = begin; i < end; ++i) {
    const LvisImage& image = input.dataset.images[static_cast<size_t>(i)];
    if (image.file_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.dataset_path, ": image ", image.id, " has no file_name"));
    }
    absl::StatusOr<std::string> bytes =
        ReadFileToString((fs::path(options.images_dir) / image.file_name).string());
    if (!bytes.ok()) return bytes.status();
    v1::AnnotatedImage* annotated = batch.add_annotated_images();
    annotated->mutable_image()->set_encoded(*std::move(bytes));
    annotated->mutable_image()->set_image_id(absl::StrCat(image.id));
    if (auto factor = input.repeat_factors.find(image.id); factor != input.repeat_factors.end()) {
      annotated->set_weight(factor->second);
    }
    auto it = input.annotations.find(image.id);
    if (it == input.annotations.end()) continue;
    for (const LvisAnnotation* a : it->second) {
      *annotated->mutable_ground_truth()->add_boxes() = ToProtoBox(a->bbox);
      annotated->mutable_ground_truth()->add_category_ids(static_cast<int32_t>(a->category_id));
    }
  }
  return batch;
}

absl::Status SendImages(const CalibrateOptions& options, const CalibrationInput& input,
                        const ItemRange& range, CalibrationWriter& writer,
                        ProgressReporter& progress) {
  for (int64_t begin = range.begin; begin < range.end; begin += input.per_batch) {
    const int64_t end = std::min(range.end, begin + input.per_batch);
    absl::StatusOr<v1::ImageBatch> batch = BuildImageBatch(options, input, begin, end);
    if (!batch.ok()) return batch.status();
    if (absl::Status s = writer.WriteImages(*batch); !s.ok()) return s;
    progress.Update(0, end - range.begin);
  }
  return absl::OkStatus();
}

// The file's rows [range.begin, range.end); the reader is positioned at range.begin.
absl::Status SendLogits(const CalibrationInput& input, const ItemRange& range,
                        CalibrationWriter& writer, ProgressReporter& progress) {
  LogitsReader& reader = *input.reader;
  std::vector<float> values;
  while (reader.rows_read() < range.end) {
    absl::StatusOr<int64_t> n =
        reader.Read(std::min(input.per_batch, range.end - reader.rows_read()), &values);
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    if (absl::Status s = writer.WriteLogits(values.data(), *n, reader.width()); !s.ok()) return s;
    progress.Update(reader.rows_read() - range.begin, 0);
  }
  return absl::OkStatus();
}

// Streams `range` of the input on one Calibrate stream (cancelled on error) and commits it.
absl::StatusOr<v1::CalibrateResponse> Stream(Client& client, const v1::CalibrateHeader& header,
                                             const CalibrateOptions& options,
                                             const CalibrationInput& input, const ItemRange& range,
                                             const Io& io) {
  ProgressOptions progress_options;
  progress_options.terminal = io.terminal;
  progress_options.interval = options.progress_interval;
  progress_options.rows_known = input.reader != nullptr;
  if (input.reader) {
    progress_options.total_rows = range.size();
  } else {
    progress_options.total_images = range.size();
  }
  absl::StatusOr<std::unique_ptr<CalibrationWriter>> writer = client.Calibrate(header);
  if (!writer.ok()) return writer.status();
  // Progress goes to stdout's terminal when there is one, else to stderr as plain lines.
  ProgressReporter progress(io.terminal ? io.out : io.err, progress_options);
  absl::Status sent = input.reader ? SendLogits(input, range, **writer, progress)
                                   : SendImages(options, input, range, **writer, progress);
  if (!sent.ok()) {
    (*writer)->Cancel();
    return sent;
  }
  absl::StatusOr<v1::CalibrateResponse> response = (*writer)->Commit();
  if (!response.ok()) return response.status();
  progress.Update(response->rows_seen(), response->images_seen());
  progress.Finish();
  return response;
}

// The input's part this run sends: the shard, less what a resumed job already holds.
absl::StatusOr<ItemRange> RangeToSend(Client& client, const CalibrateOptions& options,
                                      const CalibrationInput& input, v1::CalibrateHeader* header,
                                      const Io& io) {
  absl::StatusOr<ItemRange> shard = ShardRange(
      input.total, options.shard_index, options.shard_count, input.reader ? "rows" : "images");
  if (!shard.ok()) return shard.status();
  ResumePoint resume;
  if (options.resume) {
    absl::StatusOr<ResumePoint> resumed = Resume(client, header, io);
    if (!resumed.ok()) return resumed.status();
    resume = *std::move(resumed);
  }
  absl::StatusOr<ItemRange> range = RemainingItems(*shard, input.per_batch, resume, options.job_id);
  if (range.ok() && input.reader) {
    if (absl::Status s = input.reader->Skip(range->begin); !s.ok()) return s;
  }
  return range;
}

// The input flags: a dataset with its images, or a logits file.
void ParseInput(const Args& args, CalibrateOptions& o) {
  o.dataset_path = args.Get("--dataset");
  o.images_dir = args.Get("--images");
  o.logits_path = args.Get("--logits");
  if (o.dataset_path.empty() == o.logits_path.empty()) {
    args.Fail("give exactly one of --dataset or --logits");
  }
  if (!o.dataset_path.empty() && o.images_dir.empty()) args.Fail("--dataset needs --images DIR");
  if (o.dataset_path.empty() && !o.images_dir.empty()) {
    args.Fail("--images only applies with --dataset");
  }
  if (!o.logits_path.empty() && !IsNpyPath(o.logits_path) && !args.Has("--width")) {
    args.Fail("raw logits file needs --width (or use a .npy file)");
  }
  o.width = static_cast<int32_t>(args.Int("--width", 0, 1, 1 << 20));
  if (args.Has("--rfs-threshold")) {
    if (o.dataset_path.empty()) args.Fail("--rfs-threshold needs --dataset (its annotations)");
    o.rfs_threshold = args.Double("--rfs-threshold", 0, 0, 1);
    if (o.rfs_threshold <= 0) args.Fail("--rfs-threshold must be in (0, 1], e.g. 0.001 (LVIS)");
  }
  if (args.Has("--num-rois")) {
    o.sampler.set_num_rois(static_cast<int32_t>(args.Int("--num-rois", 512, 1, 1 << 20)));
  }
  if (args.Has("--positive-fraction")) {
    o.sampler.set_positive_fraction(args.Double("--positive-fraction", 0.25, 0, 1));
  }
  if (args.Has("--roi-source")) {
    const std::string from = args.Get("--roi-source");
    if (from == "proposals") {
      o.sampler.set_from(v1::ROI_SOURCE_PROPOSALS);
    } else if (from == "candidates") {
      o.sampler.set_from(v1::ROI_SOURCE_CANDIDATES);
    } else {
      args.Fail("--roi-source takes proposals or candidates, got '" + from + "'");
    }
  }
  if (args.Has("--positive-iou")) {
    const double iou = args.Double("--positive-iou", 0.5, 0, 1);
    if (iou <= 0) args.Fail("--positive-iou must be in (0, 1]");
    o.sampler.set_positive_iou(static_cast<float>(iou));
  }
  o.images_per_batch = static_cast<int>(args.Int("--batch-images", 8, 1, 4096));
  o.rows_per_batch = args.Int("--batch-rows", 0, 1, int64_t{1} << 30);
}

// --shard I/N.
void ParseShard(const Args& args, CalibrateOptions& o) {
  if (!args.Has("--shard")) return;
  const std::vector<std::string> parts = absl::StrSplit(args.Get("--shard"), '/');
  int i = -1, n = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &i) || !absl::SimpleAtoi(parts[1], &n) ||
      n < 1 || i < 0 || i >= n) {
    args.Fail("--shard takes I/N with 0 <= I < N, got '" + args.Get("--shard") + "'");
  }
  o.shard_index = i;
  o.shard_count = n;
}

// How the job accumulates and commits: EMA, activation, job id, shard, partial, checkpoints.
void ParseJob(const Args& args, CalibrateOptions& o) {
  o.activate = args.Has("--activate");
  if (args.Has("--ema")) {
    const double m = args.Double("--ema", 0, 0, 1);
    if (m <= 0) args.Fail("--ema momentum must be in (0, 1]");
    o.ema_momentum = m;
  }
  if (args.Has("--ema-init")) {
    if (!o.ema_momentum) args.Fail("--ema-init only applies with --ema");
    o.ema_init = ParseSelectorText(args, args.Get("--ema-init"));
  }
  // Whether the EMA has a start (exactly one of the two) is the server's rule to tell.
  o.ema_from_prior = args.Has("--ema-from-prior");
  if (o.ema_from_prior && !o.ema_momentum) args.Fail("--ema-from-prior only applies with --ema");
  o.description = args.Get("--description");
  o.job_id = args.Get("--job-id");
  ParseShard(args, o);
  o.partial = args.Has("--partial");
  if (o.partial && o.activate) args.Fail("--partial versions cannot be --activate'd");
  if (args.Has("--checkpoint-every")) {
    // 0 on the command line means never; the server's default is what omitting the flag gets.
    const int64_t every = args.Int("--checkpoint-every", 0, 0, 1 << 30);
    o.checkpoint_every = every == 0 ? -1 : static_cast<int32_t>(every);
  }
  o.resume = args.Has("--resume");
  if ((o.resume || args.Has("--checkpoint-every")) && o.job_id.empty()) {
    args.Fail("--resume and --checkpoint-every need --job-id");
  }
}

CalibrateOptions ParseCalibrateOptions(const Args& args) {
  CalibrateOptions o;
  o.model = ReadModel(args);
  ParseInput(args, o);
  ParseJob(args, o);
  o.json = args.Has("--json");
  o.progress_interval = absl::Seconds(args.Double("--progress-interval", 2, 0, 86400));
  return o;
}

// The sampler caps positives at the requested fraction; more means negatives ran out (too few
// proposals or candidates), so the statistics lean towards objects, unlike training's.
void WarnAboutSampling(const v1::RoiSampling& sampling, const Io& io) {
  if (sampling.rois() <= 0 || sampling.images() <= 0 ||
      (sampling.roi_source() != v1::ROI_SOURCE_PROPOSALS &&
       sampling.roi_source() != v1::ROI_SOURCE_CANDIDATES)) {
    return;
  }
  const double achieved =
      static_cast<double>(sampling.positive_rois()) / static_cast<double>(sampling.rois());
  const double per_image =
      static_cast<double>(sampling.rois()) / static_cast<double>(sampling.images());
  *io.err << absl::StrFormat(
      "calibrate: %s: %.0f RoIs per image (requested %d), %.1f%% positives (at most %.1f%%)\n",
      sampling.roi_source() == v1::ROI_SOURCE_PROPOSALS ? "RoIs sampled from proposals"
                                                        : "RoIs sampled from output candidates",
      per_image, sampling.num_rois(), 100 * achieved, 100 * sampling.positive_fraction());
  if (achieved > sampling.positive_fraction() + 0.01) {
    *io.err << absl::StrFormat(
        "calibrate: warning: %.1f%% of the RoIs are positives, above the requested %.1f%%: "
        "the images ran out of negatives, so these statistics lean towards objects and do not "
        "describe what the classifier saw in training%s\n",
        100 * achieved, 100 * sampling.positive_fraction(),
        sampling.roi_source() == v1::ROI_SOURCE_CANDIDATES
            ? " (sampled from output candidates: a model that exports proposals samples as "
              "training does, docs/model-contract.md)"
            : "");
  } else if (sampling.roi_source() == v1::ROI_SOURCE_CANDIDATES) {
    *io.err << "calibrate: warning: RoIs were sampled from the model's output candidates, an "
               "approximation of training's sampling from proposals (docs/model-contract.md)\n";
  }
}

int RunCalibrate(Client& client, const CalibrateOptions& options, const Io& io) {
  absl::StatusOr<std::unique_ptr<CalibrationInput>> input = OpenInput(options);
  if (!input.ok()) return ReportError(io, "calibrate", input.status());
  v1::CalibrateHeader header = HeaderFor(options);
  absl::StatusOr<ItemRange> range = RangeToSend(client, options, **input, &header, io);
  if (!range.ok()) return ReportError(io, "calibrate", range.status());
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::CalibrateResponse> response =
      Stream(client, header, options, **input, *range, io);
  if (!response.ok()) return ReportError(io, "calibrate", response.status());
  WarnAboutSampling(response->statistics_version().sampling(), io);
  if (options.json) {
    *io.out << ProtoJson(*response) << "\n";
  } else {
    *io.out << absl::StrFormat(
        "committed version %d: %d rows, %d images, %d batches in %s%s%s\n",
        response->statistics_version().version(), response->rows_seen(), response->images_seen(),
        response->batches_seen(), FormatSeconds(absl::Now() - start),
        options.partial ? " (partial)" : "", options.activate ? " (active)" : "");
    if (options.ema_momentum.has_value()) {
      *io.out << absl::StrFormat(
          "EMA: the starting statistics (%s) still carry %.1f%% of the weight\n",
          options.ema_from_prior ? "mean 0 / variance 1" : "--ema-init",
          100 * response->ema_start_weight());
    }
  }
  return kExitOk;
}

}  // namespace

Command CalibrateCommand() {
  return {
      "calibrate",
      "compute a new LogN statistics version from a dataset or logits",
      absl::StrCat(
          R"(usage: logn calibrate --server ADDR (--dataset TRAIN.json --images DIR | --logits FILE)
                      [flags]

Streams a training set through the service and commits one new statistics version.
  --dataset FILE         LVIS/COCO-format training annotations; images are sent with
                         their ground-truth boxes and category ids
  --images DIR           directory holding the dataset's file_name entries
  --batch-images N       images per ImageBatch message (default 8)
  --logits FILE          precomputed logits: .npy float32 2-D, or raw float32
  --width N              columns per row of a raw logits file (C+1)
  --batch-rows N         rows per LogitBatch message (default: ~4 MiB)
  --ema MOMENTUM         exponential moving average in (0, 1] instead of exact
  --ema-init VERSION     start the EMA from this version or alias (e.g. an imported
                         checkpoint's running statistics)
  --ema-from-prior       start the EMA from mean 0 / variance 1 instead (BatchNorm's
                         start; at the official momentum 5e-5 a pass of a few hundred
                         batches leaves ~98 % of the weight on it)
  --rfs-threshold T      weigh each image by its repeat factor (repeat-factor
                         sampling, LVIS: T = 0.001), from --dataset's annotations
  --num-rois N           RoIs sampled per image (default 512)
  --positive-fraction F  at most this fraction of them positive (default 0.25)
  --positive-iou F       IoU with a ground-truth box that makes a RoI positive (0.5)
  --roi-source S         sample RoIs from `proposals` (the RPN's, as training does;
                         the default when the model exports them) or `candidates`
                         (the model's outputs: the fallback, to compare the two)
  --activate             point "active" at the new version on commit
  --description TEXT     stored with the version
  --job-id ID            recorded in the version's provenance; with it the server
                         checkpoints the job so that --resume can continue it
  --shard I/N            send only the I-th (0-based) of N contiguous slices of the
                         images (file order) or rows, e.g. one per replica
  --partial              commit a partial version, to merge with `logn stats merge`
  --checkpoint-every N   checkpoint every N batches (default: the server's; 0 never)
  --resume               continue --job-id from its last checkpoint, on any replica
                         sharing the store (same input, shard and batch size)
  --json                 print the CalibrateResponse as JSON
  --progress-interval S  seconds between plain progress lines (default 2)

Progress (rows/s, images/s, ETA) is a bar when stdout is a terminal, periodic lines
on stderr otherwise.
)",
          ModelGroup().help, "\n", ConnectionGroup().help),
      FlagSpec{{"--dataset", "--images", "--batch-images", "--logits", "--width", "--batch-rows",
                "--ema", "--ema-init", "--description", "--job-id", "--progress-interval",
                "--shard", "--checkpoint-every", "--rfs-threshold", "--num-rois",
                "--positive-fraction", "--positive-iou", "--roi-source"},
               {"--activate", "--json", "--partial", "--resume", "--ema-from-prior"}}
          .Add({&ModelGroup()}),
      ParseInto(&ParseCalibrateOptions),
      RunWithClient(&RunCalibrate)};
}

}  // namespace logn::cli
