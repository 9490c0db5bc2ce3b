//! Segments and pages: the memory layout, and the operations on one page.
//!
//! ```text
//!  segment (SEGMENT bytes, aligned to SEGMENT)
//!  ┌──────────────┬───────────┬───────────┬───────────────────────┬─────┐
//!  │ slot 0:      │ slot 1    │ slot 2    │ slots 3..=6           │ …   │
//!  │ header,      │ page of   │ (free)    │ one page of class 40  │     │
//!  │ page table   │ class 3   │           │ (a span of 4 slots)   │     │
//!  └──────────────┴───────────┴───────────┴───────────────────────┴─────┘
//! ```
//!
//! Every field of a segment and its pages belongs to the heap that owns the segment (its
//! `owner`), except each page's `remote` list, which any thread pushes freed blocks onto,
//! and `owner` itself, which other threads read to learn that they are not the owner.
//! A huge segment holds one block of its own, past its header.

use core::ptr::{self, NonNull};

use heapkit_core::sync::{ordering, AtomicPtr, AtomicUsize, Ordering};

use crate::classes::{class_size, span_slots};
use crate::geometry::{SEGMENT, SLOT, SLOTS, SLOT_SHIFT};

/// What a segment holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// Pages of size classes.
    Small,
    /// One block larger than any class, starting `payload_offset` bytes in.
    Huge,
}

/// Which of its heap's lists a page is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum List {
    /// None: the slot is free, or the page's segment is abandoned.
    Off,
    /// Its class's queue of pages that may have free blocks.
    Queue,
    /// The list of pages that had none when last looked at.
    Full,
}

/// The owner id of an abandoned segment.
pub(crate) const NO_OWNER: usize = 0;

/// A zero-size field that starts a new cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine;

/// One page: a span of slots cut into blocks of one class.
///
/// Its first cache line holds what other threads write or read on every free (`remote`,
/// `first_slot`) and the rest what the owner writes (others only read `block_size`, which
/// does not change while a block is in use), so a thread freeing into the page does not
/// pull the line the owner writes on every allocation, nor the other way round.
#[repr(C)]
pub(crate) struct Page {
    /// Blocks freed by threads other than the owner: a stack through the blocks' first
    /// words, pushed with one compare-exchange and taken whole by the owner.
    pub(crate) remote: AtomicPtr<u8>,
    /// The first slot of the span this slot belongs to.
    pub(crate) first_slot: usize,
    _owner_line: CacheLine,
    /// The owner's free blocks, linked through their first words.
    pub(crate) free: *mut u8,
    /// Blocks handed out and not yet on `free` (remote frees not yet collected count).
    pub(crate) used: usize,
    /// Blocks carved so far: the rest of the span is untouched (never written).
    pub(crate) carved: usize,
    pub(crate) capacity: usize,
    pub(crate) block_size: usize,
    pub(crate) class: usize,
    /// Slots the page spans, on its first slot; 0 on free and interior slots.
    pub(crate) slots: usize,
    /// The first block.
    pub(crate) start: *mut u8,
    /// Links in the owner's queue or full list.
    pub(crate) next: *mut Page,
    pub(crate) prev: *mut Page,
    pub(crate) list: List,
}

impl Page {
    fn unused() -> Self {
        Self {
            remote: AtomicPtr::new(ptr::null_mut()),
            first_slot: 0,
            _owner_line: CacheLine,
            free: ptr::null_mut(),
            used: 0,
            carved: 0,
            capacity: 0,
            block_size: 0,
            class: 0,
            slots: 0,
            start: ptr::null_mut(),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            list: List::Off,
        }
    }

    /// Takes a block: from the free list, else carved from the untouched rest.
    ///
    /// Every `Page` operation takes a raw pointer and touches single fields: other
    /// threads read `remote`, `first_slot` and `block_size` at the same time, so a
    /// reference to the whole page (`&mut Page`, even `&Page`) would race with them.
    ///
    /// # Safety
    /// The caller owns the page, which is in use (`slots > 0`).
    #[inline(always)]
    pub(crate) unsafe fn pop(page: *mut Page) -> Option<NonNull<u8>> {
        // SAFETY: per the caller the owner-only fields are ours; free blocks are blocks of
        // this page whose first word is the link; block `carved` lies inside the span.
        unsafe {
            let block = (*page).free;
            if !block.is_null() {
                (*page).free = read_link(block);
                (*page).used += 1;
                return Some(NonNull::new_unchecked(block));
            }
            if (*page).carved < (*page).capacity {
                let block = (*page).start.add((*page).carved * (*page).block_size);
                (*page).carved += 1;
                (*page).used += 1;
                return NonNull::new(block);
            }
        }
        None
    }

