//! [`Regions`]: memory handed to backends under test, owned by the harness.

use std::alloc::{alloc, dealloc, Layout};
use std::ops::Range;
use std::ptr::NonNull;

/// Memory regions for a backend under test.
///
/// A backend's factory takes its regions from here and builds itself over them with its
/// `unsafe` raw-region constructor. The harness then knows every address the backend may
/// hand out (and flags any other), and frees the regions only after the backend is gone.
#[derive(Debug, Default)]
pub struct Regions {
    owned: Vec<(NonNull<u8>, Layout)>,
    ranges: Vec<Range<usize>>,
}

impl Regions {
    /// No regions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh region of `size` bytes starting at a multiple of `align`, uninitialised.
    ///
    /// The pointer stays valid until this `Regions` is dropped.
    ///
    /// # Panics
    ///
    /// If `size` is zero, `align` is not a power of two, or the system is out of memory.
    pub fn take(&mut self, size: usize, align: usize) -> NonNull<[u8]> {
        let region = self.take_side_buffer(size, align);
        self.add_bounds(region.cast(), size);
        region
    }

    /// Like [`take`](Self::take), for a buffer the backend keeps bookkeeping in (a bitmap
    /// given apart from its region): owned here, but not memory blocks may come from.
    ///
    /// # Panics
    ///
    /// As for [`take`](Self::take).
    pub fn take_side_buffer(&mut self, size: usize, align: usize) -> NonNull<[u8]> {
        assert!(size > 0, "a test region needs at least one byte");
        let layout = Layout::from_size_align(size, align).expect("valid region layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) }).expect("out of memory for a test region");
        self.owned.push((ptr, layout));
        NonNull::slice_from_raw_parts(ptr, size)
    }

    /// Records `len` bytes at `start` as memory the backend may hand out, for memory the
    /// test obtained elsewhere (a `static`, a sub-slice of a taken region).
    pub fn add_bounds(&mut self, start: NonNull<u8>, len: usize) {
        let start = start.as_ptr().addr();
        self.ranges.push(start..start + len);
    }

    /// Every range recorded so far.
    pub fn bounds(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// Whether `start..start + len` lies inside one recorded range. With no ranges
    /// recorded (a backend on the system allocator) nothing can be checked: `true`.
    pub fn contains(&self, start: usize, len: usize) -> bool {
        self.ranges.is_empty()
            || self
                .ranges
                .iter()
                .any(|r| r.start <= start && start.checked_add(len).is_some_and(|end| end <= r.end))
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        for &(ptr, layout) in &self.owned {
            // SAFETY: allocated in `take` with exactly this layout, freed once here.
            unsafe { dealloc(ptr.as_ptr(), layout) }
        }
    }
}
