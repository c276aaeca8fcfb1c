// The status macros every qsig library uses on its cold paths (STYLE.md "Errors"), defined once.
// Header-only; no dependency beyond absl::Status.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QSIG_STATUS_CONCAT_INNER(a, b) a##b
#define QSIG_STATUS_CONCAT(a, b) QSIG_STATUS_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define QSIG_RETURN_IF_ERROR(expr)                        \
  do {                                                    \
    if (::absl::Status qsig_st = (expr); !qsig_st.ok()) { \
      return qsig_st;                                     \
    }                                                     \
  } while (0)

// lhs = value of the StatusOr `expr`, or returns its Status. `lhs` may declare a variable
// (`QSIG_ASSIGN_OR_RETURN(Foo f, MakeFoo())`); one use per line.
#define QSIG_ASSIGN_OR_RETURN(lhs, expr) \
  QSIG_ASSIGN_OR_RETURN_IMPL(QSIG_STATUS_CONCAT(qsig_sor_, __LINE__), lhs, expr)
#define QSIG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(*tmp)