    /// Puts a block of this page back on the owner's free list.
    ///
    /// # Safety
    /// The caller owns the page, and `block` is one of its blocks in use.
    #[inline(always)]
    pub(crate) unsafe fn push(page: *mut Page, block: NonNull<u8>) {
        // SAFETY: per the caller the block is ours to overwrite, the fields ours to write.
        unsafe {
            write_link(block.as_ptr(), (*page).free);
            (*page).free = block.as_ptr();
            (*page).used -= 1;
        }
    }

    /// Pushes a block freed by a thread that does not own the page.
    ///
    /// # Safety
    /// `block` is a block of this page in use, given up by the caller; the page stays in
    /// use until the owner collects it (it counts in `used`).
    #[inline]
    pub(crate) unsafe fn push_remote(page: *const Page, block: NonNull<u8>) {
        // SAFETY: the page is in use while the block is; only its atomic is referenced.
        let remote = unsafe { &*ptr::addr_of!((*page).remote) };
        let mut head = remote.load(Ordering::Relaxed);
        loop {
            // SAFETY: per the caller the block is ours until the exchange publishes it.
            unsafe { write_link(block.as_ptr(), head) };
            // Release: the owner that takes this block (Acquire in `collect_remote`) sees
            // its link and every write the freeing thread made to it.
            match remote.compare_exchange_weak(
                head,
                block.as_ptr(),
                ordering("sharded.push_remote.publish", Ordering::Release),
                Ordering::Relaxed,
            ) {
                // The page may be retired and its segment released from here on: nothing
                // of it is touched after the exchange.
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// Moves every block freed by other threads onto the owner's free list; returns how
    /// many there were.
    ///
    /// # Safety
    /// The caller owns the page.
    pub(crate) unsafe fn collect_remote(page: *mut Page) -> usize {
        // SAFETY: the page is ours; only its atomic is referenced.
        let remote = unsafe { &*ptr::addr_of!((*page).remote) };
        if remote.load(Ordering::Relaxed).is_null() {
            return 0;
        }
        let first = remote.swap(
            ptr::null_mut(),
            ordering("sharded.collect_remote.take", Ordering::Acquire),
        );
        let mut count = 0;
        let mut last = first;
        let mut block = first;
        while !block.is_null() {
            count += 1;
            last = block;
            // SAFETY: blocks on the remote list are blocks of this page, linked by their
            // pushers before the Release exchange this swap synchronised with.
            block = unsafe { read_link(block) };
        }
        if count > 0 {
            // SAFETY: `last` is a block of the list, now the owner's; so are the fields.
            unsafe {
                write_link(last, (*page).free);
                (*page).free = first;
                (*page).used -= count;
            }
        }
        count
    }

    /// Whether a block can be taken without collecting.
    ///
    /// # Safety
    /// The caller owns the page.
    #[inline(always)]
    pub(crate) unsafe fn has_free(page: *const Page) -> bool {
        // SAFETY: per the caller.
        unsafe { !(*page).free.is_null() || (*page).carved < (*page).capacity }
    }
}

/// A segment's header, at its start.
#[repr(C)]
pub(crate) struct Segment {
    pub(crate) kind: Kind,
    /// The id of the heap owning the segment, or [`NO_OWNER`] while abandoned.
    pub(crate) owner: AtomicUsize,
    /// What the source gave: handed back whole.
    pub(crate) chunk: NonNull<[u8]>,
    /// Links among the owner's segments, or on the abandoned list.
    pub(crate) next: *mut Segment,
    pub(crate) prev: *mut Segment,
    /// Links among every segment of the heap (under the source lock), for `owns`.
    pub(crate) all_next: *mut Segment,
    pub(crate) all_prev: *mut Segment,
    /// Huge: the block's offset and usable size. Small: unused.
    pub(crate) payload_offset: usize,
    pub(crate) usable: usize,
    /// Bit `i`: slot `i` is free (slot 0, the header's, never is).
    pub(crate) free_slots: u64,
    /// Pages in use.
    pub(crate) pages_in_use: usize,
    pub(crate) pages: [Page; SLOTS],
}

const _: () = assert!(core::mem::size_of::<Segment>() <= SLOT);

/// All slots but the header's.
const ALL_SLOTS_FREE: u64 = (u64::MAX >> (64 - SLOTS)) & !1;

impl Segment {
    /// Writes a small segment's header at `at`.
    ///
    /// # Safety
    /// `at` is `SEGMENT`-aligned with `SEGMENT` bytes of memory inside `chunk`, unused.
    pub(crate) unsafe fn init_small(at: *mut Segment, chunk: NonNull<[u8]>, owner: usize) {
        let segment = Segment {
            kind: Kind::Small,
            owner: AtomicUsize::new(owner),
            chunk,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            all_next: ptr::null_mut(),
            all_prev: ptr::null_mut(),
            payload_offset: 0,
            usable: 0,
            free_slots: ALL_SLOTS_FREE,
            pages_in_use: 0,
            pages: core::array::from_fn(|_| Page::unused()),
        };
        // SAFETY: per the caller; the header fits in slot 0.
        unsafe { at.write(segment) };
    }

    /// Writes a huge segment's header at `at`: one block of `usable` bytes at
    /// `payload_offset`.
    ///
    /// # Safety
    /// As for [`init_small`](Self::init_small), with the block inside the chunk too.
    pub(crate) unsafe fn init_huge(
        at: *mut Segment,
        chunk: NonNull<[u8]>,
        payload_offset: usize,
        usable: usize,
    ) {
        // SAFETY: per the caller; only the header's fields before `pages` are written, and
        // `pages` is never read in a huge segment.
        unsafe {
            ptr::addr_of_mut!((*at).kind).write(Kind::Huge);
            ptr::addr_of_mut!((*at).owner).write(AtomicUsize::new(NO_OWNER));
            ptr::addr_of_mut!((*at).chunk).write(chunk);
            ptr::addr_of_mut!((*at).next).write(ptr::null_mut());
            ptr::addr_of_mut!((*at).prev).write(ptr::null_mut());
            ptr::addr_of_mut!((*at).all_next).write(ptr::null_mut());
            ptr::addr_of_mut!((*at).all_prev).write(ptr::null_mut());
            ptr::addr_of_mut!((*at).payload_offset).write(payload_offset);
            ptr::addr_of_mut!((*at).usable).write(usable);
            ptr::addr_of_mut!((*at).free_slots).write(0);
            ptr::addr_of_mut!((*at).pages_in_use).write(0);
        }
    }

    /// Bytes before a huge block's payload, for an alignment of `align`.
    pub(crate) const fn huge_payload_offset(align: usize) -> usize {
        let header = core::mem::offset_of!(Segment, pages);
        let align = if align < 64 { 64 } else { align };
        header.next_multiple_of(align)
    }

    /// The segment holding `ptr` (a block this heap handed out).
    #[inline(always)]
    pub(crate) fn of(ptr: *mut u8) -> *mut Segment {
        ptr.map_addr(|addr| addr & !(SEGMENT - 1)).cast()
    }

    /// The page holding `ptr`, a block of small segment `segment`.
    ///
    /// # Safety
    /// `segment` is a small segment and `ptr` lies in one of its pages.
    #[inline(always)]
    pub(crate) unsafe fn page_of(segment: *mut Segment, ptr: *mut u8) -> *mut Page {
        let slot = (ptr.addr() - segment.addr()) >> SLOT_SHIFT;
        // SAFETY: per the caller, `slot < SLOTS`, inside the page table; the span's first
        // slot holds the page.
        unsafe {
            let pages = ptr::addr_of_mut!((*segment).pages).cast::<Page>();
            let first = (*pages.add(slot)).first_slot;
            pages.add(first)
        }
    }

    /// Claims a span of slots for a page of `class` and sets the page up, or `None` when
    /// no run of free slots is long enough.
    ///
    /// # Safety
    /// The caller owns the small segment.
    pub(crate) unsafe fn new_page(segment: *mut Segment, class: usize) -> Option<*mut Page> {
        let slots = span_slots(class);
        // SAFETY: per the caller the header is ours.
        let free = unsafe { (*segment).free_slots };
        // Bit `i` of `runs`: slots `i..i + slots` are all free.
        let mut runs = free;
        for _ in 1..slots {
            runs &= runs >> 1;
        }
        if runs == 0 {
            return None;
        }
        let first = runs.trailing_zeros() as usize;
        let mask = (u64::MAX >> (64 - slots)) << first;
        let block_size = class_size(class);
        // SAFETY: the slots are free slots of the segment, whose memory is ours.
        unsafe {
            (*segment).free_slots &= !mask;
            (*segment).pages_in_use += 1;
            for slot in first..first + slots {
                (*segment).pages[slot].first_slot = first;
            }
            let page = ptr::addr_of_mut!((*segment).pages[first]);
            let start = segment.cast::<u8>().add(first * SLOT);
            (*page).free = ptr::null_mut();
            (*page).used = 0;
            (*page).carved = 0;
            (*page).capacity = slots * SLOT / block_size;
            (*page).block_size = block_size;
            (*page).class = class;
            (*page).slots = slots;
            (*page).start = start;
            (*page).list = List::Off;
            Some(page)
        }
    }

    /// Gives a page's slots back to its segment; returns whether the segment is now empty.
    ///
    /// # Safety
    /// The caller owns the segment; the page has no block in use and is on no list.
    pub(crate) unsafe fn free_page(segment: *mut Segment, page: *mut Page) -> bool {
        // SAFETY: per the caller.
        unsafe {
            let first = (*page).first_slot;
            let slots = (*page).slots;
            debug_assert!((*page).used == 0 && (*page).list == List::Off);
            (*page).slots = 0;
            (*page).capacity = 0;
            (*page).free = ptr::null_mut();
            (*segment).free_slots |= (u64::MAX >> (64 - slots)) << first;
            (*segment).pages_in_use -= 1;
            (*segment).pages_in_use == 0
        }
    }

    /// The pages in use of `segment`, by their first slots.
    ///
    /// # Safety
    /// The caller owns the small segment and does not free pages while iterating.
    pub(crate) unsafe fn pages(segment: *mut Segment) -> impl Iterator<Item = *mut Page> {
        let mut slot = 1;
        core::iter::from_fn(move || {
            while slot < SLOTS {
                // SAFETY: per the caller, the page table is ours to read.
                let page = unsafe { ptr::addr_of_mut!((*segment).pages[slot]) };
                // SAFETY: as above.
                let span = unsafe { (*page).slots };
                // SAFETY: as above.
                let first = unsafe { (*page).first_slot };
                if span > 0 && first == slot {
                    slot += span;
                    return Some(page);
                }
                slot += 1;
            }
            None
        })
    }
}

impl Segment {
    /// The pages in use of `segment`, listed first, so the caller may free pages while
    /// going through them.
    ///
    /// # Safety
    /// The caller owns the small segment.
    pub(crate) unsafe fn pages_in_use(segment: *mut Segment) -> impl Iterator<Item = *mut Page> {
        let mut all = [ptr::null_mut(); SLOTS];
        let mut count = 0;
        // SAFETY: per the caller.
        for page in unsafe { Self::pages(segment) } {
            all[count] = page;
            count += 1;
        }
        all.into_iter().take(count)
    }
}

/// The link in a free block's first word.
///
/// # Safety
/// `block` is a free block of a page (8-byte aligned, at least 8 bytes).
#[inline(always)]
#[allow(clippy::cast_ptr_alignment)]
pub(crate) unsafe fn read_link(block: *mut u8) -> *mut u8 {
    // SAFETY: per the caller.
    unsafe { block.cast::<*mut u8>().read() }
}

/// # Safety
/// As for [`read_link`]; the block is the caller's to overwrite.
#[inline(always)]
#[allow(clippy::cast_ptr_alignment)]
pub(crate) unsafe fn write_link(block: *mut u8, next: *mut u8) {
    // SAFETY: per the caller.
    unsafe { block.cast::<*mut u8>().write(next) }
}
