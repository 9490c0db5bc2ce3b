//! The kit must fail broken allocators: each backend here is the reference with one bug
//! planted, and each test asserts the shadow model reports that bug's kind of violation
//! from random operation sequences, the way it would for a real backend.

use std::ptr::NonNull;

use heapkit_core::{AllocError, Backend, Corruption, Layout, Local, Stats};
use heapkit_testkit::contract::find_violation;
use heapkit_testkit::{Harness, Op, Profile, Reference, Regions, Violation};

const BUDGET: usize = 64 * 1024;

/// Forwards everything to a reference backend; each bug overrides one method.
macro_rules! forward_rest {
    () => {
        fn owns(&self, ptr: NonNull<u8>) -> bool {
            self.inner.owns(ptr)
        }
        fn stats(&self) -> Stats {
            self.inner.stats()
        }
    };
}

/// Every fourth allocation hands out the previous block again if it is still live.
struct Overlapping {
    inner: Reference,
    calls: usize,
    last: Option<NonNull<[u8]>>,
}

// SAFETY: deliberately broken, for the kit's self-test only.
unsafe impl Backend for Overlapping {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.calls += 1;
        if let Some(last) = self.last.filter(|last| {
            self.calls % 4 == 0
                && last.len() >= layout.size()
                && last.cast::<u8>().as_ptr().addr() % layout.align() == 0
        }) {
            return Ok(last);
        }
        let block = self.inner.allocate(layout)?;
        self.last = Some(block);
        Ok(block)
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if self.last.is_some_and(|last| last.cast::<u8>() == ptr) {
            self.last = None;
        }
        // SAFETY: forwarded.
        unsafe { self.inner.deallocate(ptr, layout) }
    }
    forward_rest!();
}

/// Requests aligned to 2 or more come back one byte past an aligned address.
struct Misaligning {
    inner: Reference,
}

// SAFETY: deliberately broken, for the kit's self-test only.
unsafe impl Backend for Misaligning {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() < 2 {
            return self.inner.allocate(layout);
        }
        let padded = Layout::from_size_align(layout.size() + 1, layout.align()).unwrap();
        let block = self.inner.allocate(padded)?;
        // SAFETY: one byte past the start of a block at least `size + 1` long.
        let shifted = unsafe { block.cast::<u8>().add(1) };
        Ok(NonNull::slice_from_raw_parts(shifted, layout.size()))
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded (the harness stops at the first misaligned block, so shifted
        // blocks are never freed).
        unsafe { self.inner.deallocate(ptr, layout) }
    }
    forward_rest!();
}

/// Every third free is dropped on the floor.
struct LosingFrees {
    inner: Reference,
    frees: usize,
}

// SAFETY: deliberately broken (a leak), for the kit's self-test only.
unsafe impl Backend for LosingFrees {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.inner.allocate(layout)
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.frees += 1;
        if self.frees % 3 != 0 {
            // SAFETY: forwarded.
            unsafe { self.inner.deallocate(ptr, layout) }
        }
    }
    forward_rest!();
}

/// Every attempt to grow in place first flips a byte of the most recently allocated other
/// block, as a grow that scribbles on its neighbour before finding it cannot grow would.
struct CorruptingGrow {
    inner: Reference,
    recent: Vec<NonNull<[u8]>>,
}

// SAFETY: deliberately broken, for the kit's self-test only.
unsafe impl Backend for CorruptingGrow {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.inner.allocate(layout)?;
        self.recent.push(block);
        Ok(block)
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.recent.retain(|b| b.cast::<u8>() != ptr);
        // SAFETY: forwarded.
        unsafe { self.inner.deallocate(ptr, layout) }
    }
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let neighbour = self
            .recent
            .iter()
            .rev()
            .find(|b| b.cast::<u8>() != ptr && !b.is_empty());
        if let Some(neighbour) = neighbour {
            let byte = neighbour.cast::<u8>().as_ptr();
            // SAFETY: the neighbour is a live block with at least one byte.
            unsafe { byte.write(!byte.read()) };
        }
        // SAFETY: forwarded.
        unsafe { self.inner.grow_in_place(ptr, old_layout, new_layout) }
    }
    forward_rest!();
}

