//! Fault injection for the fuzz loops on the hardened kernel
//! (`EPCMIG_FAILSLAB=1 cargo vm test --hardened`): slab
//! allocations fail at random, but only inside the calls a loop wraps with
//! [`Failslab::around`], so that the kernel's error paths run under KASAN
//! while the test's own setup stays reliable.

use std::io::Write;

use anyhow::{Context, Result};

const DIR: &str = "/sys/kernel/debug/failslab";

/// Whether failslab is on.
#[derive(Clone, Copy)]
pub struct Failslab {
    on: bool,
}

fn write(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {path}"))
}

impl Failslab {
    /// Turns failslab on for flagged tasks if `EPCMIG_FAILSLAB=1`.
    pub fn setup() -> Result<Failslab> {
        // Only on the hardened kernel: the others have no failslab.
        let on = std::env::var("EPCMIG_FAILSLAB").is_ok_and(|v| v == "1")
            && crate::uname_r().ends_with("-hardened");
        if on {
            if !std::path::Path::new(DIR).exists() {
                let st = std::process::Command::new("mount")
                    .args(["-t", "debugfs", "debugfs", "/sys/kernel/debug"])
                    .status()?;
                anyhow::ensure!(
                    st.success() && std::path::Path::new(DIR).exists(),
                    "EPCMIG_FAILSLAB=1 but this kernel has no {DIR} (CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS)"
                );
            }
            // One allocation in five fails, sleeping ones too, without end,
            // for tasks that asked (make-it-fail) only. The probability
            // goes last: until task-filter is on, the defaults (times 1)
            // would fail one allocation of whichever task comes next.
            keep_heap_off_the_kernel();
            keep_pages_in()?;
            for (f, v) in [
                ("task-filter", "Y"),
                ("times", "-1"),
                ("interval", "1"),
                ("space", "0"),
                ("verbose", "0"),
                ("ignore-gfp-wait", "N"),
                ("probability", "20"),
            ] {
                write(&format!("{DIR}/{f}"), v)?;
            }
        }
        Ok(Failslab { on })
    }

    pub fn on(&self) -> bool {
        self.on
    }

    /// Runs `f` with this thread's slab allocations failing at random.
    pub fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.on {
            return f();
        }
        set_make_it_fail(true);
        let r = f();
        set_make_it_fail(false);
        r
    }
}

/// Memory this process can allocate without a syscall once failslab is on.
const HEAP_RESERVE: usize = 64 << 20;

/// Makes the wrapped calls' own allocations come from heap memory that is
/// already mapped. Growing the heap (brk, mmap) allocates VMAs and maple
/// tree nodes from the slab, which then fails too: malloc would return
/// NULL and Rust abort the whole guest suite. So: one arena (no per-thread
/// arena mmaps), no mmap for big blocks, no trimming, and HEAP_RESERVE
/// mapped, touched and freed up front.
fn keep_heap_off_the_kernel() {
    // SAFETY: mallopt only changes glibc's malloc tunables; called before
    // the fuzz threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
    let chunks: Vec<Vec<u8>> = (0..HEAP_RESERVE >> 20)
        .map(|_| vec![1u8; 1 << 20])
        .collect();
    drop(std::hint::black_box(chunks));
}

/// Faults in and locks every page of the process, now and as mapped later.
/// Our binary and its libraries live on the guest's 9p root: a page of
/// code first run inside a wrapped call is read from 9p then, with slab
/// allocations failing, and a failed read of a mapped file is SIGBUS. That
/// killed the guest suite silently (issue 6): the first forced failure,
/// before task-filter was on, showed the trace, a page fault in
/// filemap_fault -> netfs_read_folio -> v9fs.
fn keep_pages_in() -> Result<()> {
    // SAFETY: mlockall only changes how this process's memory is paged.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(std::io::Error::last_os_error()).context("mlockall");
    }
    Ok(())
}

/// /proc/thread-self/make-it-fail; turning it off is retried until it
/// sticks (the write itself may meet an injected failure).
fn set_make_it_fail(on: bool) {
    let v: &[u8] = if on { b"1" } else { b"0" };
    for _ in 0..1000 {
        let ok = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/thread-self/make-it-fail")
            .and_then(|mut f| f.write_all(v))
            .is_ok();
        if ok {
            return;
        }
    }
}
