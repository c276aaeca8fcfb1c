// Status helpers private to qsig_models_io.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QSIG_IO_CONCAT_INNER(a, b) a##b
#define QSIG_IO_CONCAT(a, b) QSIG_IO_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define QSIG_RETURN_IF_ERROR(expr)                        \
  do {                                                    \
    if (::absl::Status qsig_st = (expr); !qsig_st.ok()) { \
      return qsig_st;                                     \
    }                                                     \
  } while (0)

// lhs = value of the StatusOr `expr`, or returns its Status.
#define QSIG_ASSIGN_OR_RETURN(lhs, expr) \
  QSIG_ASSIGN_OR_RETURN_IMPL(QSIG_IO_CONCAT(qsig_sor_, __LINE__), lhs, expr)
#define QSIG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(*tmp)
