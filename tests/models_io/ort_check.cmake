# ctest models_io_onnx_export_ort (label integration): ONNX Runtime, from the npm package
# onnxruntime-node (an independent runtime), runs the QDQ models `qsig export --onnx-qdq` writes
# and OnnxExportOrt.* compares its outputs with qsig's INT8 runtime.
#   cmake -DORT_DIR=<dir> -DTEST_BIN=<model_commands_test> -P ort_check.cmake
# Installs onnxruntime-node@1.30.0 into ORT_DIR if missing, with --ignore-scripts: its install
# script would download GPU binaries; the CPU binding ships in the package. If node, npm or the
# package is unavailable, the gtest skips and says why (ctest reports the test as skipped).
set(_pkg "${ORT_DIR}/node_modules/onnxruntime-node")
find_program(_node node)
find_program(_npm npm)
if(NOT EXISTS "${_pkg}/package.json")
  if(_npm)
    message(STATUS "installing onnxruntime-node@1.30.0 into ${ORT_DIR}")
    execute_process(
      COMMAND "${_npm}" install --ignore-scripts --no-audit --no-fund --prefix "${ORT_DIR}"
        onnxruntime-node@1.30.0
      RESULT_VARIABLE _rc TIMEOUT 300)
    if(NOT _rc EQUAL 0)
      message(STATUS "npm install onnxruntime-node@1.30.0 failed (${_rc})")
    endif()
  else()
    message(STATUS "npm not found: cannot install onnxruntime-node")
  endif()
endif()
set(_dir "${ORT_DIR}")
if(_node AND EXISTS "${_pkg}/package.json")
  # The CPU binding must load (a package without the binary for this platform does not).
  execute_process(
    COMMAND "${_node}" -e "require(process.argv[1]); console.log('onnxruntime-node loads')"
      "${_pkg}"
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(STATUS "onnxruntime-node in ${ORT_DIR} does not load (${_rc}): skipping")
    set(_dir "")
  endif()
else()
  set(_dir "")
endif()
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env "QSIG_ORT_DIR=${_dir}" "${TEST_BIN}"
    "--gtest_filter=OnnxExportOrt.*"
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "OnnxExportOrt.* failed (${_rc})")
endif()
