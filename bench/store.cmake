# Statistics store benchmark (docs/statistics-store.md): Put / Get (cold, cached) / List latency
# p50 and p99 with 10,000 versions of a 1,204-logit model, SQLite and PostgreSQL.
if(TARGET logn::store AND TARGET logn_store_testing)
  add_executable(store_bench ${CMAKE_CURRENT_LIST_DIR}/store_bench.cc)
  target_link_libraries(store_bench PRIVATE logn::store logn_store_testing benchmark::benchmark
                        absl::str_format absl::strings absl::time)
  target_compile_definitions(store_bench PRIVATE
    LOGN_PG_SERVER_SCRIPT="${PROJECT_SOURCE_DIR}/store/testing/pg_server.sh")
endif()
