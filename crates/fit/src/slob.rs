//! [`Slob`]: Linux's "simple list of blocks" (mm/slob.c, Matt Mackall 2003, removed in
//! 6.4), over regions of pages.

use core::alloc::Layout;
use core::fmt;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::{self, NonNull};

use heapkit_core::region::{RegionHeader, RegionList, Span};
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::heap::CRATE_NAME;

/// Bytes in a SLOB page: the unit of the page supplier, and the most a SLOB block spans.
pub const SLOB_PAGE: usize = 4096;
/// The granularity inside a page: sizes and offsets are counted in 2-byte units (SLOB's
/// `SLOB_UNIT` for pages up to 64 KiB).
pub const SLOB_UNIT: usize = 2;
const PAGE_UNITS: usize = SLOB_PAGE / SLOB_UNIT;
/// The offset that ends a page's free list: the page's end.
const END: usize = PAGE_UNITS;
/// Requests below these sizes use the small and medium page lists (`SLOB_BREAK1`,
/// `SLOB_BREAK2`); larger ones below a page the large list.
const BREAK1: usize = 256;
const BREAK2: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Owned by the page supplier.
    Free,
    /// Holds SLOB blocks.
    Slob,
    /// The first page of a run handed out whole; `run` pages.
    RunHead,
    /// A later page of such a run.
    RunTail,
}

/// What the allocator knows about one page (Linux keeps it in `struct page`): its kind,
/// and for a SLOB page its free units, the offset of its first free block and its links
/// on a page list.
struct Page {
    base: *mut u8,
    kind: Kind,
    /// Free units (SLOB pages).
    units: usize,
    /// Offset of the first free block, in units; `END` when the page is full.
    free: usize,
    /// Pages in the run (run heads).
    run: usize,
    /// Circular links on a page list, null when on none.
    prev: *mut Page,
    next: *mut Page,
}

/// A region: its page descriptors, then its pages, page-aligned.
pub(crate) struct Region {
    next: *mut Region,
    span: Span,
    pages: *mut Page,
    count: usize,
    first: *mut u8,
}

