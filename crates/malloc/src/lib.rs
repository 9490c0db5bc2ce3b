//! heapkit as the C allocator of any program: `malloc`, `free` and the rest of the C
//! and POSIX surface over [`heapkit_sharded`], a heap per thread.
//!
//! ```text
//! $ cargo xtask preload -- python3 -c 'print(sum(range(10)))'
//! $ LD_PRELOAD=target/release/libheapkit_malloc.so HEAPKIT_STATS=1 sqlite3 :memory: 'select 1'
//! ```
//!
//! Built as a `cdylib` (for `LD_PRELOAD`) and a `staticlib` (to link into a C program).
//! Semantics follow glibc: `malloc(0)` gives a unique block, blocks are 16-byte aligned
//! (8 for requests of 8 bytes or less, which cannot hold anything aligned to more),
//! every failure sets `errno` to `ENOMEM`, `posix_memalign` reports through its result
//! and leaves `errno` alone, `realloc(p, 0)` frees and returns null.
//!
//! Memory comes straight from `mmap` ([`MmapSource`](heapkit_core::source::MmapSource)),
//! never from another allocator; a thread's heap is handed back when the thread exits
//! (through a `pthread` key, which does not allocate), and `fork` takes the heap's locks
//! first, so the child of a multi-threaded parent can allocate.
//!
//! `HEAPKIT_STATS=1` prints calls, peak live and mapped bytes, and allocations per size
//! class at exit. `HEAPKIT_TRACE=FILE` records every call (with a thread tag) and writes
//! it at exit in the lab's trace format (`cargo xtask lab --trace FILE` replays it).

mod front;
mod record;
mod settings;

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::{self, NonNull};

use heapkit_trace::record::Call as Logged;
use settings::{count_allocation, count_call, count_free, count_growth, stats_on, Call};

/// The alignment of `malloc`'s blocks of more than 8 bytes (`alignof(max_align_t)`).
pub(crate) const MALLOC_ALIGN: usize = 16;
const PAGE: usize = 4096;

/// `errno`'s value.
fn errno() -> i32 {
    // SAFETY: glibc's thread-local `errno`, always valid to read.
    unsafe { *libc::__errno_location() }
}

/// Sets `errno`.
fn set_errno(code: i32) {
    // SAFETY: glibc's thread-local `errno`, always valid to write.
    unsafe { *libc::__errno_location() = code };
}

/// Fails a call: `errno = code`, null.
fn fail(code: i32) -> *mut c_void {
    set_errno(code);
    ptr::null_mut()
}

/// The layout `malloc(size)` serves.
#[inline(always)]
fn malloc_layout(size: usize) -> Option<Layout> {
    let size = size.max(1);
    let align = if size <= 8 { 8 } else { MALLOC_ALIGN };
    Layout::from_size_align(size, align).ok()
}

/// Allocates for `layout`, counting the call as `call`; null and `ENOMEM` on failure.
#[inline(always)]
fn allocate(layout: Option<Layout>, call: Call) -> *mut c_void {
    settings::ensure();
    if stats_on() {
        count_call(call);
    }
    let block = allocate_uncounted(layout);
    if record::on() && !block.is_null() {
        if let Some(layout) = layout {
            record::log(Logged::Alloc {
                at: block.addr(),
                size: layout.size(),
                align: layout.align(),
            });
        }
    }
    block
}

/// [`allocate`] without counting the call (for `realloc`, counted once on entry).
#[inline(always)]
fn allocate_uncounted(layout: Option<Layout>) -> *mut c_void {
    let Some(layout) = layout else {
        return fail(libc::ENOMEM);
    };
    let Ok(block) = front::allocate(layout) else {
        return fail(libc::ENOMEM);
    };
    if stats_on() {
        // SAFETY: just allocated.
        let usable = unsafe { front::usable_size(block) };
        count_allocation(layout.size(), layout.align(), usable);
    }
    block.as_ptr().cast()
}

/// Frees a non-null block.
///
/// # Safety
/// `block` is a block of ours in use.
#[inline(always)]
unsafe fn release(block: NonNull<u8>) {
    if stats_on() {
        // SAFETY: per the caller.
        count_free(unsafe { front::usable_size(block) });
    }
    // SAFETY: per the caller.
    unsafe { front::deallocate(block) }
}

