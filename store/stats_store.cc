#include "store/stats_store.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "store/postgres_stats_store.h"
#include "store/sqlite_stats_store.h"

namespace logn {
namespace {

constexpr size_t kMaxModelNameBytes = 256;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::Status ModelKey::Validate() const {
  if (name.empty() || name.size() > kMaxModelNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model name must be 1..", kMaxModelNameBytes,
                                                   " bytes, got ", name.size()));
  }
  if (sha256.size() != 64 || !IsLowerHex(sha256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model sha256 for '", name,
                     "' must be 64 lowercase hex digits (sha256sum of the TorchScript file), got '",
                     sha256, "'"));
  }
  return absl::OkStatus();
}

std::string ModelKey::DebugString() const {
  return absl::StrCat(name, "@", sha256.substr(0, 12));
}

absl::string_view VersionSourceName(VersionSource source) {
  switch (source) {
    case VersionSource::kLogits: return "logits";
    case VersionSource::kImages: return "images";
    case VersionSource::kMerge: return "merge";
    case VersionSource::kImport: return "import";
  }
  return "unknown";
}

absl::Status ParseVersionSource(absl::string_view text, VersionSource* out) {
  for (VersionSource s : {VersionSource::kLogits, VersionSource::kImages, VersionSource::kMerge,
                          VersionSource::kImport}) {
    if (text == VersionSourceName(s)) {
      *out = s;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown version source '", text, "': expected logits, images, merge or import"));
}

absl::Status ValidateAliasName(absl::string_view alias) {
  bool ok = !alias.empty() && alias.size() <= 63 && alias[0] >= 'a' && alias[0] <= 'z';
  for (char c : alias) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alias '", alias, "' is malformed: use 1..63 of [a-z0-9_-], starting with a letter"));
  }
  return absl::OkStatus();
}

absl::StatusOr<VersionSelector> VersionSelector::Parse(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError("empty version selector: give a number or an alias");
  }
  if (absl::ascii_isdigit(text[0]) || text[0] == '-') {
    int64_t v = 0;
    if (!absl::SimpleAtoi(text, &v) || v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version selector '", text, "' is not a positive version number"));
    }
    return Number(v);
  }
  LOGN_RETURN_IF_ERROR(ValidateAliasName(text));
  return Alias(text);
}

std::string VersionSelector::DebugString() const {
  return version > 0 ? absl::StrCat("version ", version) : absl::StrCat("alias '", alias, "'");
}

absl::StatusOr<std::unique_ptr<StatsStore>> OpenStatsStore(absl::string_view url,
                                                           const StatsStoreOptions& options) {
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "sqlite://")) {
    // sqlite:///abs/path: an empty authority, then an absolute path.
    if (rest.empty() || rest[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad store URL '", url,
          "': a SQLite URL is sqlite:///absolute/path.db (three slashes, absolute path)"));
    }
    if (rest.size() < 2 || rest.back() == '/' || absl::StrContains(rest, '?')) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad store URL '", url, "': expected sqlite:///absolute/path.db naming a file"));
    }
    return OpenSqliteStatsStore(std::string(rest), options);
  }
  if (absl::StartsWith(url, "postgres://") || absl::StartsWith(url, "postgresql://")) {
    absl::string_view body = url.substr(url.find("://") + 3);
    const size_t slash = body.find('/');
    absl::string_view authority = body.substr(0, slash);
    absl::string_view db = slash == absl::string_view::npos ? "" : body.substr(slash + 1);
    db = db.substr(0, db.find('?'));
    const size_t at = authority.rfind('@');
    absl::string_view hostport = at == absl::string_view::npos ? authority : authority.substr(at + 1);
    if (hostport.empty() || hostport[0] == ':' || db.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad store URL '", url, "': expected postgres://user:password@host:port/database"));
    }
    const size_t colon = hostport.rfind(':');
    if (colon != absl::string_view::npos && hostport.find(']') == absl::string_view::npos) {
      int port = 0;
      if (!absl::SimpleAtoi(hostport.substr(colon + 1), &port) || port <= 0 || port > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad store URL '", url, "': port '", hostport.substr(colon + 1),
                         "' is not a number in 1..65535"));
      }
    }
    return OpenPostgresStatsStore(std::string(url), options);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "bad store URL '", url,
      "': expected sqlite:///absolute/path.db or postgres://user:password@host:port/database"));
}

}  // namespace logn
