//! The `stephost` binary. All logic lives in the library.

// mimalloc instead of glibc's allocator: the server allocates small,
// short-lived buffers (JSON documents, HTTP bodies) from many threads, where
// glibc's arenas showed up as the largest single cost in profiles of the
// throughput benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stephost::cli::main()
}
