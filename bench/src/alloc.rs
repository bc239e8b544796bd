//! A counting wrapper around the system allocator, installed as the `#[global_allocator]` of the
//! bench binary, so each benchmark cell can report how far the heap grew while it ran.
//!
//! The counts are kept per thread: the runner does all of a cell's work on its own thread and none
//! of the measured libraries spawns threads, so the thread's count is the cell's count; and tests,
//! which the harness runs on parallel threads, do not see each other's allocations. Bytes are
//! counted as requested, not as the system allocator rounds them. Memory freed on another thread
//! than the one that allocated it lowers the freeing thread's count, hence the signed counters.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting each thread's live bytes and their high-water mark.
pub struct CountingAlloc;

struct Counts {
    live: Cell<isize>,
    peak: Cell<isize>,
}

thread_local! {
    // `const` and free of `Drop`: reading it never allocates, so the allocator may use it.
    static COUNTS: Counts = const { Counts { live: Cell::new(0), peak: Cell::new(0) } };
}

fn grow(bytes: usize) {
    // `try_with` fails only while the thread is being torn down; those bytes matter to no cell.
    let _ = COUNTS.try_with(|c| {
        let live = c.live.get().wrapping_add_unsigned(bytes);
        c.live.set(live);
        if live > c.peak.get() {
            c.peak.set(live);
        }
    });
}

fn shrink(bytes: usize) {
    let _ = COUNTS.try_with(|c| c.live.set(c.live.get().wrapping_sub_unsigned(bytes)));
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only updates counters, which
// never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as if resized in place: a copying realloc briefly holds both blocks, which
            // this leaves out, the same way for every implementation.
            match new_size.checked_sub(layout.size()) {
                Some(more) => grow(more),
                None => shrink(layout.size() - new_size),
            }
        }
        new
    }
}

/// Watches this thread's heap high-water mark from the moment it is started.
pub struct PeakWatch {
    start: isize,
}

impl PeakWatch {
    /// Resets the high-water mark to the bytes live now and remembers them.
    pub fn start() -> Self {
        COUNTS.with(|c| {
            let start = c.live.get();
            c.peak.set(start);
            Self { start }
        })
    }

    /// How many bytes the heap rose above its level at [`PeakWatch::start`], at its highest.
    pub fn growth(&self) -> usize {
        COUNTS.with(|c| c.peak.get().saturating_sub(self.start).unsigned_abs())
    }

    /// How many bytes are live now above the level at [`PeakWatch::start`]: what the result of
    /// the watched work keeps.
    pub fn retained(&self) -> usize {
        COUNTS.with(|c| c.live.get().saturating_sub(self.start).unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    const MIB: usize = 1 << 20;

    fn live() -> isize {
        COUNTS.with(|c| c.live.get())
    }

    #[test]
    fn a_freed_block_still_counts_in_the_peak_but_not_in_the_live_bytes() {
        let before = live();
        let watch = PeakWatch::start();
        let block = black_box(vec![7u8; MIB]);
        assert_eq!(live(), before + MIB as isize);
        drop(block);
        assert_eq!(live(), before);
        assert_eq!(watch.growth(), MIB);
    }

    #[test]
    fn growth_counts_only_what_rose_after_the_start() {
        let kept = black_box(vec![1u8; 2 * MIB]);
        let watch = PeakWatch::start();
        let mut v: Vec<u64> = Vec::new();
        for i in 0..100_000 {
            v.push(black_box(i));
        }
        let growth = watch.growth();
        assert!(
            growth >= v.capacity() * 8,
            "growth {growth} below the vec's capacity"
        );
        assert!(
            growth < 2 * MIB,
            "growth {growth} counts the block allocated before the start"
        );
        drop(kept);
    }

    #[test]
    fn another_threads_allocations_do_not_count() {
        let watch = PeakWatch::start();
        std::thread::spawn(|| drop(black_box(vec![0u8; 4 * MIB])))
            .join()
            .expect("thread ran");
        // The spawn itself allocates a little on this thread (its handle), far below the block.
        assert!(watch.growth() < MIB, "growth {}", watch.growth());
    }
}
