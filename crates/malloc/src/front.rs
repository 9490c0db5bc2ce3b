//! The process heap behind the C functions: a [`ShardedHeap`] over `mmap`, with a
//! [`LocalHeap`] per thread.
//!
//! Under `LD_PRELOAD` the C library's own helpers call back into us, so nothing on the
//! way may use the C allocator: the thread slot is thread-local memory with no
//! destructor (nothing is registered, so nothing is called), and thread exit is noticed
//! through a `pthread` key destructor, which glibc keeps in a fixed table.

use core::alloc::Layout;
use core::cell::{Cell, UnsafeCell};
use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use heapkit_core::source::MmapSource;
use heapkit_core::sync::{signal_fence, SpinLock};
use heapkit_core::{AllocError, SharedBackend};

use crate::settings;
use heapkit_sharded::classes::class_for;
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::{LocalHeap, ShardedHeap};

/// Every block of the process comes from here.
pub(crate) static HEAP: ShardedHeap<MmapSource> = ShardedHeap::new(MmapSource::new(SEGMENT));

/// The largest alignment a block can have (a huge block's offset stays in its segment).
pub(crate) const MAX_ALIGN: usize = SEGMENT / 2;

/// Where a thread's heap is in its life. Zero is `Unborn`: a slot of zero bytes is a
/// fresh one.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Life {
    /// No heap yet: the first call assigns one.
    Unborn = 0,
    Live,
    /// The thread is exiting and its heap was handed back: calls take the locked heap.
    Gone,
}

/// A thread's heap. No destructor, so the thread-local needs no registration (which
/// would allocate). Zero bytes are a valid, unborn slot: `heap` is written when the
/// slot is born and read only while `life` is `Live`.
struct Slot {
    life: Cell<Life>,
    /// Set while a call runs on `heap`: a call that re-enters (glibc's `pthread` code
    /// allocating while we set the heap up) takes the locked heap instead.
    busy: Cell<bool>,
    heap: UnsafeCell<MaybeUninit<LocalHeap<'static>>>,
}

/// This thread's slot, in the static TLS block of x86-64 glibc, reached with the
/// initial-exec sequence: the thread pointer plus an offset from the GOT, two loads.
/// Rust's `thread_local!` in a shared library takes the general-dynamic model (a call of
/// `__tls_get_addr` on every `malloc` and `free`: a fifth of their instructions), and
/// stable Rust cannot choose another. The library is loaded with the program
/// (`LD_PRELOAD`, or linked in), which is when static TLS is laid out. A later `dlopen`
/// (which cannot make it the program's allocator anyway) needs the slot (832 bytes) from
/// glibc's static TLS surplus, about 1,664 bytes shared by every library loaded that
/// way; `GLIBC_TUNABLES=glibc.rtld.optional_static_tls=N` raises it.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod tls {
    use super::Slot;
    use core::mem::{align_of, size_of};

    // A zero-filled `.tbss` object: every thread's copy starts as an unborn slot.
    core::arch::global_asm!(
        ".pushsection .tbss.heapkit_malloc_slot,\"awT\",@nobits",
        ".p2align {align}",
        // Global for the other codegen units' references, hidden so the library does
        // not export it.
        ".globl heapkit_malloc_slot",
        ".hidden heapkit_malloc_slot",
        ".type heapkit_malloc_slot,@object",
        ".size heapkit_malloc_slot,{size}",
        "heapkit_malloc_slot:",
        ".zero {size}",
        ".popsection",
        align = const align_of::<Slot>().trailing_zeros(),
        size = const size_of::<Slot>(),
    );

    /// The calling thread's slot.
    #[inline(always)]
    pub(super) fn slot() -> &'static Slot {
        let slot: *const Slot;
        // SAFETY: `fs:0` holds the thread pointer (the TCB's pointer to itself, as the
        // x86-64 TLS ABI requires) and the GOT entry the slot's offset from it: the
        // address of this thread's copy, which lives as long as the thread. Zero bytes
        // are a valid slot, and only this thread uses it.
        unsafe {
            core::arch::asm!(
                "mov {slot}, qword ptr fs:[0]",
                "add {slot}, qword ptr [rip + heapkit_malloc_slot@GOTTPOFF]",
                slot = out(reg) slot,
                options(pure, readonly, nostack),
            );
            &*slot
        }
    }
}

