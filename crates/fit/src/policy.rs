//! The placement policies: each is the free-block index of a [`FitHeap`](crate::FitHeap),
//! deciding which free block an allocation is cut from.
//!
//! The heap talks to its index through the sealed [`Index`] trait: `remove` a free block
//! (returning where it was), `insert` one (at a removed block's place, or as a newly
//! freed block), `find` a block that fits. A split remainder or a merged block is
//! re-inserted at the place of the block it came from, so a list keeps its order across
//! splits and merges, and next fit's rover follows the block it pointed at.

use heapkit_core::Corruption;

use crate::heap::block::Block;
use crate::heap::{gap_for, Need, CRATE_NAME, WORD};

pub use crate::tree::{AddressOrderedFirstFit, BestFit};

/// A placement policy of [`FitHeap`](crate::FitHeap): [`FirstFit`], [`NextFit`],
/// [`AddressOrderedFirstFit`] or [`BestFit`]. Sealed: the heap relies on each policy's
/// index being exact.
pub trait Policy: private::Index {}

/// The policies whose index is a search tree, [`AddressOrderedFirstFit`] and [`BestFit`]:
/// the ones a [`HeaderlessHeap`](crate::HeaderlessHeap) offers. Sealed.
pub trait TreePolicy: Policy + private::Ordered {}

pub(crate) mod private {
    use super::{Block, Corruption, Need};

    /// The order of a tree policy's index.
    pub trait Ordered {
        /// Address order, or size order with ties by address.
        type Order: crate::tree::Order;
    }

    /// The free-block index behind a [`Policy`](super::Policy).
    pub trait Index: Sized {
        /// The empty index.
        const NEW: Self;
        /// The policy's name, for `Debug` and reports.
        const NAME: &'static str;
        /// The smallest block: a header, the index's words and a footer, in granules.
        const MIN_BLOCK: usize;
        /// Where a removed block was, so a block replacing it can take its place.
        type Slot: Copy;

        /// Takes `block` (free, `size` bytes, in the index) out of the index, returning
        /// its place. Reads the index's words of `block` and of other free blocks, whose
        /// headers must be as they were inserted.
        ///
        /// # Safety
        /// `block` is in the index with `size` bytes.
        unsafe fn remove(&mut self, block: Block, size: usize) -> Self::Slot;

        /// Adds `block` (free, header and footer written: `size` bytes) to the index, at
        /// `slot` (the place of blocks removed by the operation now finishing, the last
        /// removed first) or, for `None`, as a newly freed block.
        ///
        /// # Safety
        /// `block` is a free block of ours, in no index, its words ours to write; `slot`
        /// came from the last `remove` of this operation, and no other `insert` with a slot
        /// came between.
        unsafe fn insert(&mut self, block: Block, size: usize, slot: Option<Self::Slot>);

        /// Merges two slots of one operation (both neighbours of a freed block were free):
        /// the block that replaces them takes `into`'s place, and the rover if either had
        /// it.
        fn merge_slots(gone: Self::Slot, into: Self::Slot) -> Self::Slot;

        /// The free block the policy picks for `need`, or `None` when none fits.
        fn find(&self, need: Need) -> Option<Block>;

        /// Notes that an allocation is cut from `block` (next fit moves its rover there).
        fn taking(&mut self, block: Block) {
            let _ = block;
        }

        /// Bytes of the largest free block (header included), or 0.
        fn largest(&self) -> usize;

        /// Calls `each` with every free block in the order the policy searches them.
        fn for_each(&self, each: &mut dyn FnMut(Block));

        /// Checks the index's own structure, reading a node only once `valid` said it is a
        /// free block's header in some region, and only through the block `valid` returns
        /// (rebuilt from the region's pointer, with its size). At most `bound` nodes
        /// are visited (so a cycle ends); returns the number of nodes.
        ///
        /// # Errors
        /// The first broken invariant.
        fn check(
            &self,
            valid: &dyn Fn(Block) -> Option<(Block, usize)>,
            bound: usize,
        ) -> Result<usize, Corruption>;
    }
}

use private::Index;

/// Link words of a list node.
const NEXT: usize = 1;
const PREV: usize = 2;

/// A doubly linked list of free blocks: the index of [`FirstFit`] and [`NextFit`].
#[derive(Debug)]
struct List {
    head: Block,
}

impl List {
    const NEW: Self = Self { head: Block::NONE };

