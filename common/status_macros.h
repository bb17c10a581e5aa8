#ifndef LOGN_COMMON_STATUS_MACROS_H_
#define LOGN_COMMON_STATUS_MACROS_H_

// Debian bookworm's Abseil does not ship RETURN_IF_ERROR / ASSIGN_OR_RETURN, so we keep our own.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LOGN_STATUS_CONCAT_INNER_(a, b) a##b
#define LOGN_STATUS_CONCAT_(a, b) LOGN_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define LOGN_RETURN_IF_ERROR(expr)                              \
  do {                                                          \
    ::absl::Status logn_status_ = (expr);                       \
    if (!logn_status_.ok()) return logn_status_;                \
  } while (false)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its status from the enclosing function.
#define LOGN_ASSIGN_OR_RETURN(lhs, expr)                                              \
  LOGN_ASSIGN_OR_RETURN_IMPL_(LOGN_STATUS_CONCAT_(logn_statusor_, __LINE__), lhs, expr)
#define LOGN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // LOGN_COMMON_STATUS_MACROS_H_