/// This thread's slot, through `thread_local!` where the initial-exec sequence above is
/// not written.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
mod tls {
    use super::Slot;
    use core::cell::{Cell, UnsafeCell};
    use core::mem::MaybeUninit;

    std::thread_local! {
        static SLOT: Slot = const {
            Slot {
                life: Cell::new(super::Life::Unborn),
                busy: Cell::new(false),
                heap: UnsafeCell::new(MaybeUninit::uninit()),
            }
        };
    }

    /// The calling thread's slot.
    #[inline(always)]
    pub(super) fn slot() -> &'static Slot {
        // The address, taken by a closure small enough for `LocalKey::with` to inline.
        let slot = SLOT.with(core::ptr::from_ref);
        // SAFETY: the slot has no destructor, lives as long as its thread, and only its
        // thread uses it.
        unsafe { &*slot }
    }
}

impl Slot {
    /// Whether a call can use the heap now without more ado: born, not exiting, and not
    /// in use by a call this one interrupted.
    #[inline(always)]
    fn ready(&self) -> bool {
        !self.busy.get() && self.life.get() == Life::Live
    }

    /// Assigns the thread's heap and watches for the thread's exit.
    ///
    /// # Safety
    /// The slot is this thread's, unborn, and nothing else uses its heap now.
    #[cold]
    unsafe fn give_birth(&self) {
        // SAFETY: per the caller.
        let heap = unsafe { (*self.heap.get()).write(LocalHeap::unassigned()) };
        HEAP.assign(heap);
        self.life.set(Life::Live);
        watch_thread_exit();
    }
}

/// This thread's heap while a call uses it: `busy` is set until the guard drops, fenced
/// (as in [`Slot::while_busy`]) so that a signal handler interrupting the call sees it.
struct InUse<'a>(&'a Slot);

impl Drop for InUse<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        signal_fence();
        self.0.busy.set(false);
    }
}

impl<'a> InUse<'a> {
    #[inline(always)]
    fn enter(slot: &'a Slot) -> Self {
        slot.busy.set(true);
        signal_fence();
        Self(slot)
    }

    #[inline(always)]
    fn heap(&mut self) -> &mut LocalHeap<'static> {
        // SAFETY: `busy` makes this guard the only user of the heap on this thread, whose
        // own heap it is, born (so written) and assigned to `HEAP`.
        unsafe { (*self.0.heap.get()).assume_init_mut() }
    }
}

/// This thread's heap, or `None` when it cannot be used now (re-entered, or the thread
/// is exiting). A guard rather than a closure to run: the closure was not inlined, so
/// `malloc` paid a call, spilled registers and a result passed through memory.
#[inline(always)]
fn thread_heap() -> Option<InUse<'static>> {
    let slot = tls::slot();
    if !slot.ready() && !slot.usable_now() {
        return None;
    }
    Some(InUse::enter(slot))
}

impl Slot {
    /// Whether the heap can serve a call now, giving birth to it on the thread's first
    /// call: not while a call on it runs (re-entered), nor once the thread is exiting.
    #[cold]
    #[inline(never)]
    fn usable_now(&self) -> bool {
        if self.busy.get() {
            return false;
        }
        match self.life.get() {
            Life::Live => true,
            Life::Gone => false,
            Life::Unborn => {
                let _in_use = InUse::enter(self);
                // SAFETY: `busy` makes this the only use of the heap on this thread.
                unsafe { self.give_birth() };
                true
            }
        }
    }
}

