//! What happens once per process: reading the `HEAPKIT_*` switches, making `fork`
//! safe, and the `HEAPKIT_STATS` report at exit.
//!
//! It runs from the library's constructor, or from the first allocation if another
//! library's constructor allocates before ours runs, and never allocates itself:
//! `getenv` reads the environment in place and the report is formatted on the stack.

use core::fmt::{self, Write as _};

use heapkit_core::sync::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use heapkit_sharded::classes::{class_for, class_size, CLASSES};

use crate::front::HEAP;

const UNREAD: u32 = 0;
const READING: u32 = 1;
const READ: u32 = 2;
/// Read, and neither switch is on: `malloc` and `free` skip every check of them.
const PLAIN: u32 = 3;

static STATE: AtomicU32 = AtomicU32::new(UNREAD);
static STATS: AtomicBool = AtomicBool::new(false);
/// Where the report goes (a copy of standard error made at start-up).
static REPORT_FD: AtomicU32 = AtomicU32::new(2);

/// Reads the switches and sets the process up, once; later calls return at once. A call
/// that comes while another thread (or this one, re-entered) is at it goes on without
/// waiting: nothing here is needed for allocating.
#[inline(always)]
pub(crate) fn ensure() {
    // Relaxed throughout: what set-up publishes is itself atomic (the switches) or behind
    // locks (the trace's path and log).
    if STATE.load(Ordering::Relaxed) < READ {
        set_up();
    }
}

/// Whether the process is set up with neither `HEAPKIT_STATS` nor `HEAPKIT_TRACE` on:
/// one load for the common case, where calls need nothing but the heap. (A switch never
/// turns on after set-up; a forked child's trace stopping leaves the checks in place.)
#[inline(always)]
pub(crate) fn plain() -> bool {
    STATE.load(Ordering::Relaxed) == PLAIN
}

#[cold]
fn set_up() {
    if STATE
        .compare_exchange(UNREAD, READING, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: plain C functions with no arguments, called by the C library around
    // `fork`.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        )
    };
    // SAFETY: as in `switch_is_on`.
    let trace = unsafe { libc::getenv(c"HEAPKIT_TRACE".as_ptr()) };
    if !trace.is_null() {
        // SAFETY: `getenv` gives a NUL-terminated string, read right now.
        let trace = unsafe { core::ffi::CStr::from_ptr(trace) };
        if !trace.is_empty() {
            crate::record::start(trace);
        }
    }
    if switch_is_on(c"HEAPKIT_STATS") {
        // A copy of standard error, for the report: programs close theirs before exiting
        // (GNU tools' `close_stdout`), and the report comes after that.
        // SAFETY: `fcntl` on a descriptor number; a failure leaves -1, and writes to -1
        // fail harmlessly.
        let copy = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 10) };
        REPORT_FD.store(copy as u32, Ordering::Relaxed);
        STATS.store(true, Ordering::Relaxed);
        // SAFETY: a plain C function, called once at exit.
        unsafe { libc::atexit(report) };
    }
    let watched = STATS.load(Ordering::Relaxed) || crate::record::on();
    STATE.store(if watched { READ } else { PLAIN }, Ordering::Relaxed);
}

/// Whether `name` is set to something other than empty or `0`.
fn switch_is_on(name: &core::ffi::CStr) -> bool {
    // SAFETY: a NUL-terminated name; `getenv` returns null or a NUL-terminated string
    // owned by the environment, read before anything could change it (start-up).
    unsafe {
        let value = libc::getenv(name.as_ptr());
        !value.is_null() && *value != 0 && !(*value == b'0' as libc::c_char && *value.add(1) == 0)
    }
}

extern "C" fn before_fork() {
    crate::record::lock_for_fork();
    crate::front::lock_for_fork();
}

extern "C" fn after_fork_in_parent() {
    // SAFETY: `before_fork` took the locks in this thread just before.
    unsafe { HEAP.unlock_after_fork() };
    crate::record::unlock_in_parent();
}

extern "C" fn after_fork_in_child() {
    // SAFETY: `before_fork` took the locks in the thread that forked, which is this one.
    unsafe { HEAP.unlock_after_fork() };
    crate::record::stop_in_child();
}

/// The C functions, counted apart in the report.
#[derive(Clone, Copy)]
pub(crate) enum Call {
    Malloc,
    Calloc,
    Realloc,
    Aligned,
    Free,
}

const CALL_NAMES: [&str; 5] = ["malloc", "calloc", "realloc", "aligned", "free"];

