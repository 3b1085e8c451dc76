//! Keeps the resident set near what is live.
//!
//! The engine's big allocations are buffers of 16 KiB–1 MiB (socket reads,
//! blocks on their way to disk, pieces read back to be hashed, uploads)
//! that live for milliseconds. glibc serves
//! allocations above its mmap threshold with their own mapping and gives the
//! memory back on free, but by default it *raises* that threshold each time
//! such a block is freed, so after the first few pieces the buffers come from
//! per-thread heap arenas, whose freed space stays resident and fragmented
//! across arenas. Measured on a 256 MiB sequential read through a mount:
//! peak RSS 59–80 MiB with the default, 36–39 MiB with the threshold pinned at
//! 128 KiB (which also turns the dynamic adjustment off); throughput within
//! run-to-run noise. Used by btt-mount and `btt get`; `btt seed` keeps the
//! defaults (measured when its upload path read a whole piece per request:
//! with the pinned threshold each became a fresh mapping, more CPU and a
//! slower seeder; uploads now read runs of blocks, not measured since). See
//! README, Performance.

/// Pins glibc's mmap threshold (no-op elsewhere). Call first thing in main,
/// before other threads exist.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other
    // threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Gives freed heap pages back to the system (no-op elsewhere). Called once
/// a torrent is parsed and its tables are built: parsing a .torrent of a
/// million files frees about 0.8 GB of small allocations that would
/// otherwise stay resident for the life of the mount.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
