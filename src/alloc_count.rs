//! The unit tests' allocator: the system's, counting what each thread
//! allocates, so a test can check what a data structure costs per entry
//! (other tests run on other threads and do not disturb the count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(1, layout.size() as i64);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, -(layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count(1, new as i64 - layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

fn count(n: u64, bytes: i64) {
    // During thread teardown the thread-locals may be gone: not counted.
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + n));
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// This thread's totals so far.
pub struct Counts {
    pub allocations: u64,
    pub live_bytes: i64,
}

pub fn now() -> Counts {
    Counts {
        allocations: ALLOCATIONS.with(Cell::get),
        live_bytes: LIVE.with(Cell::get),
    }
}
