//! The process allocator: jemalloc, with the options compiled into it by `.cargo/config.toml`
//! (one arena). Declared in the library rather than in `main.rs` so that every binary built on
//! it (the daemon, the cycle bench, the tests) runs on the allocator the daemon ships with, and
//! the bench measures what runs.
//!
//! Why: a cycle makes and frees hundreds of thousands of small blocks (the Redis driver's
//! replies, the rows, the snapshot's strings); with glibc's malloc they were a fifth of the Redis
//! read's instructions, and glibc's per-thread arenas held the L cycle's peak RSS at ~100–125 MB
//! for ~42 MB of live heap (massif; benches/RESULTS.md, "Issue 15, sixth stop"). jemalloc
//! rather than mimalloc: mimalloc cut as many instructions but raised that peak by ~40 MB, past
//! the 120 MB target.
//!
//! This module owns nothing else; it must not tune the allocator at run time.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(test)]
mod tests {
    /// The build's default options reached jemalloc (a build without `.cargo/config.toml`, for
    /// instance an image that does not copy it, would silently fall back to four arenas per core
    /// and ~40 MB more peak RSS at L).
    #[test]
    fn jemalloc_runs_with_one_arena() {
        // The reader hands back the C string with its terminating NUL.
        let compiled_in = tikv_jemalloc_ctl::config::malloc_conf::read()
            .unwrap_or_default()
            .trim_end_matches('\0');
        assert!(
            compiled_in.split(',').any(|opt| opt == "narenas:1"),
            "jemalloc was built without narenas:1 (got {compiled_in:?}): build from the \
             repository root so that .cargo/config.toml applies"
        );
        // `_RJEM_MALLOC_CONF` could override it at run time; the test environment does not.
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().ok(), Some(1));
    }
}
