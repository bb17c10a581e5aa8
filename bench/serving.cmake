# Serving benchmarks (issue 9 figures): gRPC vs in-process Detect, Calibrate ingest vs a raw
# byte sink. Driven by bench/serving_report.py. Included by bench/CMakeLists.txt.
if(NOT TARGET logn::grpc_service)
  return()
endif()

find_package(gRPC REQUIRED CONFIG)  # imported targets are per directory
set(SINK_OUT ${CMAKE_CURRENT_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${SINK_OUT})
add_custom_command(
  OUTPUT ${SINK_OUT}/sink.pb.cc ${SINK_OUT}/sink.pb.h ${SINK_OUT}/sink.grpc.pb.cc
         ${SINK_OUT}/sink.grpc.pb.h
  COMMAND protobuf::protoc --proto_path=${CMAKE_CURRENT_SOURCE_DIR} --cpp_out=${SINK_OUT}
          --grpc_out=${SINK_OUT} --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
          ${CMAKE_CURRENT_SOURCE_DIR}/sink.proto
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/sink.proto protobuf::protoc gRPC::grpc_cpp_plugin
  COMMENT "protoc sink.proto"
  VERBATIM)

add_executable(serving_bench serving_bench.cc ${SINK_OUT}/sink.pb.cc ${SINK_OUT}/sink.grpc.pb.cc)
target_include_directories(serving_bench PRIVATE ${SINK_OUT})
target_link_libraries(serving_bench PRIVATE
  logn::grpc_service logn::server_core logn::image absl::flags absl::flags_parse absl::random_random
  absl::time
  absl::str_format)
