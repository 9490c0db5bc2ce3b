//! `HEAPKIT_TRACE=FILE`: every call of the process, logged by address with the calling
//! thread into memory mapped for the purpose (never from the heap being traced), and
//! written at exit in the lab's trace format (`heapkit_trace`), one thread tag per event.
//! `%p` in the name becomes the process id: programs the traced one starts inherit the
//! variable, and would otherwise write the same file. A forked child logs nothing.
//!
//! Logging a call is one spin-locked append of 48 bytes; the conversion to a trace (ids
//! by address, threads numbered in order of appearance) happens once, at exit, with
//! logging off.

use core::ptr::{self, NonNull};
use std::collections::HashMap;

use heapkit_core::source::{MmapSource, Source};
use heapkit_core::sync::{AtomicBool, Ordering, SpinLock};
use heapkit_trace::record::{trace_of_calls, Call};

/// Whether calls are logged now.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// This process is a forked child of the traced one: it writes no trace.
static CHILD: AtomicBool = AtomicBool::new(false);
/// The file named by `HEAPKIT_TRACE`, copied at start: some programs (redis, to set
/// their process title) overwrite the environment's memory.
static PATH: SpinLock<PathBuffer> = SpinLock::new(PathBuffer {
    bytes: [0; PATH_MAX],
    len: 0,
});
const PATH_MAX: usize = 4096;

struct PathBuffer {
    bytes: [u8; PATH_MAX],
    len: usize,
}
static LOG: SpinLock<Log> = SpinLock::new(Log::new());

/// A logged call.
#[derive(Clone, Copy)]
struct Record {
    call: Call,
    thread: libc::pthread_t,
}

/// Records per mapped chunk (3 MiB).
const CHUNK_RECORDS: usize = 65_536;

/// A mapped chunk of records, chained to the one filled before it.
struct Chunk {
    previous: *mut Chunk,
    len: usize,
    records: [Record; CHUNK_RECORDS],
}

struct Log {
    current: *mut Chunk,
    /// No chunk could be mapped: calls from then on are missing, and the trace is not
    /// written (a trace with holes would misname blocks).
    lost: bool,
}

// SAFETY: the chunks are plain memory reached only under the lock.
unsafe impl Send for Log {}

impl Log {
    const fn new() -> Self {
        Self {
            current: ptr::null_mut(),
            lost: false,
        }
    }

    fn push(&mut self, record: Record) {
        // SAFETY: `current` is null or a chunk this log mapped and owns.
        let full = self.current.is_null() || unsafe { (*self.current).len == CHUNK_RECORDS };
        if full {
            let Some(chunk) = MmapSource::new(core::mem::size_of::<Chunk>())
                .acquire(core::mem::size_of::<Chunk>())
            else {
                self.lost = true;
                return;
            };
            let chunk = chunk.cast::<Chunk>().as_ptr();
            // SAFETY: a fresh zeroed mapping, page aligned and large enough for a
            // `Chunk`; `records` needs no initialising before `len` counts it.
            unsafe {
                ptr::addr_of_mut!((*chunk).previous).write(self.current);
                ptr::addr_of_mut!((*chunk).len).write(0);
            }
            self.current = chunk;
        }
        // SAFETY: `current` is a chunk of ours with room at `len`.
        unsafe {
            let chunk = &mut *self.current;
            chunk.records[chunk.len] = record;
            chunk.len += 1;
        }
    }

    /// Every record in order, oldest first.
    fn records(&self) -> Vec<Record> {
        let mut chunks = Vec::new();
        let mut chunk = self.current;
        while let Some(at) = NonNull::new(chunk) {
            chunks.push(at);
            // SAFETY: a chunk of ours.
            chunk = unsafe { at.as_ref().previous };
        }
        chunks
            .iter()
            .rev()
            // SAFETY: chunks of ours; their first `len` records were written.
            .flat_map(|chunk| unsafe { &chunk.as_ref().records[..chunk.as_ref().len] })
            .copied()
            .collect()
    }
}

/// Starts logging, to write `path` at exit; a name longer than `PATH_MAX` is refused.
pub(crate) fn start(path: &core::ffi::CStr) {
    let name = path.to_bytes();
    if name.len() > PATH_MAX {
        return;
    }
    {
        let mut buffer = PATH.lock();
        buffer.bytes[..name.len()].copy_from_slice(name);
        buffer.len = name.len();
    }
    RECORDING.store(true, Ordering::Release);
    // SAFETY: a plain C function, called once at exit.
    unsafe { libc::atexit(write_at_exit) };
}

/// Whether calls are being logged.
#[inline(always)]
pub(crate) fn on() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// Logs `call` from this thread.
#[cold]
pub(crate) fn log(call: Call) {
    // SAFETY: `pthread_self` has no preconditions and does not allocate.
    let thread = unsafe { libc::pthread_self() };
    let mut log = LOG.lock();
    if RECORDING.load(Ordering::Relaxed) {
        log.push(Record { call, thread });
    }
}

/// Before `fork`: the log's lock, so the child's copy is consistent.
pub(crate) fn lock_for_fork() {
    core::mem::forget(LOG.lock());
}

/// After `fork`, in the parent: the lock back.
pub(crate) fn unlock_in_parent() {
    // SAFETY: `lock_for_fork` took it in this thread just before.
    unsafe { LOG.force_unlock() };
}

/// After `fork`, in the child: the lock back, and no logging: the trace is the parent's
/// (a child writing the same file at its exit would overwrite it).
pub(crate) fn stop_in_child() {
    RECORDING.store(false, Ordering::Relaxed);
    CHILD.store(true, Ordering::Relaxed);
    // SAFETY: `lock_for_fork` took it in the parent's forking thread, which is this one.
    unsafe { LOG.force_unlock() };
}

/// Writes the trace. Logging stops first, so the allocations made here are not logged.
extern "C" fn write_at_exit() {
    let was_recording = RECORDING.swap(false, Ordering::Relaxed);
    if !was_recording || CHILD.load(Ordering::Relaxed) {
        return;
    }
    let path = {
        let buffer = PATH.lock();
        buffer.bytes[..buffer.len].to_vec()
    };
    let Ok(path) = String::from_utf8(path) else {
        eprintln!("heapkit-malloc: HEAPKIT_TRACE is not UTF-8; no trace written");
        return;
    };
    // Programs a traced process starts inherit the variable: `%p` keeps each one's trace.
    let path = path.replace("%p", &std::process::id().to_string());
    let (records, lost) = {
        let log = LOG.lock();
        (log.records(), log.lost)
    };
    if lost {
        eprintln!("heapkit-malloc: memory for the trace ran out; no trace written to {path}");
        return;
    }
    let mut threads: HashMap<libc::pthread_t, u32> = HashMap::new();
    let calls = records.iter().map(|record| {
        let next = u32::try_from(threads.len() + 1).unwrap_or(u32::MAX);
        (record.call, *threads.entry(record.thread).or_insert(next))
    });
    let trace = trace_of_calls(calls);
    match std::fs::write(&path, trace.to_text()) {
        Ok(()) => eprintln!(
            "heapkit-malloc: {} events of {} threads written to {path}",
            trace.events().len(),
            trace.threads().iter().max().unwrap_or(&1)
        ),
        Err(error) => eprintln!("heapkit-malloc: cannot write the trace to {path}: {error}"),
    }
}