    /// Unlinks `block`, returning its predecessor (`NONE` at the head) and successor.
    unsafe fn unlink(&mut self, block: Block) -> (Block, Block) {
        // SAFETY: per the caller, `block` is on the list: its links and its neighbours'
        // are list links.
        unsafe {
            let (next, prev) = (block.link(NEXT), block.link(PREV));
            if prev.is_none() {
                self.head = next;
            } else {
                prev.set_link(NEXT, next);
            }
            if !next.is_none() {
                next.set_link(PREV, prev);
            }
            (prev, next)
        }
    }

    /// Links `block` after `prev` (`NONE`: at the head).
    unsafe fn link_after(&mut self, block: Block, prev: Block) {
        // SAFETY: per the caller, `block` is a free block on no list and `prev` is on this
        // one (or `NONE`).
        unsafe {
            let next = if prev.is_none() {
                core::mem::replace(&mut self.head, block)
            } else {
                let next = prev.link(NEXT);
                prev.set_link(NEXT, block);
                next
            };
            block.set_link(NEXT, next);
            block.set_link(PREV, prev);
            if !next.is_none() {
                next.set_link(PREV, block);
            }
        }
    }

    /// The first block that fits from `from` (`NONE`: the head) to the end of the list,
    /// then from the head up to `from`.
    fn find_from(&self, from: Block, need: Need) -> Option<Block> {
        let start = if from.is_none() { self.head } else { from };
        let fits = |node: Block| {
            // SAFETY: nodes on the list are free blocks with valid headers and links.
            let size = unsafe { node.size() };
            gap_for(node, size, need).is_some()
        };
        let mut node = start;
        while !node.is_none() {
            if fits(node) {
                return Some(node);
            }
            // SAFETY: as above.
            node = unsafe { node.link(NEXT) };
        }
        let mut node = self.head;
        while !node.is_none() && node != start {
            if fits(node) {
                return Some(node);
            }
            // SAFETY: as above.
            node = unsafe { node.link(NEXT) };
        }
        None
    }

    fn largest(&self) -> usize {
        let mut largest = 0;
        let mut node = self.head;
        while !node.is_none() {
            // SAFETY: nodes on the list are free blocks with valid headers and links.
            unsafe {
                largest = largest.max(node.size());
                node = node.link(NEXT);
            }
        }
        largest
    }

    fn for_each_from(&self, from: Block, each: &mut dyn FnMut(Block)) {
        let start = if from.is_none() { self.head } else { from };
        let mut node = start;
        while !node.is_none() {
            each(node);
            // SAFETY: nodes on the list are free blocks with valid links.
            node = unsafe { node.link(NEXT) };
        }
        let mut node = self.head;
        while !node.is_none() && node != start {
            each(node);
            // SAFETY: as above.
            node = unsafe { node.link(NEXT) };
        }
    }

    fn check(
        &self,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        bound: usize,
    ) -> Result<usize, Corruption> {
        let corrupt = |at: Block, what| Corruption::new(CRATE_NAME, at.addr(), what);
        let (mut node, mut prev, mut seen) = (self.head, Block::NONE, 0);
        while !node.is_none() {
            seen += 1;
            if seen > bound {
                return Err(corrupt(
                    node,
                    "the free list holds more blocks than are free (a cycle?)",
                )
                .expected(bound, seen));
            }
            let Some((at, _)) = valid(node) else {
                return Err(corrupt(node, "free-list node is not a free block"));
            };
            // SAFETY: `valid` found a free block's header there, inside a region, and gave
            // it back rebuilt from the region's pointer.
            let (back, next) = unsafe { (at.link(PREV), at.link(NEXT)) };
            if back != prev {
                return Err(corrupt(node, "free-list node's back link is wrong"));
            }
            (prev, node) = (node, next);
        }
        Ok(seen)
    }
}

/// First fit over a LIFO free list (Johnstone and Wilson's "LIFO first fit"): a newly
/// freed block goes to the front of the list, and an allocation takes the first block
/// that fits, walking from the front. A freed block that merges with a free neighbour,
/// and the remainder of a split, stay at that neighbour's (the split block's) place.
///
/// Allocation is O(free blocks) in the worst case; free and in-place resizing are O(1).
/// Four words of index per free block (header, two links, footer).
#[derive(Debug)]
pub struct FirstFit {
    list: List,
}

impl Policy for FirstFit {}

