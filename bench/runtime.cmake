# Detector runtime benchmarks (figures for docs/model-contract.md). Included by bench/CMakeLists.txt.
if(NOT TARGET logn::runtime)
  return()
endif()

# Models for BM_Detect, generated on demand (not part of the default build):
#   ninja -C build runtime_bench_models runtime_bench
set(RUNTIME_BENCH_MODELS ${CMAKE_CURRENT_BINARY_DIR}/runtime_models)
if(NOT DEFINED LOGN_PYTHON)
  set(LOGN_PYTHON /usr/bin/python3)
endif()
add_custom_target(runtime_bench_models
  COMMAND ${LOGN_PYTHON} ${PROJECT_SOURCE_DIR}/tools/make_contract_models.py
          --out-dir ${RUNTIME_BENCH_MODELS}/contract
  COMMAND ${LOGN_PYTHON} ${PROJECT_SOURCE_DIR}/tools/export_torchvision.py
          --arch fasterrcnn_mobilenet_v3_large_320_fpn --num-classes 8 --seed 0
          --out ${RUNTIME_BENCH_MODELS}/torchvision/frcnn.pt
  COMMENT "Generating runtime benchmark models in ${RUNTIME_BENCH_MODELS}"
  VERBATIM)

execute_process(
  COMMAND ${LOGN_PYTHON} -c
    "import glob, os, torchvision; print(glob.glob(os.path.join(os.path.dirname(torchvision.__file__), '_C*.so'))[0])"
  OUTPUT_VARIABLE runtime_bench_tv_ops OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)

add_executable(runtime_bench runtime_bench.cc)
target_link_libraries(runtime_bench PRIVATE
  logn::runtime logn::postprocess logn::image logn::calibration benchmark::benchmark absl::time)
target_compile_definitions(runtime_bench PRIVATE
  LOGN_BENCH_MODELS_DEFAULT="${RUNTIME_BENCH_MODELS}"
  LOGN_TORCHVISION_OPS="${runtime_bench_tv_ops}")
