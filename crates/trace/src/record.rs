//! Recording a real program's allocations as a [`Trace`]: a global allocator that passes
//! every call on and, while a recording runs on the calling thread, logs it.
//!
//! ```no_run
//! use heapkit_trace::record::Recorder;
//!
//! #[global_allocator]
//! static RECORDER: Recorder<std::alloc::System> = Recorder::new(std::alloc::System);
//!
//! RECORDER.start(1 << 20);
//! let map: std::collections::BTreeMap<u32, String> =
//!     (0..1000).map(|i| (i, i.to_string())).collect();
//! drop(map);
//! let trace = RECORDER.stop().unwrap();
//! assert!(trace.summary().allocs >= 1000);
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::HashMap;

use heapkit_core::sync::SpinLock;

use crate::trace::{Trace, TraceBuilder};

/// A call an allocator saw, by address; [`trace_of_calls`] names the blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A block of `size` bytes aligned to `align` handed out at `at`.
    Alloc {
        at: usize,
        size: usize,
        align: usize,
    },
    /// The block at `from` resized to `size` bytes, now at `to` (the same address when
    /// it stayed). A `from` the calls never allocated counts as a new block.
    Realloc {
        from: usize,
        to: usize,
        size: usize,
        align: usize,
    },
    /// The block at `at` freed; an address the calls never allocated is left out.
    Free { at: usize },
}

thread_local! {
    /// Whether this thread's calls are being recorded. Only the thread that started the
    /// recording is, so a test harness's or runtime's other threads stay out of it.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// A global allocator that records the calls of the thread that started a recording.
#[derive(Debug)]
pub struct Recorder<G> {
    inner: G,
    /// The log, allocated up front by [`start`](Self::start) so that logging a call never
    /// allocates.
    log: SpinLock<Log>,
}

#[derive(Debug, Default)]
struct Log {
    calls: Vec<Call>,
    /// More calls came than `calls` had room for.
    overflowed: bool,
    /// A recording runs (on some thread).
    running: bool,
}

impl Log {
    const EMPTY: Self = Self {
        calls: Vec::new(),
        overflowed: false,
        running: false,
    };
}

impl<G> Recorder<G> {
    /// A recorder passing calls to `inner`.
    #[cfg(not(loom))]
    pub const fn new(inner: G) -> Self {
        Self {
            inner,
            log: SpinLock::new(Log::EMPTY),
        }
    }

    /// A recorder passing calls to `inner`. (Not `const` under `cfg(loom)`, whose locks are
    /// not; this crate builds there as a dev-dependency of crates with loom models.)
    #[cfg(loom)]
    pub fn new(inner: G) -> Self {
        Self {
            inner,
            log: SpinLock::new(Log::EMPTY),
        }
    }

    /// Starts recording this thread's calls, keeping room for `capacity` of them.
    ///
    /// # Panics
    ///
    /// If a recording is already running: one recorder records one thread at a time.
    pub fn start(&self, capacity: usize) {
        let calls = Vec::with_capacity(capacity);
        let mut log = self.log.lock();
        assert!(!log.running, "a recording is already running");
        *log = Log {
            calls,
            overflowed: false,
            running: true,
        };
        drop(log);
        RECORDING.with(|recording| recording.set(true));
    }

    /// Stops recording and turns the log into a trace. Blocks allocated before the start
    /// are left out (their frees and reallocs too); blocks still live at the stop are
    /// freed at the trace's end, so the trace is complete.
    ///
    /// # Errors
    ///
    /// When more calls came than the capacity given to `start` allowed.
    pub fn stop(&self) -> Result<Trace, String> {
        RECORDING.with(|recording| recording.set(false));
        let Log {
            calls, overflowed, ..
        } = std::mem::take(&mut *self.log.lock());
        if overflowed {
            return Err(format!(
                "the recording filled its {} calls; start it with more",
                calls.len()
            ));
        }
        Ok(trace_of_calls(calls.into_iter().map(|call| (call, 0))))
    }

    fn log_alloc(&self, at: *mut u8, layout: Layout) -> *mut u8 {
        if !at.is_null() {
            self.log(Call::Alloc {
                at: at.addr(),
                size: layout.size(),
                align: layout.align(),
            });
        }
        at
    }

    fn log(&self, call: Call) {
        if RECORDING.with(Cell::get) {
            let mut log = self.log.lock();
            if log.calls.len() < log.calls.capacity() {
                log.calls.push(call);
            } else {
                log.overflowed = true;
            }
        }
    }
}

/// The trace of a sequence of calls by address, each with its thread tag (0: untagged):
/// an address names the block allocated there until it is freed or moved. Blocks the
/// calls never allocated are left out (their frees and reallocs too), and blocks still
/// live at the end are freed there, so the trace is complete.
///
/// # Panics
///
/// When the calls are not a valid sequence for some allocator (a block allocated at an
/// address that is live already, a zero size, an alignment that is not a power of two).
pub fn trace_of_calls(calls: impl IntoIterator<Item = (Call, u32)>) -> Trace {
    let mut ids: HashMap<usize, u64> = HashMap::new();
    let mut next_id = 0u64;
    let mut trace = TraceBuilder::new();
    let mut fresh = |ids: &mut HashMap<usize, u64>, at: usize| {
        next_id += 1;
        ids.insert(at, next_id);
        next_id
    };
    for (call, thread) in calls {
        if thread > 0 {
            trace.on_thread(thread);
        }
        let result = match call {
            Call::Alloc { at, size, align } => {
                let id = fresh(&mut ids, at);
                trace.alloc(id, size, align)
            }
            Call::Realloc {
                from,
                to,
                size,
                align,
            } => {
                if let Some(id) = ids.remove(&from) {
                    ids.insert(to, id);
                    trace.realloc(id, size)
                } else {
                    let id = fresh(&mut ids, to);
                    trace.alloc(id, size, align)
                }
            }
            Call::Free { at } => match ids.remove(&at) {
                Some(id) => trace.free(id),
                None => Ok(()),
            },
        };
        result.expect("a global allocator's calls form a valid trace");
    }
    trace.free_all();
    trace.finish()
}

// SAFETY: every call is passed to `inner` unchanged and its result returned; logging
// only pushes into a vector within its capacity, which never allocates.
unsafe impl<G: GlobalAlloc> GlobalAlloc for Recorder<G> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: per the caller.
        self.log_alloc(unsafe { self.inner.alloc(layout) }, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: per the caller.
        self.log_alloc(unsafe { self.inner.alloc_zeroed(layout) }, layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.log(Call::Free { at: ptr.addr() });
        // SAFETY: per the caller.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: per the caller.
        let to = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !to.is_null() {
            self.log(Call::Realloc {
                from: ptr.addr(),
                to: to.addr(),
                size: new_size,
                align: layout.align(),
            });
        }
        to
    }
}
