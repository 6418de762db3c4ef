//! Edge coverage from LLVM's SanitizerCoverage, on stable Rust.
//!
//! Built with `-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3
//! -C llvm-args=-sanitizer-coverage-trace-pc-guard` (see `scripts/fuzz.sh`), every edge of every
//! crate in the binary calls [`__sanitizer_cov_trace_pc_guard`] with its own guard; that is
//! the instrumentation libFuzzer and AFL++ read, and only its wiring (`-Zsanitizer=fuzzer`)
//! needs nightly. The callbacks here number the guards at start-up and mark the first time an
//! edge runs, so the driver learns after each input whether it reached anything new. Without
//! the flags nothing calls them: [`edges`] is 0 and the driver fuzzes blind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Room for this many distinct edges (the node, the wire and their dependencies have ~300,000);
/// guards past it share slots, which only blurs the signal.
const SLOTS: usize = 1 << 20;

static EDGES: AtomicUsize = AtomicUsize::new(0);
static SEEN: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
static NEW: AtomicBool = AtomicBool::new(false);
static COVERED: AtomicUsize = AtomicUsize::new(0);

/// Called once per instrumented module with its guards: gives each a slot.
///
/// # Safety
/// Called by the instrumentation with a valid `[start, stop)` range of guards.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_trace_pc_guard_init(start: *mut u32, stop: *mut u32) {
    if start == stop || *start != 0 {
        return;
    }
    let mut p = start;
    while p < stop {
        let n = EDGES.fetch_add(1, Ordering::Relaxed);
        *p = (n % SLOTS) as u32;
        p = p.add(1);
    }
}

/// Called on every instrumented edge. Kept trivial: it runs in everything, itself excluded
/// (the pass skips functions named `__sanitizer_*`).
///
/// # Safety
/// Called by the instrumentation with a guard initialised above.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_trace_pc_guard(guard: *mut u32) {
    if let Some(seen) = SEEN.get(*guard as usize) {
        if !seen.load(Ordering::Relaxed) {
            seen.store(true, Ordering::Relaxed);
            NEW.store(true, Ordering::Relaxed);
            COVERED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Instrumented edges in the binary (0 when built without the coverage flags).
pub fn edges() -> usize {
    EDGES.load(Ordering::Relaxed)
}

/// Edges run at least once so far.
pub fn covered() -> usize {
    COVERED.load(Ordering::Relaxed)
}

/// Whether an edge ran for the first time since the last call.
pub fn take_new() -> bool {
    NEW.swap(false, Ordering::Relaxed)
}
