//! The C allocator's policy for a long-running session process.
//!
//! glibc serves blocks of 128 KiB and more with their own `mmap`, but after such a block is freed it raises
//! that threshold to the block's size (up to 32 MiB), so later large buffers come from the `brk` heap, and
//! a heap freed in the middle cannot shrink: the temporaries of loading (a file read whole, decoded copies)
//! then stay resident for the process's life. [`pin_mmap_threshold`] fixes the threshold, so every large
//! block is its own mapping and goes back to the system when freed. Per frame the runtime allocates nothing
//! (`tests/tests/no_alloc_frame.rs`), so frame times do not change; measured on an official-size int8
//! session (`gaga bench`, lean maps): 10 MiB less resident after loading, 6 MiB less after frames.

/// The threshold [`pin_mmap_threshold`] sets: glibc's own starting value.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Pins glibc's mmap threshold at [`MMAP_THRESHOLD`] for this process (see the module comment). Returns
/// whether the allocator accepted it; elsewhere (musl, other systems) it does nothing and returns false.
/// Call it once at start, before the model and avatar are loaded.
pub fn pin_mmap_threshold() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; M_MMAP_THRESHOLD takes a byte count.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_the_threshold_is_accepted_by_glibc() {
        // On glibc the call must succeed (it returns 1); a silent failure would leave the load's
        // temporaries resident without anyone noticing.
        assert_eq!(pin_mmap_threshold(), cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
