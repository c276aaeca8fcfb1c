# Small helpers modelled on abseil's absl_cc_library / absl_cc_test.

# qsig_cc_library(NAME <dir> SRCS ... [DEPS public...] [PRIVATE_DEPS ...])
# Creates qsig_<NAME> with alias qsig::<NAME>; <dir>/include is public, <dir>/src private.
function(qsig_cc_library)
  cmake_parse_arguments(Q "" "NAME" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(qsig_${Q_NAME} STATIC ${Q_SRCS})
  add_library(qsig::${Q_NAME} ALIAS qsig_${Q_NAME})
  target_include_directories(qsig_${Q_NAME}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(qsig_${Q_NAME} PUBLIC ${Q_DEPS} PRIVATE ${Q_PRIVATE_DEPS})
  target_compile_options(qsig_${Q_NAME} PRIVATE ${QSIG_WARNINGS})
endfunction()

# qsig_cc_test(NAME <name> SRCS ... DEPS ... [LABELS unit|simd|integration|slow]
#              [ENVIRONMENT VAR=value ...])
# One GoogleTest binary, discovered by ctest at test time, labelled, run with ENVIRONMENT.
function(qsig_cc_test)
  cmake_parse_arguments(Q "" "NAME" "SRCS;DEPS;LABELS;ENVIRONMENT" ${ARGN})
  if(NOT Q_LABELS)
    set(Q_LABELS unit)
  endif()
  add_executable(${Q_NAME} ${Q_SRCS})
  target_link_libraries(${Q_NAME} PRIVATE ${Q_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_options(${Q_NAME} PRIVATE ${QSIG_WARNINGS})
  set(_props LABELS "${Q_LABELS}")
  if(Q_ENVIRONMENT)
    list(APPEND _props ENVIRONMENT "${Q_ENVIRONMENT}")
  endif()
  gtest_discover_tests(${Q_NAME}
    DISCOVERY_MODE PRE_TEST
    # Listing a binary that links LibTorch/ONNX reads ~1 GB of shared objects; on a cold page
    # cache (CI's first run) that alone exceeds CMake's 5 s default.
    DISCOVERY_TIMEOUT 300
    PROPERTIES ${_props})
endfunction()

# qsig_cc_bench(NAME <name> SRCS ... DEPS ...)
function(qsig_cc_bench)
  cmake_parse_arguments(Q "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${Q_NAME} ${Q_SRCS})
  target_link_libraries(${Q_NAME} PRIVATE ${Q_DEPS} benchmark::benchmark)
  target_compile_options(${Q_NAME} PRIVATE ${QSIG_WARNINGS})
endfunction()