/// `malloc(3)`.
///
/// # Safety
/// None beyond C's: the block is freed once, with `free` or `realloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // The common case calls nothing, so it needs no stack frame; the rest is out of line.
    if let Some(block) = front::allocate_cached(size) {
        return block.as_ptr().cast();
    }
    malloc_uncached(size)
}

/// [`malloc`] past its cached fast path.
#[inline(never)]
fn malloc_uncached(size: usize) -> *mut c_void {
    let layout = malloc_layout(size);
    if settings::plain() {
        return match layout.map(front::allocate) {
            Some(Ok(block)) => block.as_ptr().cast(),
            _ => fail(libc::ENOMEM),
        };
    }
    allocate(layout, Call::Malloc)
}

/// `free(3)`: null is ignored.
///
/// # Safety
/// `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: per the caller. The common case calls nothing (no stack frame).
    if unsafe { front::deallocate_cached(ptr) } {
        return;
    }
    // SAFETY: per the caller.
    unsafe { free_uncached(ptr) }
}

/// [`free`] past its cached fast path.
///
/// # Safety
/// As for `free`.
#[inline(never)]
unsafe fn free_uncached(ptr: *mut c_void) {
    if settings::plain() {
        if let Some(block) = NonNull::new(ptr.cast::<u8>()) {
            // SAFETY: per the caller.
            unsafe { front::deallocate(block) };
        }
        return;
    }
    if stats_on() {
        count_call(Call::Free);
    }
    if let Some(block) = NonNull::new(ptr.cast::<u8>()) {
        if record::on() {
            record::log(Logged::Free {
                at: block.addr().get(),
            });
        }
        // SAFETY: per the caller.
        unsafe { release(block) }
    }
}

/// `calloc(3)`: zeroed; a product that overflows fails with `ENOMEM`.
///
/// # Safety
/// As for [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    let layout = count.checked_mul(size).and_then(malloc_layout);
    let block = allocate(layout, Call::Calloc);
    if !block.is_null() {
        // SAFETY: the block holds at least `count * size` bytes (`layout` was made from
        // that product).
        unsafe { block.cast::<u8>().write_bytes(0, count * size) };
    }
    block
}

/// `realloc(3)`: null acts as `malloc`, size 0 frees and returns null; in place when the
/// block still fits without wasting half of it (or no smaller class would hold it, or no
/// memory is left for a smaller block). On failure the old block is untouched and
/// `errno` is `ENOMEM`.
///
/// # Safety
/// `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    settings::ensure();
    if stats_on() {
        count_call(Call::Realloc);
    }
    // SAFETY: forwarded caller guarantees.
    unsafe { resize(ptr, size) }
}

/// Logs a realloc that kept or moved its block, or allocated one for a null pointer.
/// Called before the old block is released: once it is, another thread may be given its
/// address and log that first.
fn log_resize(from: *mut c_void, to: *mut c_void, size: usize) {
    if let Some(layout) = malloc_layout(size).filter(|_| record::on()) {
        record::log(if from.is_null() {
            Logged::Alloc {
                at: to.addr(),
                size: layout.size(),
                align: layout.align(),
            }
        } else {
            Logged::Realloc {
                from: from.addr(),
                to: to.addr(),
                size: layout.size(),
                align: layout.align(),
            }
        });
    }
}

/// [`realloc`] after counting the call.
///
/// # Safety
/// As for `realloc`.
#[inline(always)]
unsafe fn resize(ptr: *mut c_void, size: usize) -> *mut c_void {
    let Some(old) = NonNull::new(ptr.cast::<u8>()) else {
        let new = allocate_uncounted(malloc_layout(size));
        if !new.is_null() {
            log_resize(ptr, new, size);
        }
        return new;
    };
    if size == 0 {
        if record::on() {
            record::log(Logged::Free { at: ptr.addr() });
        }
        // SAFETY: per the caller.
        unsafe { release(old) };
        return ptr::null_mut();
    }
    // SAFETY: per the caller.
    let usable = unsafe { front::usable_size(old) };
    // SAFETY: per the caller; its usable bytes are a size the block may be taken for.
    if let Some(now) = unsafe { front::resize_in_place(old, usable, size) } {
        if stats_on() && now > usable {
            count_growth(now - usable);
        }
        log_resize(ptr, ptr, size);
        return ptr;
    }
    // A shrink that found no smaller block keeps the one it has, as glibc's would: it
    // holds `size` bytes, so running out of memory is no reason to fail.
    let errno_before = (size <= usable).then(errno);
    let new = allocate_uncounted(malloc_layout(moved_size(size, usable)));
    if new.is_null() {
        if let Some(code) = errno_before {
            set_errno(code);
            log_resize(ptr, ptr, size);
            return ptr;
        }
        return new;
    }
    // SAFETY: both blocks are live and distinct; the old one holds `usable` bytes and the
    // new one at least `size`.
    unsafe {
        ptr::copy_nonoverlapping(old.as_ptr(), new.cast::<u8>(), usable.min(size));
        log_resize(ptr, new, size);
        release(old);
    }
    new
}