/// `HEAPKIT_STATS`' counters: touched only when the switch is on.
struct Counters {
    calls: [AtomicUsize; 5],
    live: AtomicUsize,
    peak_live: AtomicUsize,
    by_class: [AtomicUsize; CLASSES],
    huge: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the arrays below
const ZERO: AtomicUsize = AtomicUsize::new(0);

static COUNTERS: Counters = Counters {
    calls: [ZERO; 5],
    live: ZERO,
    peak_live: ZERO,
    by_class: [ZERO; CLASSES],
    huge: ZERO,
};

/// Whether `HEAPKIT_STATS` is on.
#[inline(always)]
pub(crate) fn stats_on() -> bool {
    STATS.load(Ordering::Relaxed)
}

/// Counts a call of one of the C functions.
#[cold]
pub(crate) fn count_call(call: Call) {
    COUNTERS.calls[call as usize].fetch_add(1, Ordering::Relaxed);
}

/// Counts a block of `usable` bytes handed out for a request of `size` aligned to
/// `align`.
#[cold]
pub(crate) fn count_allocation(size: usize, align: usize, usable: usize) {
    let c = &COUNTERS;
    match class_for(size, align) {
        Some(class) => c.by_class[class].fetch_add(1, Ordering::Relaxed),
        None => c.huge.fetch_add(1, Ordering::Relaxed),
    };
    let live = c.live.fetch_add(usable, Ordering::Relaxed) + usable;
    c.peak_live.fetch_max(live, Ordering::Relaxed);
}

/// Counts `extra` bytes a block gained in place.
#[cold]
pub(crate) fn count_growth(extra: usize) {
    let live = COUNTERS.live.fetch_add(extra, Ordering::Relaxed) + extra;
    COUNTERS.peak_live.fetch_max(live, Ordering::Relaxed);
}

/// Counts a block of `usable` bytes given back (by `free`, or a moving `realloc`).
/// Saturating: blocks allocated before the switch was read are freed uncounted.
#[cold]
pub(crate) fn count_free(usable: usize) {
    let _ = COUNTERS
        .live
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
            Some(live.saturating_sub(usable))
        });
}

/// Writes `HEAPKIT_STATS`' summary to standard error, at a normal exit (`exit` or the
/// end of `main`; `_exit` skips it).
extern "C" fn report() {
    let c = &COUNTERS;
    let mut line = Line::new();
    let _ = write!(line, "heapkit-malloc stats: calls");
    for (name, count) in CALL_NAMES.iter().zip(&c.calls) {
        let _ = write!(line, " {name}={}", count.load(Ordering::Relaxed));
    }
    line.flush();
    let _ = write!(
        line,
        "heapkit-malloc stats: peak live {} bytes, live at exit {} bytes, peak mapped {} bytes, mapped at exit {} bytes (address space: a segment's mapping has room to align it)",
        c.peak_live.load(Ordering::Relaxed),
        c.live.load(Ordering::Relaxed),
        HEAP.peak_mapped(),
        HEAP.mapped(),
    );
    line.flush();
    let _ = write!(
        line,
        "heapkit-malloc stats: allocations by class (block size: count)"
    );
    for (class, count) in c.by_class.iter().enumerate() {
        let count = count.load(Ordering::Relaxed);
        if count > 0 {
            if line.len > 100 {
                line.flush();
                let _ = write!(line, " ");
            }
            let _ = write!(line, " {}:{count}", class_size(class));
        }
    }
    let _ = write!(line, " huge:{}", c.huge.load(Ordering::Relaxed));
    line.flush();
}

/// A line formatted on the stack and written to standard error in one `write`.
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }

    fn flush(&mut self) {
        self.bytes[self.len.min(255)] = b'\n';
        write_quietly(
            REPORT_FD.load(Ordering::Relaxed) as i32,
            &self.bytes[..=self.len.min(255)],
        );
        self.len = 0;
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Keeps the last byte for the newline; a longer line is cut.
        let room = 255 - self.len;
        let take = text.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Writes `bytes` to `fd` at exit without dying of `SIGPIPE` when the reader is gone (a
/// program piped into `head`): the signal is blocked for the write, and one it raised is
/// taken off this thread before the mask is restored. A failed write loses the bytes.
pub(crate) fn write_quietly(fd: i32, bytes: &[u8]) {
    // SAFETY: signal sets are plain values built by the libc calls; the write reads our
    // own buffer; a zero timeout makes `sigtimedwait` only take a pending signal.
    unsafe {
        let mut pipe: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&raw mut pipe);
        libc::sigaddset(&raw mut pipe, libc::SIGPIPE);
        let mut before: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const pipe, &raw mut before);
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        if written < 0 && *libc::__errno_location() == libc::EPIPE {
            let no_wait = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&raw const pipe, core::ptr::null_mut(), &raw const no_wait);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const before, core::ptr::null_mut());
    }
}