// SAFETY: `span` is the memory given and `next` the link written at `add_region`.
unsafe impl RegionHeader for Region {
    fn span(&self) -> Span {
        self.span
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

/// SLOB, Linux's allocator for small machines: first fit inside pages, with no per-block
/// overhead.
///
/// Memory comes in [`SLOB_PAGE`]-byte pages from a page supplier, here the regions the
/// allocator is given (a region is cut into page-aligned pages; an array of page
/// descriptors sits at its start). Inside a page, sizes count in [`SLOB_UNIT`]s, and the
/// free blocks form a singly linked list in address order, each storing its size and the
/// offset of the next in its own first units (a one-unit block stores only the offset,
/// negated). There is no header on allocated blocks and no footer: the size of a block
/// comes from the `Layout` it is freed with, as for Linux's `kmem_cache` objects.
///
/// **Allocate.** A request below [`SLOB_PAGE`] bytes goes to one of three page lists by
/// size (below 256 bytes, below 1 KiB, up to a page), so small objects do not fragment
/// the pages large ones need. The list is walked from its front; a page with enough free
/// units in total is searched first fit along its free list, a leading fragment split off
/// when the request needs alignment. The page that served the request becomes the front
/// of its list, so the next search starts there (next fit between pages, first fit within
/// one). When no page serves, a fresh page joins the front of the list. A request of a
/// page or more, or aligned beyond a page, goes straight to the page supplier: a run of
/// whole pages, first fit over the regions' pages.
///
/// **Free.** A block's units go back into its page's list at their address, merged with
/// the free blocks just before and after: coalescing is page-local, by address order, and
/// needs no boundary tags. A full page that gets a block back joins the front of the list
/// for that block's size; a page whose every unit is free goes back to the page supplier.
///
/// **Costs.** Allocation is O(pages on the list × free blocks per page) in the worst case,
/// free is O(free blocks in the page), and a run of pages is found in O(pages). No bytes per
/// block; 2-byte granularity (a 1-byte request takes one unit, a 5-byte one three); a
/// page descriptor of seven words (56 bytes on 64-bit targets) per page. What it costs is search time and the
/// fragmentation of pages among the lists: a block never spans pages, and a page with a
/// single live block stays out of the supplier. No in-place resizing: a block cannot see
/// its neighbour without tags.
///
/// With `checked`, a free whose block overlaps a free block of its page (a double free),
/// that lies in a page holding no SLOB blocks, that is not the start of a run, or whose
/// layout is not one of the kind of block found there (a run's layout on a page of SLOB
/// blocks, a SLOB block's on a run), panics with the address. A pointer into the middle of a live block cannot be told from a block
/// start: there are no tags to check it against.
pub struct Slob {
    regions: RegionList<Region>,
    /// Fronts of the small, medium and large page lists.
    lists: [*mut Page; 3],
    capacity: usize,
    in_use: usize,
    free: usize,
}

// SAFETY: the allocator exclusively manages its regions; nothing is tied to a thread.
unsafe impl Send for Slob {}

// SAFETY: a `Slob` built by `add_region` manages only that region (and its own value).
unsafe impl heapkit_core::FromRegion for Slob {
    type Params = ();

    unsafe fn from_region(start: NonNull<u8>, len: usize, (): ()) -> Result<Self, ConfigError> {
        let mut slob = Self::new();
        // SAFETY: forwarded caller guarantees.
        unsafe { slob.add_region(start, len)? };
        Ok(slob)
    }
}

impl Default for Slob {
    fn default() -> Self {
        Self::new()
    }
}

/// Units a request of `size` bytes takes (at least one).
const fn units_for(size: usize) -> usize {
    let units = size.div_ceil(SLOB_UNIT);
    if units == 0 {
        1
    } else {
        units
    }
}

/// The page list for a request or free of `size` bytes.
const fn list_for(size: usize) -> usize {
    if size < BREAK1 {
        0
    } else if size < BREAK2 {
        1
    } else {
        2
    }
}

/// Reading and writing a page's free blocks: unit `at` of the page holds the block's size
/// (positive) and unit `at + 1` the next block's offset, or, for a one-unit block, unit
/// `at` holds the next offset negated.
///
/// # Safety (every function)
/// `page` is a SLOB page of ours; `at` is the offset of a free block in it (below `END`).
mod units {
    use super::{Page, SLOB_UNIT};

    #[allow(clippy::cast_ptr_alignment)] // pages are page-aligned, units 2-byte aligned
    unsafe fn cell(page: &Page, at: usize) -> *mut i16 {
        // SAFETY: per the module contract, inside the page.
        unsafe { page.base.add(at * SLOB_UNIT).cast::<i16>() }
    }

    pub(super) unsafe fn size(page: &Page, at: usize) -> usize {
        // SAFETY: per the module contract.
        let first = unsafe { cell(page, at).read() };
        if first > 0 {
            first as usize
        } else {
            1
        }
    }

    pub(super) unsafe fn next(page: &Page, at: usize) -> usize {
        // SAFETY: per the module contract; a block of two units or more has its second.
        unsafe {
            let first = cell(page, at).read();
            if first > 0 {
                cell(page, at + 1).read() as usize
            } else {
                (-i32::from(first)) as usize
            }
        }
    }

    /// Writes a free block of `size` units at `at`, followed in the list by `next`.
    pub(super) unsafe fn set(page: &Page, at: usize, size: usize, next: usize) {
        // SAFETY: per the module contract; the block's units are free memory of the page.
        unsafe {
            if size > 1 {
                cell(page, at).write(size as i16);
                cell(page, at + 1).write(next as i16);
            } else {
                cell(page, at).write(-(next as i16));
            }
        }
    }
}

impl Slob {
    /// An allocator with no memory yet: give it some with [`add_region`](Self::add_region).
    pub const fn new() -> Self {
        Self {
            regions: RegionList::new(),
            lists: [ptr::null_mut(); 3],
            capacity: 0,
            in_use: 0,
            free: 0,
        }
    }

    /// An allocator over one `'static` region.
    ///
    /// # Errors
    ///
    /// As for [`add_region`](Self::add_region).
    pub fn with_region(region: &'static mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        let mut slob = Self::new();
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { slob.add_region(start, len)? };
        Ok(slob)
    }

    /// Adds `len` bytes at `start`: a header, one descriptor per page, then as many
    /// page-aligned [`SLOB_PAGE`]-byte pages as fit (at least one).
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the allocator or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the region reaches past the address space, overlaps one already
    /// added, or cannot hold one aligned page with its bookkeeping; the allocator is then
    /// unchanged.
    #[allow(clippy::cast_ptr_alignment)] // the offsets below align the header and array
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        let least = size_of::<Region>() + size_of::<Page>() + 2 * SLOB_PAGE;
        let too_small = ConfigError::RegionTooSmall {
            needed: least,
            given: len,
        };
        let header = span.align_up(0, align_of::<Region>()).ok_or(too_small)?;
        let descriptors = span
            .align_up(header + size_of::<Region>(), align_of::<Page>())
            .ok_or(too_small)?;
        let mut count = len / SLOB_PAGE;
        let first = loop {
            if count == 0 {
                return Err(too_small);
            }
            let placed = span
                .align_up(descriptors + count * size_of::<Page>(), SLOB_PAGE)
                .filter(|&first| len - first >= count * SLOB_PAGE);
            if let Some(first) = placed {
                break first;
            }
            count -= 1;
        };
        let base = start.as_ptr();
        // SAFETY: every offset is at most `len` (checked above), so the pointers stay in
        // the caller's region, which is ours from now on; header and array are aligned.
        unsafe {
            let pages = base.add(descriptors).cast::<Page>();
            let first = base.add(first);
            for i in 0..count {
                pages.add(i).write(Page {
                    base: first.add(i * SLOB_PAGE),
                    kind: Kind::Free,
                    units: 0,
                    free: END,
                    run: 0,
                    prev: ptr::null_mut(),
                    next: ptr::null_mut(),
                });
            }
            let region = base.add(header).cast::<Region>();
            region.write(Region {
                next: self.regions.head(),
                span,
                pages,
                count,
                first,
            });
            self.regions.push(region);
        }
        self.capacity += len;
        self.free += count * SLOB_PAGE;
        Ok(())
    }

    /// Calls `each` with the address of every page, in the order the page supplier
    /// searches them (regions newest first, pages by address). O(pages).
    pub fn for_each_page(&self, mut each: impl FnMut(usize)) {
        for r in self.regions.iter() {
            for i in 0..r.count {
                each(r.first.addr() + i * SLOB_PAGE);
            }
        }
    }

    /// Calls `each` with the address of every page on page list `list` (0: requests below
    /// 256 bytes, 1: below 1 KiB, 2: below a page), from the front, where a search starts.
    pub fn for_each_listed_page(&self, list: usize, mut each: impl FnMut(usize)) {
        let head = self.lists[list];
        let mut page = head;
        while !page.is_null() {
            // SAFETY: pages on a list are descriptors of ours, circularly linked.
            let p = unsafe { &*page };
            each(p.base.addr());
            page = if p.next == head {
                ptr::null_mut()
            } else {
                p.next
            };
        }
    }

    /// The region and page index holding `addr`, if a page of some region does.
    fn page_of(&self, addr: usize) -> Option<(&Region, usize)> {
        self.regions.iter().find_map(|r| {
            let offset = addr.checked_sub(r.first.addr())?;
            (offset < r.count * SLOB_PAGE).then_some((r, offset / SLOB_PAGE))
        })
    }

    /// First fit over the regions' pages for `count` free pages in a row whose first is
    /// aligned to `align`; marks them a run (or a SLOB page) and returns the first page.
    /// `count` is at least 1.
    fn take_pages(&mut self, count: usize, align: usize) -> Option<*mut Page> {
        debug_assert!(count > 0, "a run of no pages");
        let found = self.regions.iter().find_map(|r| {
            let mut i = 0;
            while i + count <= r.count {
                // SAFETY: `i + count <= r.count`: descriptors of the region.
                let page = unsafe { &*r.pages.add(i) };
                if page.base.addr() % align != 0 {
                    i += 1;
                    continue;
                }
                let busy = (i..i + count)
                    // SAFETY: as above.
                    .position(|j| unsafe { (*r.pages.add(j)).kind } != Kind::Free);
                match busy {
                    None => return Some((r.pages, i)),
                    Some(at) => i += at + 1,
                }
            }
            None
        });
        let (pages, i) = found?;
        // SAFETY: the descriptors `i..i + count` of one region, all free.
        unsafe {
            for j in 1..count {
                (*pages.add(i + j)).kind = Kind::RunTail;
            }
            let head = pages.add(i);
            (*head).kind = Kind::RunHead;
            (*head).run = count;
            Some(head)
        }
    }

    /// Returns the pages of the run starting at `head` to the supplier.
    ///
    /// # Safety
    /// `head` is a run head (or a SLOB page with `run == 1`) of ours.
    unsafe fn give_pages(head: *mut Page) {
        // SAFETY: per the caller, the run's descriptors follow its head in one region.
        unsafe {
            for j in 0..(*head).run {
                let page = &mut *head.add(j);
                page.kind = Kind::Free;
                page.run = 0;
            }
        }
    }

    /// Puts `page` at the front of list `list`.
    ///
    /// # Safety
    /// `page` is a SLOB page of ours on no list.
    unsafe fn push_front(&mut self, list: usize, page: *mut Page) {
        let head = self.lists[list];
        // SAFETY: per the caller; pages on a list are ours, circularly linked.
        unsafe {
            if head.is_null() {
                (*page).prev = page;
                (*page).next = page;
            } else {
                let tail = (*head).prev;
                (*page).prev = tail;
                (*page).next = head;
                (*tail).next = page;
                (*head).prev = page;
            }
        }
        self.lists[list] = page;
    }

    /// Takes `page` off the list it is on.
    ///
    /// # Safety
    /// `page` is on a list of ours.
    unsafe fn unlink(&mut self, page: *mut Page) {
        // SAFETY: per the caller; pages on a list are circularly linked.
        unsafe {
            let (prev, next) = ((*page).prev, (*page).next);
            for head in &mut self.lists {
                if *head == page {
                    *head = if next == page { ptr::null_mut() } else { next };
                }
            }
            (*prev).next = next;
            (*next).prev = prev;
            (*page).prev = ptr::null_mut();
            (*page).next = ptr::null_mut();
        }
    }

    /// First fit along the page's free list for `units` units aligned to `align`
    /// (`slob_page_alloc`): returns the offset of the block cut out.
    fn page_alloc(page: &mut Page, units: usize, align: usize) -> Option<usize> {
        let mut prev: Option<usize> = None;
        let mut cur = page.free;
        while cur != END {
            // SAFETY: `cur` is a free block of the page (the list's offsets are).
            unsafe {
                let mut avail = units::size(page, cur);
                let delta = if align > SLOB_UNIT {
                    page.base.add(cur * SLOB_UNIT).addr().wrapping_neg() & (align - 1)
                } else {
                    0
                } / SLOB_UNIT;
                if avail >= units + delta {
                    let mut next = units::next(page, cur);
                    if delta > 0 {
                        // A leading fragment of `delta` units stays free in front.
                        units::set(page, cur + delta, avail - delta, next);
                        units::set(page, cur, delta, cur + delta);
                        prev = Some(cur);
                        cur += delta;
                        avail -= delta;
                        next = units::next(page, cur);
                    }
                    let after = if avail == units {
                        next
                    } else {
                        units::set(page, cur + units, avail - units, next);
                        cur + units
                    };
                    match prev {
                        Some(p) => units::set(page, p, units::size(page, p), after),
                        None => page.free = after,
                    }
                    page.units -= units;
                    return Some(cur);
                }
                prev = Some(cur);
                cur = units::next(page, cur);
            }
        }
        None
    }

    fn allocate_small(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let units = units_for(layout.size());
        let list = list_for(layout.size());
        let head = self.lists[list];
        let mut page = head;
        let mut found = None;
        while !page.is_null() {
            // SAFETY: pages on a list are SLOB pages of ours.
            let p = unsafe { &mut *page };
            if p.units >= units {
                if let Some(at) = Self::page_alloc(p, units, layout.align()) {
                    found = Some((page, at));
                    break;
                }
            }
            page = p.next;
            if page == head {
                break;
            }
        }
        let (page, at) = if let Some(found) = found {
            found
        } else {
            let page = self.take_pages(1, 1).ok_or(AllocError)?;
            // SAFETY: a page just taken from the supplier: ours, free, on no list.
            unsafe {
                let p = &mut *page;
                p.kind = Kind::Slob;
                p.units = PAGE_UNITS;
                p.free = 0;
                units::set(p, 0, PAGE_UNITS, END);
                self.push_front(list, page);
                self.free -= SLOB_PAGE;
                self.free += PAGE_UNITS * SLOB_UNIT;
            }
            // SAFETY: as above. A page-aligned empty page fits any request below a page
            // aligned to at most a page.
            let at =
                Self::page_alloc(unsafe { &mut *page }, units, layout.align()).ok_or(AllocError)?;
            (page, at)
        };
        // SAFETY: `page` is a SLOB page of ours on list `list`.
        unsafe {
            if (*page).units == 0 {
                self.unlink(page);
            } else if self.lists[list] != page {
                // Linux's `list_rotate_to_front`: the next search starts here.
                self.lists[list] = page;
            }
        }
        self.in_use += units * SLOB_UNIT;
        self.free -= units * SLOB_UNIT;
        // SAFETY: `at` is an offset inside the page.
        let block = unsafe { (*page).base.add(at * SLOB_UNIT) };
        // SAFETY: inside a page: not null.
        let block = unsafe { NonNull::new_unchecked(block) };
        Ok(NonNull::slice_from_raw_parts(block, units * SLOB_UNIT))
    }

    /// Returns `units` units at offset `at` to `page` (`slob_free`).
    ///
    /// # Safety
    /// `page` is a SLOB page of ours and the units were handed out from it.
    unsafe fn page_free(&mut self, page: *mut Page, at: usize, units: usize, size: usize) {
        // SAFETY: per the caller; offsets read from the page's list are its free blocks.
        unsafe {
            let p = &mut *page;
            if cfg!(feature = "checked") {
                // Before the counts are trusted: a double free would make a page with a
                // live block look empty.
                Self::double_free_unless(!Self::overlaps_free(p, at, units), p, at);
            }
            self.in_use -= units * SLOB_UNIT;
            self.free += units * SLOB_UNIT;
            if p.units + units == PAGE_UNITS {
                // Every unit free: the page goes back to the supplier.
                if !p.next.is_null() {
                    self.unlink(page);
                }
                p.units = 0;
                p.free = END;
                p.run = 1;
                Self::give_pages(page);
                self.free -= PAGE_UNITS * SLOB_UNIT;
                self.free += SLOB_PAGE;
                return;
            }
            if p.free == END {
                // A full page becomes partly free: one block, and the list for its size.
                p.units = units;
                p.free = at;
                units::set(p, at, units, END);
                self.push_front(list_for(size), page);
                return;
            }
            p.units += units;
            if at < p.free {
                Self::double_free_unless(at + units <= p.free, p, at);
                let (size, next) = if at + units == p.free {
                    (units + units::size(p, p.free), units::next(p, p.free))
                } else {
                    (units, p.free)
                };
                units::set(p, at, size, next);
                p.free = at;
                return;
            }
            let mut prev = p.free;
            let mut next = units::next(p, prev);
            while at > next {
                prev = next;
                next = units::next(p, prev);
            }
            Self::double_free_unless(
                prev + units::size(p, prev) <= at && at + units <= next,
                p,
                at,
            );
            if next != END && at + units == next {
                units::set(p, at, units + units::size(p, next), units::next(p, next));
            } else {
                units::set(p, at, units, next);
            }
            if prev + units::size(p, prev) == at {
                let merged = units::size(p, prev) + units::size(p, at);
                units::set(p, prev, merged, units::next(p, at));
            } else {
                units::set(p, prev, units::size(p, prev), at);
            }
        }
    }

    /// Whether units `at..at + units` overlap a free block of `page`. O(free blocks).
    fn overlaps_free(page: &Page, at: usize, units: usize) -> bool {
        let mut cur = page.free;
        while cur != END && cur < at + units {
            // SAFETY: the page's free list holds its free blocks.
            let (size, next) = unsafe { (units::size(page, cur), units::next(page, cur)) };
            if cur + size > at {
                return true;
            }
            cur = next;
        }
        false
    }

    /// Under `checked`, panics unless `ok` (the freed block overlaps no free block).
    #[inline]
    fn double_free_unless(ok: bool, page: &Page, at: usize) {
        if cfg!(feature = "checked") && !ok {
            let address = page.base.wrapping_add(at * SLOB_UNIT);
            heapkit_core::invalid_use(
                CRATE_NAME,
                "deallocate",
                address,
                "block overlaps a free block of its page (freed already?)",
            );
        }
        debug_assert!(ok, "heapkit-fit: SLOB block freed twice");
    }

    /// The usable size of the largest free block: a free run of pages, or a free block in a
    /// SLOB page. Walks every page and every listed page's free list.
    fn largest_free(&self) -> usize {
        let mut largest = 0;
        for r in self.regions.iter() {
            let mut run = 0;
            for i in 0..r.count {
                // SAFETY: descriptors of the region.
                let page = unsafe { &*r.pages.add(i) };
                if page.kind == Kind::Free {
                    run += SLOB_PAGE;
                    largest = largest.max(run);
                } else {
                    run = 0;
                }
                if page.kind == Kind::Slob {
                    let mut at = page.free;
                    while at != END {
                        // SAFETY: the page's free list holds its free blocks.
                        unsafe {
                            largest = largest.max(units::size(page, at) * SLOB_UNIT);
                            at = units::next(page, at);
                        }
                    }
                }
            }
        }
        largest
    }

    fn check_page(page: &Page) -> Result<usize, Corruption> {
        let corrupt = |at: usize, what| {
            Corruption::new(
                CRATE_NAME,
                page.base.wrapping_add(at * SLOB_UNIT).addr(),
                what,
            )
        };
        let (mut at, mut end, mut units) = (page.free, 0, 0);
        let mut first = true;
        while at != END {
            if at >= END || (!first && at <= end) {
                return Err(corrupt(
                    at,
                    "SLOB free list is out of address order (or merged)",
                ));
            }
            first = false;
            // SAFETY: `at` is inside the page; reading its units is reading page memory
            // (a block's second unit, read for blocks of two units or more, is inside too
            // when the block's size fits the page, checked next).
            let size = unsafe { units::size(page, at) };
            if at + size > END {
                return Err(corrupt(at, "SLOB free block runs past its page"));
            }
            units += size;
            end = at + size;
            // SAFETY: as above.
            at = unsafe { units::next(page, at) };
        }
        if units != page.units {
            return Err(corrupt(0, "SLOB page's free units differ from its list")
                .expected(units, page.units));
        }
        Ok(units)
    }
}

// SAFETY: SLOB blocks come from a page's free list, which holds only free units of the
// page, and runs from free pages; freeing returns exactly the units handed out (the layout
// gives their number), so live blocks never overlap; alignment is applied to the address.
unsafe impl Backend for Slob {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() < SLOB_PAGE && layout.align() <= SLOB_PAGE {
            return self.allocate_small(layout);
        }
        // At least one page: a size-0 request aligned beyond a page gets a real page too
        // (a run of no pages would mark whatever page it lands on a run head).
        let count = layout.size().div_ceil(SLOB_PAGE).max(1);
        let head = self.take_pages(count, layout.align()).ok_or(AllocError)?;
        self.in_use += count * SLOB_PAGE;
        self.free -= count * SLOB_PAGE;
        // SAFETY: a page of ours.
        let base = unsafe { NonNull::new_unchecked((*head).base) };
        Ok(NonNull::slice_from_raw_parts(base, count * SLOB_PAGE))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let addr = ptr.as_ptr().addr();
        let fail = |reason: &str| -> ! {
            heapkit_core::invalid_use(CRATE_NAME, "deallocate", ptr.as_ptr(), reason)
        };
        let Some((region, index)) = self.page_of(addr) else {
            fail("pointer is not in memory this allocator manages")
        };
        // SAFETY: `index < region.count`: a descriptor of the region.
        let page = unsafe { region.pages.add(index) };
        // SAFETY: as above.
        let (kind, base, run) = unsafe { ((*page).kind, (*page).base, (*page).run) };
        match kind {
            Kind::Slob => {
                let at = (addr - base.addr()) / SLOB_UNIT;
                // A layout aligned beyond a page was served by a run, never from a page
                // of SLOB blocks (a run freed twice after its page was reused).
                if cfg!(feature = "checked")
                    && (addr % SLOB_UNIT != 0
                        || at + units_for(layout.size()) > END
                        || layout.align() > SLOB_PAGE)
                {
                    fail("no block of that size starts here");
                }
                // SAFETY: per the caller, a live block of `layout.size()` bytes (rounded
                // to units) handed out from this page.
                unsafe { self.page_free(page, at, units_for(layout.size()), layout.size()) };
            }
            Kind::RunHead if addr == base.addr() => {
                if cfg!(feature = "checked") && layout.size() > run * SLOB_PAGE {
                    fail("layout is larger than the block");
                }
                // Every size that fits a run asks for exactly its pages: a smaller one is
                // another run's layout (freed already, its head now a longer run's).
                if cfg!(feature = "checked") && layout.size().div_ceil(SLOB_PAGE).max(1) != run {
                    fail("layout is smaller than the run (a run freed already?)");
                }
                // Runs serve a page or more, or an alignment beyond a page; any other
                // layout was a SLOB block (freed twice after its page became a run).
                if cfg!(feature = "checked")
                    && layout.size() < SLOB_PAGE
                    && layout.align() <= SLOB_PAGE
                {
                    fail("no run was allocated with this layout (a SLOB block freed already?)");
                }
                // SAFETY: a run head of ours.
                unsafe { Self::give_pages(page) };
                self.in_use -= run * SLOB_PAGE;
                self.free += run * SLOB_PAGE;
            }
            _ => fail("no allocated block starts here (freed already, or a pointer into a block)"),
        }
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.regions.containing(ptr.as_ptr().addr()).is_some()
    }

