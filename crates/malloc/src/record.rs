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
use heapkit_core::sync::{AtomicBool, AtomicU32, Ordering, SpinLock};
use heapkit_trace::record::{trace_of_calls, Call};

/// Whether calls are logged now.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// This process is a forked child of the traced one: it writes no trace.
static CHILD: AtomicBool = AtomicBool::new(false);
/// The thread holding the log's lock for `fork` (0: none).
static FORKING_THREAD: AtomicU32 = AtomicU32::new(0);
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
    /// The kernel's thread id (`pthread_self` values are reused as soon as a thread is
    /// joined; thread ids only after the whole id space has gone round).
    thread: libc::pid_t,
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
            // SAFETY: a fresh mapping, page aligned and large enough for a `Chunk`; only
            // the header is written, records are written one by one before `len` counts
            // them.
            unsafe {
                ptr::addr_of_mut!((*chunk).previous).write(self.current);
                ptr::addr_of_mut!((*chunk).len).write(0);
            }
            self.current = chunk;
        }
        // SAFETY: `current` is a chunk of ours with room at `len`; the record is written
        // through a raw pointer, no reference to the uninitialised rest is made.
        unsafe {
            let chunk = self.current;
            let len = (*chunk).len;
            ptr::addr_of_mut!((*chunk).records)
                .cast::<Record>()
                .add(len)
                .write(record);
            (*chunk).len = len + 1;
        }
    }

    /// The chunks, oldest first, as slices of their written records.
    fn chunks(&self) -> Vec<&[Record]> {
        let mut chunks = Vec::new();
        let mut chunk = self.current;
        while let Some(at) = NonNull::new(chunk) {
            // SAFETY: a chunk of ours; its first `len` records were written.
            unsafe {
                let records = ptr::addr_of!((*at.as_ptr()).records).cast::<Record>();
                chunks.push(core::slice::from_raw_parts(records, (*at.as_ptr()).len));
                chunk = (*at.as_ptr()).previous;
            }
        }
        chunks.reverse();
        chunks
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
    // Relaxed: what a logger reads besides the flag is behind `LOG`'s and `PATH`'s locks.
    RECORDING.store(true, Ordering::Relaxed);
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
    // SAFETY: `gettid` has no preconditions and does not allocate.
    let thread = unsafe { libc::gettid() };
    if FORKING_THREAD.load(Ordering::Relaxed) == thread as u32 {
        // This thread holds the log's lock for `fork` (another library's fork handler is
        // allocating): the call goes unlogged rather than waiting on ourselves. A trace
        // tolerates that: frees of unknown blocks are left out, and an address logged
        // again while it seems live starts a new block.
        return;
    }
    let mut log = LOG.lock();
    if RECORDING.load(Ordering::Relaxed) {
        log.push(Record { call, thread });
    }
}

/// Before `fork`: the log's lock, so the child's copy is consistent.
pub(crate) fn lock_for_fork() {
    core::mem::forget(LOG.lock());
    // SAFETY: `gettid` has no preconditions.
    FORKING_THREAD.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
}

/// After `fork`, in the parent: the lock back.
pub(crate) fn unlock_in_parent() {
    FORKING_THREAD.store(0, Ordering::Relaxed);
    // SAFETY: `lock_for_fork` took it in this thread just before.
    unsafe { LOG.force_unlock() };
}

/// After `fork`, in the child: the lock back, and no logging: the trace is the parent's
/// (a child writing the same file at its exit would overwrite it).
pub(crate) fn stop_in_child() {
    RECORDING.store(false, Ordering::Relaxed);
    CHILD.store(true, Ordering::Relaxed);
    FORKING_THREAD.store(0, Ordering::Relaxed);
    // SAFETY: `lock_for_fork` took it in the parent's forking thread, which is this one.
    unsafe { LOG.force_unlock() };
}

/// Writes the trace. Logging stops first, so the allocations made here are not logged.
/// Nothing here may unwind or die of a broken pipe: it runs inside `exit`.
extern "C" fn write_at_exit() {
    let was_recording = RECORDING.swap(false, Ordering::Relaxed);
    if !was_recording || CHILD.load(Ordering::Relaxed) {
        return;
    }
    if std::panic::catch_unwind(write_trace).is_err() {
        say("heapkit-malloc: writing the trace failed; no trace written");
    }
}

fn write_trace() {
    let path = {
        let buffer = PATH.lock();
        buffer.bytes[..buffer.len].to_vec()
    };
    let Ok(path) = String::from_utf8(path) else {
        say("heapkit-malloc: HEAPKIT_TRACE is not UTF-8; no trace written");
        return;
    };
    // Programs a traced process starts inherit the variable: `%p` keeps each one's trace.
    let path = path.replace("%p", &std::process::id().to_string());
    // A thread stopped inside `log` (a signal handler calling `exit`) holds the lock for
    // good: give up rather than hang the exit.
    let Some(log) = (0..1_000_000).find_map(|_| LOG.try_lock()) else {
        say(&format!(
            "heapkit-malloc: the trace log stayed locked; no trace written to {path}"
        ));
        return;
    };
    if log.lost {
        say(&format!(
            "heapkit-malloc: memory for the trace ran out; no trace written to {path}"
        ));
        return;
    }
    let mut threads: HashMap<libc::pid_t, u32> = HashMap::new();
    let calls = log.chunks().into_iter().flatten().map(|record| {
        let next = u32::try_from(threads.len() + 1).unwrap_or(u32::MAX);
        (record.call, *threads.entry(record.thread).or_insert(next))
    });
    let trace = trace_of_calls(calls);
    drop(log);
    match std::fs::write(&path, trace.to_text()) {
        Ok(()) => say(&format!(
            "heapkit-malloc: {} events of {} threads written to {path}",
            trace.events().len(),
            trace.threads().iter().max().unwrap_or(&1)
        )),
        Err(error) => say(&format!(
            "heapkit-malloc: cannot write the trace to {path}: {error}"
        )),
    }
}

/// A line to standard error, ignoring failures (a closed pipe must not end the exit).
fn say(line: &str) {
    crate::settings::write_quietly(2, format!("{line}\n").as_bytes());
}