fn reference() -> Reference {
    Reference::with_budget(BUDGET)
}

fn violation_of<B: Backend>(make: impl Fn() -> B) -> Violation {
    find_violation(Profile::default(), |_: &mut Regions| Local::new(make()))
        .expect("the shadow model let a broken allocator pass")
        .violation
}

#[test]
#[cfg_attr(
    miri,
    ignore = "searches and shrinks thousands of sequences; the harness's own memory safety is covered by the contract tests under miri"
)]
fn reference_passes() {
    assert_eq!(
        find_violation(
            Profile::default(),
            |_: &mut Regions| Local::new(reference())
        ),
        None
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "searches and shrinks thousands of sequences; the harness's own memory safety is covered by the contract tests under miri"
)]
fn catches_overlapping_blocks() {
    let violation = violation_of(|| Overlapping {
        inner: reference(),
        calls: 0,
        last: None,
    });
    assert!(
        matches!(violation, Violation::Overlap { .. }),
        "{violation}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "searches and shrinks thousands of sequences; the harness's own memory safety is covered by the contract tests under miri"
)]
fn catches_misaligned_blocks() {
    let violation = violation_of(|| Misaligning { inner: reference() });
    assert!(
        matches!(violation, Violation::Misaligned { .. }),
        "{violation}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "searches and shrinks thousands of sequences; the harness's own memory safety is covered by the contract tests under miri"
)]
fn catches_lost_frees() {
    let violation = violation_of(|| LosingFrees {
        inner: reference(),
        frees: 0,
    });
    assert!(
        matches!(violation, Violation::InUseMismatch { .. }),
        "{violation}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "searches and shrinks thousands of sequences; the harness's own memory safety is covered by the contract tests under miri"
)]
fn catches_lost_frees_without_exact_in_use() {
    // A combinator profile only checks `in_use >= live`: the leak must still show when
    // everything is freed at the end.
    let profile = Profile {
        exact_in_use: false,
        ..Profile::default()
    };
    let error = find_violation(profile, |_: &mut Regions| {
        Local::new(LosingFrees {
            inner: reference(),
            frees: 0,
        })
    })
    .expect("a leak went unnoticed");
    assert!(
        matches!(error.violation, Violation::NotRestored { .. }),
        "{error}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "searches and shrinks thousands of sequences; the harness's own memory safety is covered by the contract tests under miri"
)]
fn catches_neighbour_corruption_on_grow() {
    let violation = violation_of(|| CorruptingGrow {
        inner: reference(),
        recent: Vec::new(),
    });
    assert!(
        matches!(violation, Violation::Corrupted { .. }),
        "{violation}"
    );
}

/// Its own invariant check fails once ten blocks have been handed out: the kit must report
/// the corruption at that operation, not at the end.
struct SelfReporting {
    inner: Reference,
    allocations: usize,
}

// SAFETY: a correct allocator (the reference's) whose `check` reports a planted corruption.
unsafe impl Backend for SelfReporting {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocations += 1;
        self.inner.allocate(layout)
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.inner.deallocate(ptr, layout) }
    }
    fn check(&self) -> Result<(), Corruption> {
        if self.allocations >= 10 {
            Err(Corruption::new("planted", 0x1000, "ten blocks handed out"))
        } else {
            Ok(())
        }
    }
    forward_rest!();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under miri the harness checks every 64th operation, not each"
)]
fn reports_the_allocators_own_check_at_the_operation() {
    let mut harness = Harness::new(Profile::default(), |_: &mut Regions| {
        Local::new(SelfReporting {
            inner: reference(),
            allocations: 0,
        })
    });
    let alloc = Op::Alloc {
        size: 8,
        align: 0,
        zeroed: false,
    };
    for _ in 0..9 {
        harness.apply(alloc).unwrap();
    }
    let violation = harness.apply(alloc).unwrap_err();
    assert_eq!(
        violation,
        Violation::HeapCorrupted(Corruption::new("planted", 0x1000, "ten blocks handed out"))
    );
    assert_eq!(
        violation.to_string(),
        "planted: heap corrupted at 0x1000: ten blocks handed out"
    );
}