    fn stats(&self) -> Stats {
        Stats {
            capacity: self.capacity,
            in_use: self.in_use,
            free: self.free,
            largest_free: self.largest_free(),
            metadata: self.capacity - self.in_use - self.free,
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        let corrupt = |at: usize, what| Corruption::new(CRATE_NAME, at, what);
        let (mut in_use, mut free, mut listed) = (0, 0, 0);
        for r in self.regions.iter() {
            let mut tail = 0usize;
            for i in 0..r.count {
                // SAFETY: descriptors of the region.
                let page = unsafe { &*r.pages.add(i) };
                let at = page.base.addr();
                if (tail > 0) != (page.kind == Kind::RunTail) {
                    return Err(corrupt(at, "a run's pages disagree with its head"));
                }
                tail = tail.saturating_sub(1);
                match page.kind {
                    Kind::Free => free += SLOB_PAGE,
                    Kind::RunHead => {
                        if page.run == 0 || i + page.run > r.count {
                            return Err(corrupt(at, "a run's length is out of its region"));
                        }
                        tail = page.run - 1;
                        in_use += page.run * SLOB_PAGE;
                    }
                    Kind::RunTail => {}
                    Kind::Slob => {
                        let units = Self::check_page(page)?;
                        if (units == 0) != page.next.is_null() {
                            return Err(corrupt(
                                at,
                                "a SLOB page with free units is on no list (or a full one is)",
                            ));
                        }
                        listed += usize::from(units != 0);
                        free += units * SLOB_UNIT;
                        in_use += (PAGE_UNITS - units) * SLOB_UNIT;
                    }
                }
            }
        }
        let mut on_lists = 0;
        for &head in &self.lists {
            let mut page = head;
            while !page.is_null() {
                on_lists += 1;
                if on_lists > listed {
                    return Err(corrupt(
                        page.addr(),
                        "page lists hold more pages than have free units",
                    ));
                }
                // SAFETY: pages on a list are descriptors of ours (counted, so a cycle
                // ends above).
                let p = unsafe { &*page };
                // SAFETY: as above.
                if p.kind != Kind::Slob || unsafe { (*p.next).prev } != page {
                    return Err(corrupt(p.base.addr(), "page list is broken"));
                }
                page = if p.next == head {
                    ptr::null_mut()
                } else {
                    p.next
                };
            }
        }
        let counts = [
            (
                listed,
                on_lists,
                "pages with free units missing from the page lists",
            ),
            (
                in_use,
                self.in_use,
                "in-use byte count differs from the pages",
            ),
            (free, self.free, "free byte count differs from the pages"),
        ];
        for (walked, kept, what) in counts {
            if walked != kept {
                return Err(corrupt(0, what).expected(walked, kept));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Slob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slob")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
