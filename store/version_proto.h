#ifndef LOGN_STORE_VERSION_PROTO_H_
#define LOGN_STORE_VERSION_PROTO_H_

// The store's types as logn.v1 messages: the one VersionSource and RoiSource converter of the
// tree, and the one writer of the version resource (logn.v1.StatisticsVersion) that both the
// RPC responses and the export files are built from.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logn/v1/store.pb.h"
#include "store/stats_store.h"

namespace logn {

v1::VersionSource VersionSourceToProto(VersionSource source);
// INVALID_ARGUMENT for UNSPECIFIED (never a valid source) and unknown numbers:
// "source must be VERSION_SOURCE_LOGITS, _IMAGES, _MERGE or _IMPORT, got N".
absl::StatusOr<VersionSource> VersionSourceFromProto(v1::VersionSource source);

v1::RoiSource RoiSourceToProto(RoiSource source);
// UNSPECIFIED maps to kUnspecified; INVALID_ARGUMENT for numbers this build does not know.
absl::StatusOr<RoiSource> RoiSourceFromProto(v1::RoiSource source);

void RoiSamplingToProto(const RoiSamplingRecord& record, v1::RoiSampling* proto);
// The record as the message holds it, unvalidated (a file's record may name no source;
// StatsStore::Put validates what it stores). INVALID_ARGUMENT for a roi_source number this
// build does not know.
absl::StatusOr<RoiSamplingRecord> RoiSamplingFromProto(const v1::RoiSampling& proto);

// A calibration profile's stored form (CalibrationProfileRecord::profile,
// NewVersion::calibration_profile, what StatsStore::SetCalibrationProfile takes): the
// deterministic binary serialisation of `profile` with set_at cleared (the store keeps its
// own).
std::string CalibrationProfileToBytes(const v1::CalibrationProfile& profile);
// OK when `bytes` parse as a logn.v1.CalibrationProfile; INVALID_ARGUMENT otherwise. The one
// check of a profile's content the store makes (what the setting says is the server's to
// validate); StatsStore applies it with the size limit (kMaxCalibrationProfileBytes).
absl::Status CheckCalibrationProfileBytes(absl::string_view bytes);
// The profile as a message: the stored bytes parsed, set_at from the record. INVALID_ARGUMENT
// when the bytes do not parse (never for a record the store returned: it checks them on every
// write and read); `proto` then holds only set_at.
absl::Status CalibrationProfileToProto(const CalibrationProfileRecord& record,
                                       v1::CalibrationProfile* proto);

// Replaces `proto` with the basic view of the version `info` describes: `format`
// (kVersionExportFormat), every provenance field, `sampling` (set only when the version has
// a record) and `calibration_profile` (set only when it has one, set_at included);
// `statistics` and `aliases` are left empty (an export adds the statistics, a response the
// aliases and, in the full view, the statistics).
void VersionInfoToProto(const VersionInfo& info, v1::StatisticsVersion* proto);

}  // namespace logn

#endif  // LOGN_STORE_VERSION_PROTO_H_
