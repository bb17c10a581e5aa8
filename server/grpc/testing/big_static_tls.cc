// A shared library with 120 KiB of initial-exec (static) TLS, as LibTorch (50 KiB) and a threaded
// OpenBLAS (64 KiB) carry together. Linked into metrics_http_test, it makes glibc refuse any
// thread whose stack is smaller than that, which is what broke prometheus::Exposer's civetweb
// threads (fixed 100 KiB stacks) next to an optimised BLAS.
namespace logn_testing {
__attribute__((tls_model("initial-exec"))) thread_local char big_static_tls[120 * 1024];
// Touches the block so the linker keeps it.
char* BigStaticTls() { return big_static_tls; }
}  // namespace logn_testing