/// The size a block that `realloc` moves is given: a growing block gets a quarter more
/// (up to the largest class), so that the small steps that usually follow (redis adds an
/// entry of a few hundred bytes to a listpack at a time) stay in place, as they do in
/// glibc's heap, instead of each moving and copying the whole block to the next class.
fn moved_size(size: usize, usable: usize) -> usize {
    if size > usable && size <= heapkit_sharded::classes::MAX_SMALL {
        (size + size / 4).min(heapkit_sharded::classes::MAX_SMALL)
    } else {
        size
    }
}

/// `reallocarray(3)`: `realloc` of `count * size` bytes, failing with `ENOMEM` when the
/// product overflows.
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    let Some(bytes) = count.checked_mul(size) else {
        return fail(libc::ENOMEM);
    };
    // SAFETY: forwarded.
    unsafe { realloc(ptr, bytes) }
}

/// An aligned block, or null with `ENOMEM`; `align` is a power of two.
fn allocate_aligned(align: usize, size: usize) -> *mut c_void {
    let layout = if align > front::MAX_ALIGN {
        None
    } else {
        Layout::from_size_align(size.max(1), align.max(8)).ok()
    };
    allocate(layout, Call::Aligned)
}

/// `posix_memalign(3)`: `EINVAL` for an alignment that is not a power of two multiple of
/// the pointer size, `ENOMEM` when out of memory; `errno` is left as it was.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: glibc's thread-local `errno`.
    let errno = unsafe { *libc::__errno_location() };
    let block = allocate_aligned(align, size);
    set_errno(errno);
    if block.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: per the caller.
    unsafe { out.write(block) };
    0
}

/// `aligned_alloc(3)` (C11): `EINVAL` and null unless `align` is a power of two.
///
/// # Safety
/// As for [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return fail(libc::EINVAL);
    }
    allocate_aligned(align, size)
}

/// `memalign(3)`: an alignment that is not a power of two is rounded up to one, as
/// glibc does.
///
/// # Safety
/// As for [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    align
        .checked_next_power_of_two()
        .map_or_else(|| fail(libc::EINVAL), |align| allocate_aligned(align, size))
}

/// `valloc(3)`: page aligned.
///
/// # Safety
/// As for [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    allocate_aligned(PAGE, size)
}

/// `pvalloc(3)`: page aligned, the size rounded up to whole pages (0 gives one page).
///
/// # Safety
/// As for [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    size.max(1)
        .checked_next_multiple_of(PAGE)
        .map_or_else(|| fail(libc::ENOMEM), |size| allocate_aligned(PAGE, size))
}

/// `malloc_usable_size(3)`: the bytes the block can hold; 0 for null.
///
/// # Safety
/// `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    match NonNull::new(ptr.cast::<u8>()) {
        // SAFETY: per the caller.
        Some(block) => unsafe { front::usable_size(block) },
        None => 0,
    }
}

/// `free_sized` (C23): the size is not needed to free.
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: usize) {
    // SAFETY: forwarded.
    unsafe { free(ptr) }
}

/// `free_aligned_sized` (C23): neither the size nor the alignment is needed to free.
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded.
    unsafe { free(ptr) }
}

/// Reads the switches when the library is loaded, before `main`, so `HEAPKIT_STATS` is
/// on from the program's first call (an allocation from an earlier constructor does it
/// then instead).
#[used]
#[link_section = ".init_array"]
static READ_SWITCHES: extern "C" fn() = {
    extern "C" fn read_switches() {
        settings::ensure();
    }
    read_switches
};