/// Where a list node was: its predecessor (`NONE` at the head), and whether the rover
/// pointed at it.
#[derive(Clone, Copy, Debug)]
pub struct ListSlot {
    prev: Block,
    rover: bool,
}

impl Index for FirstFit {
    const NEW: Self = Self { list: List::NEW };
    const NAME: &'static str = "FirstFit";
    const MIN_BLOCK: usize = 4 * WORD;
    type Slot = ListSlot;

    unsafe fn remove(&mut self, block: Block, _size: usize) -> ListSlot {
        // SAFETY: forwarded caller guarantees.
        let (prev, _) = unsafe { self.list.unlink(block) };
        ListSlot { prev, rover: false }
    }

    unsafe fn insert(&mut self, block: Block, _size: usize, slot: Option<ListSlot>) {
        let prev = slot.map_or(Block::NONE, |slot| slot.prev);
        // SAFETY: forwarded caller guarantees; `prev` is still on the list.
        unsafe { self.list.link_after(block, prev) }
    }

    fn merge_slots(gone: ListSlot, into: ListSlot) -> ListSlot {
        ListSlot {
            prev: into.prev,
            rover: gone.rover || into.rover,
        }
    }

    fn find(&self, need: Need) -> Option<Block> {
        self.list.find_from(Block::NONE, need)
    }

    fn largest(&self) -> usize {
        self.list.largest()
    }

    fn for_each(&self, each: &mut dyn FnMut(Block)) {
        self.list.for_each_from(Block::NONE, each);
    }

    fn check(
        &self,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        bound: usize,
    ) -> Result<usize, Corruption> {
        self.list.check(valid, bound)
    }
}

/// Next fit (Knuth, TAOCP 2.5, exercise 6): first fit whose search starts where the last
/// one ended, over the same LIFO list as [`FirstFit`].
///
/// The search walks from the rover to the end of the list, then from the front up to the
/// rover. After an allocation the rover points at what is left of the block cut from, in
/// the block's place in the list (the free gap an alignment left in front of it, or else
/// the remainder after it), or at the block's successor when it was taken whole. When the rover's block merges with a freed
/// neighbour, the rover moves to the merged block. Newly freed blocks go to the front.
///
/// Allocation is O(free blocks) in the worst case; free and in-place resizing are O(1).
#[derive(Debug)]
pub struct NextFit {
    list: List,
    rover: Block,
}

impl Policy for NextFit {}

impl Index for NextFit {
    const NEW: Self = Self {
        list: List::NEW,
        rover: Block::NONE,
    };
    const NAME: &'static str = "NextFit";
    const MIN_BLOCK: usize = 4 * WORD;
    type Slot = ListSlot;

    unsafe fn remove(&mut self, block: Block, _size: usize) -> ListSlot {
        // SAFETY: forwarded caller guarantees.
        let (prev, next) = unsafe { self.list.unlink(block) };
        let rover = self.rover == block;
        if rover {
            self.rover = next;
        }
        ListSlot { prev, rover }
    }

    unsafe fn insert(&mut self, block: Block, _size: usize, slot: Option<ListSlot>) {
        let prev = slot.map_or(Block::NONE, |slot| slot.prev);
        // SAFETY: forwarded caller guarantees; `prev` is still on the list.
        unsafe { self.list.link_after(block, prev) }
        if slot.is_some_and(|slot| slot.rover) {
            self.rover = block;
        }
    }

    fn merge_slots(gone: ListSlot, into: ListSlot) -> ListSlot {
        FirstFit::merge_slots(gone, into)
    }

    fn find(&self, need: Need) -> Option<Block> {
        self.list.find_from(self.rover, need)
    }

    fn taking(&mut self, block: Block) {
        self.rover = block;
    }

    fn largest(&self) -> usize {
        self.list.largest()
    }

    fn for_each(&self, each: &mut dyn FnMut(Block)) {
        self.list.for_each_from(self.rover, each);
    }

    fn check(
        &self,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        bound: usize,
    ) -> Result<usize, Corruption> {
        let seen = self.list.check(valid, bound)?;
        if !self.rover.is_none() {
            let mut on_list = false;
            self.list
                .for_each_from(Block::NONE, &mut |node| on_list |= node == self.rover);
            if !on_list {
                return Err(Corruption::new(
                    CRATE_NAME,
                    self.rover.addr(),
                    "next fit's rover is not on the free list",
                ));
            }
        }
        Ok(seen)
    }
}