/// Before `fork`: the heap's locks, this thread's heap named as their holder (assigned
/// first if the thread has none yet), so `fork` handlers that run after ours in this
/// thread can still allocate without waiting for a lock the thread holds itself.
pub(crate) fn lock_for_fork() {
    let slot = tls::slot();
    if slot.busy.get() || slot.life.get() == Life::Gone {
        HEAP.lock_for_fork(None);
        return;
    }
    if slot.life.get() == Life::Unborn {
        // SAFETY: not busy, so no call holds the heap; it is this thread's.
        unsafe { slot.give_birth() };
    }
    // SAFETY: as above; born, so written; only read, by this thread.
    HEAP.lock_for_fork(Some(unsafe { (*slot.heap.get()).assume_init_ref() }));
}

impl Slot {
    /// Runs `stretch` on the heap with `busy` set, fenced so that a signal handler that
    /// interrupts it sees the flag and takes the locked heap instead of this one.
    ///
    /// # Safety
    /// The heap is live (so born and assigned to `HEAP`) and was not busy: no call on this
    /// thread holds it.
    #[inline(always)]
    unsafe fn while_busy<R>(
        &'static self,
        stretch: impl FnOnce(&mut LocalHeap<'static>) -> R,
    ) -> R {
        stretch(InUse::enter(self).heap())
    }
}

/// `malloc(size)` from the first page of its class in this thread's heap, when that is
/// all it takes: no switch on, the heap live and not in use, a block at hand. `None`
/// otherwise, with nothing changed. Calls nothing, so `malloc` needs no stack frame for
/// it.
#[inline(always)]
pub(crate) fn allocate_cached(size: usize) -> Option<NonNull<u8>> {
    if !settings::plain() {
        return None;
    }
    let align = if size <= 8 { 8 } else { crate::MALLOC_ALIGN };
    let class = class_for(size, align)?;
    let slot = tls::slot();
    if !slot.ready() {
        return None;
    }
    // SAFETY: live and not busy, checked just now.
    unsafe { slot.while_busy(|heap| heap.allocate_cached(class)) }
}

/// `free(ptr)` back to a page of this thread's heap, when that is all it takes (see
/// [`LocalHeap::deallocate_cached`]). `false` otherwise, with nothing changed.
///
/// # Safety
/// `ptr` is null or a block of [`HEAP`] in use.
#[inline(always)]
pub(crate) unsafe fn deallocate_cached(ptr: *mut c_void) -> bool {
    let Some(block) = NonNull::new(ptr.cast::<u8>()) else {
        return false;
    };
    if !settings::plain() {
        return false;
    }
    let slot = tls::slot();
    if !slot.ready() {
        return false;
    }
    // SAFETY: live and not busy, checked just now; per the caller the block is `HEAP`'s,
    // as the thread's heap is.
    unsafe { slot.while_busy(|heap| heap.deallocate_cached(block)) }
}

/// Allocates a block for `layout` (non-zero size).
#[inline(always)]
pub(crate) fn allocate(layout: Layout) -> Result<NonNull<u8>, AllocError> {
    let block = match thread_heap() {
        Some(mut in_use) => in_use.heap().allocate(&HEAP, layout),
        None => SharedBackend::allocate(&HEAP, layout),
    };
    Ok(block?.cast())
}

/// Frees a block.
///
/// # Safety
/// `ptr` is a block of [`HEAP`] in use.
#[inline(always)]
pub(crate) unsafe fn deallocate(ptr: NonNull<u8>) {
    // Sharded heaps find a block's page from its address and ignore the layout.
    let any = Layout::new::<u8>();
    // SAFETY: forwarded caller guarantees.
    unsafe {
        match thread_heap() {
            Some(mut in_use) => in_use.heap().deallocate(&HEAP, ptr, any),
            None => SharedBackend::deallocate(&HEAP, ptr, any),
        }
    }
}

/// A block's usable bytes.
///
/// # Safety
/// `ptr` is a block of [`HEAP`] in use.
#[inline]
pub(crate) unsafe fn usable_size(ptr: NonNull<u8>) -> usize {
    // SAFETY: forwarded caller guarantees.
    unsafe { HEAP.usable_size(ptr) }
}

/// Resizes a block of `usable` bytes to hold `size` where it is, by the heap's own rule
/// (within its block while it would not waste half of it, or a huge block into the
/// rest of its mapping): its usable bytes now, or `None` when it has to move.
///
/// # Safety
/// `ptr` is a block of [`HEAP`] in use with `usable` usable bytes.
pub(crate) unsafe fn resize_in_place(
    ptr: NonNull<u8>,
    usable: usize,
    size: usize,
) -> Option<usize> {
    // Most resizes are answered from the usable size; only a huge block's growth asks.
    match heapkit_sharded::keeps_block(usable, size) {
        Some(true) => return Some(usable),
        Some(false) => return None,
        None => {}
    }
    // The alignment every block has; a larger one is kept by any in-place resize anyway.
    let old = Layout::from_size_align(usable, 8).ok()?;
    let new = Layout::from_size_align(size, 8).ok()?;
    // SAFETY: per the caller, a live block that `old` fits.
    let resized = unsafe {
        if size > usable {
            SharedBackend::grow_in_place(&HEAP, ptr, old, new)
        } else {
            SharedBackend::shrink_in_place(&HEAP, ptr, old, new)
        }
    };
    resized.ok().map(NonNull::len)
}

/// The `pthread` key whose destructor hands an exiting thread's heap back, made by the
/// first thread that needs it (under the lock: once per thread, and
/// `pthread_key_create` neither allocates nor blocks).
static EXIT_KEY: SpinLock<ExitKey> = SpinLock::new(ExitKey::Unmade);

#[derive(Clone, Copy)]
enum ExitKey {
    Unmade,
    Made(libc::pthread_key_t),
    /// `pthread_key_create` failed: threads' heaps go unwatched (they are only never
    /// handed back; nothing breaks).
    Failed,
}

/// The exit key, made on the first call.
fn exit_key() -> Option<libc::pthread_key_t> {
    let mut state = EXIT_KEY.lock();
    if let ExitKey::Unmade = *state {
        let mut key = 0;
        // SAFETY: `key` is a valid out pointer; the destructor is a plain C function.
        // glibc takes keys from a fixed table: no allocation.
        let made = unsafe { libc::pthread_key_create(&raw mut key, Some(thread_exit)) } == 0;
        *state = if made {
            ExitKey::Made(key)
        } else {
            ExitKey::Failed
        };
    }
    match *state {
        ExitKey::Made(key) => Some(key),
        _ => None,
    }
}

/// Makes the exit key call [`thread_exit`] when this thread ends.
#[cold]
fn watch_thread_exit() {
    if let Some(key) = exit_key() {
        // SAFETY: a valid key; the value only has to be non-null for the destructor to
        // run. The first 32 keys' values live in the thread descriptor (no allocation);
        // past those glibc allocates, which re-enters us and takes the locked heap.
        unsafe { libc::pthread_setspecific(key, NonNull::<c_void>::dangling().as_ptr()) };
    }
}

/// The exit key's destructor: hands the thread's heap back, so other threads adopt its
/// pages. Calls after this (later destructors) take the locked heap.
extern "C" fn thread_exit(_: *mut c_void) {
    let slot = tls::slot();
    if !slot.ready() {
        return;
    }
    slot.life.set(Life::Gone);
    // SAFETY: not busy, so no call holds the heap; it is this thread's and was born.
    // `Gone` keeps it from being read again.
    let heap = unsafe { (*slot.heap.get()).assume_init_read() };
    heap.abandon(&HEAP);
}
