//! An intrusive AVL tree of free blocks, each node keeping its subtree's largest block
//! size: the index of [`AddressOrderedFirstFit`] (keyed by address) and [`BestFit`]
//! (keyed by size, then address).
//!
//! A node is a free block; its words after the header hold the left and right child, the
//! node's height and the largest block size in its subtree:
//!
//! ```text
//!  │ size | FREE │ left │ right │ height │ max │ … │ size │
//! ```
//!
//! so a node is at least six words (48 bytes on 64-bit targets, 24 on 32-bit ones).
//! Insert and remove are the textbook recursive AVL operations (depth at most
//! 1.44·log2(n) + 2), each recomputing heights and maxima on the way back up. Free blocks
//! of four words, the heap's smallest, are too small for a node: they sit in a treap
//! beside the tree ([`Smallest`]), so the tree policies' blocks are as small as first
//! fit's.

use heapkit_core::Corruption;

use crate::heap::block::Block;
use crate::heap::{gap_for, Need, CRATE_NAME, GRANULE, WORD};
use crate::policy::private::{Index, Ordered};
use crate::policy::{Policy, TreePolicy};
use crate::smallest::{Smallest, Tiny, SMALL_BLOCK};

const LEFT: usize = 1;
const RIGHT: usize = 2;
const HEIGHT: usize = 3;
const MAX: usize = 4;

/// The smallest block a tree node fits in: header, four index words, footer.
const TREE_BLOCK: usize = 6 * WORD;
// Block sizes are whole granules, so the only size below a node's is the treap's.
const _: () = assert!(TREE_BLOCK - SMALL_BLOCK == crate::heap::GRANULE);

/// The deepest a valid tree of any size can be (AVL height is below 1.45·log2(n + 2),
/// and n is below 2^64): deeper means a corrupted tree, and `check` stops there.
const MAX_HEIGHT: usize = 96;

/// How a tree orders its nodes. Public only as the sealed [`TreePolicy`]'s associated
/// type: its module is private.
pub trait Order {
    /// Whether every smallest block comes before every tree node in this order (size
    /// order), so a fitting smallest block ends the search.
    const SMALLEST_FIRST: bool;

    /// Whether block `a` of `a_size` bytes sorts before block `b` of `b_size`.
    fn before(a: Block, a_size: usize, b: Block, b_size: usize) -> bool;
}

/// An AVL tree in the order `O`.
#[derive(Debug)]
struct Tree<O> {
    root: Block,
    order: core::marker::PhantomData<O>,
}

/// The words of a node, read and written through the block.
///
/// # Safety (every function)
/// Every non-`NONE` block passed is a node of the tree: a free block whose index words
/// are the tree's, with its header holding the size it was inserted with.
mod node {
    use super::{Block, HEIGHT, LEFT, MAX, RIGHT};

    pub(super) unsafe fn left(n: Block) -> Block {
        // SAFETY: per the module contract.
        unsafe { n.link(LEFT) }
    }

    pub(super) unsafe fn right(n: Block) -> Block {
        // SAFETY: per the module contract.
        unsafe { n.link(RIGHT) }
    }

    pub(super) unsafe fn set_left(n: Block, to: Block) {
        // SAFETY: per the module contract.
        unsafe { n.set_link(LEFT, to) }
    }

    pub(super) unsafe fn set_right(n: Block, to: Block) {
        // SAFETY: per the module contract.
        unsafe { n.set_link(RIGHT, to) }
    }

    pub(super) unsafe fn height(n: Block) -> usize {
        if n.is_none() {
            0
        } else {
            // SAFETY: per the module contract.
            unsafe { n.get(HEIGHT) }
        }
    }

    pub(super) unsafe fn max(n: Block) -> usize {
        if n.is_none() {
            0
        } else {
            // SAFETY: per the module contract.
            unsafe { n.get(MAX) }
        }
    }

    /// Recomputes `n`'s height and subtree maximum from its children.
    pub(super) unsafe fn update(n: Block) {
        // SAFETY: per the module contract.
        unsafe {
            let (l, r) = (left(n), right(n));
            n.put(HEIGHT, 1 + height(l).max(height(r)));
            n.put(MAX, n.size().max(max(l)).max(max(r)));
        }
    }

    pub(super) unsafe fn rotate_right(n: Block) -> Block {
        // SAFETY: per the module contract; `n` is left-heavy, so its left child exists.
        unsafe {
            let l = left(n);
            set_left(n, right(l));
            update(n);
            set_right(l, n);
            update(l);
            l
        }
    }

    pub(super) unsafe fn rotate_left(n: Block) -> Block {
        // SAFETY: per the module contract; `n` is right-heavy, so its right child exists.
        unsafe {
            let r = right(n);
            set_right(n, left(r));
            update(n);
            set_left(r, n);
            update(r);
            r
        }
    }

    /// Restores the AVL balance at `n` (its subtrees balanced, heights differing by at
    /// most two) and returns the subtree's new root.
    pub(super) unsafe fn balance(n: Block) -> Block {
        // SAFETY: per the module contract.
        unsafe {
            let (l, r) = (left(n), right(n));
            let (hl, hr) = (height(l), height(r));
            if hl > hr + 1 {
                if height(left(l)) < height(right(l)) {
                    set_left(n, rotate_left(l));
                }
                return rotate_right(n);
            }
            if hr > hl + 1 {
                if height(right(r)) < height(left(r)) {
                    set_right(n, rotate_right(r));
                }
                return rotate_left(n);
            }
            update(n);
            n
        }
    }
}

impl<O: Order> Tree<O> {
    const NEW: Self = Self {
        root: Block::NONE,
        order: core::marker::PhantomData,
    };

    unsafe fn insert_at(n: Block, new: Block, size: usize) -> Block {
        // SAFETY: `n` and its subtree are nodes; `new` is a free block of `size` bytes.
        unsafe {
            if n.is_none() {
                node::set_left(new, Block::NONE);
                node::set_right(new, Block::NONE);
                node::update(new);
                return new;
            }
            if O::before(new, size, n, n.size()) {
                node::set_left(n, Self::insert_at(node::left(n), new, size));
            } else {
                node::set_right(n, Self::insert_at(node::right(n), new, size));
            }
            node::balance(n)
        }
    }

    /// Removes the leftmost node of the subtree at `n`: returns the new subtree and it.
    unsafe fn remove_min(n: Block) -> (Block, Block) {
        // SAFETY: `n` is a node (not `NONE`).
        unsafe {
            let l = node::left(n);
            if l.is_none() {
                return (node::right(n), n);
            }
            let (rest, min) = Self::remove_min(l);
            node::set_left(n, rest);
            (node::balance(n), min)
        }
    }

    unsafe fn remove_at(n: Block, target: Block, size: usize) -> Block {
        // SAFETY: `target` (of `size` bytes) is in the subtree at `n`, so `n` is a node.
        unsafe {
            if n == target {
                let (l, r) = (node::left(n), node::right(n));
                if l.is_none() {
                    return r;
                }
                if r.is_none() {
                    return l;
                }
                let (rest, successor) = Self::remove_min(r);
                node::set_left(successor, l);
                node::set_right(successor, rest);
                return node::balance(successor);
            }
            if O::before(target, size, n, n.size()) {
                node::set_left(n, Self::remove_at(node::left(n), target, size));
            } else {
                node::set_right(n, Self::remove_at(node::right(n), target, size));
            }
            node::balance(n)
        }
    }

    unsafe fn insert(&mut self, block: Block, size: usize) {
        // SAFETY: forwarded caller guarantees.
        self.root = unsafe { Self::insert_at(self.root, block, size) };
    }

    unsafe fn remove(&mut self, block: Block, size: usize) {
        // SAFETY: forwarded caller guarantees.
        self.root = unsafe { Self::remove_at(self.root, block, size) };
    }

    /// The first node in order that fits `need`, skipping subtrees whose largest block is
    /// below `need.size` (in best fit's order that skips every node below it). Without an alignment beyond the granule every
    /// block of `need.size` bytes fits, so the first subtree entered holds the answer and
    /// the walk is one path: O(log n). An alignment may make blocks that are large
    /// enough unusable; those are stepped over in order.
    fn first_fitting(n: Block, need: Need, depth: usize) -> Option<Block> {
        // SAFETY: nodes reached from the root are the tree's.
        unsafe {
            if n.is_none() || node::max(n) < need.size || depth > MAX_HEIGHT {
                return None;
            }
            let size = n.size();
            if let Some(found) = Self::first_fitting(node::left(n), need, depth + 1) {
                return Some(found);
            }
            if gap_for(n, size, need).is_some() {
                return Some(n);
            }
            Self::first_fitting(node::right(n), need, depth + 1)
        }
    }

    fn for_each_at(n: Block, each: &mut dyn FnMut(Block), depth: usize) {
        if n.is_none() || depth > MAX_HEIGHT {
            return;
        }
        // SAFETY: nodes reached from the root are the tree's.
        unsafe {
            Self::for_each_at(node::left(n), each, depth + 1);
            each(n);
            Self::for_each_at(node::right(n), each, depth + 1);
        }
    }

    /// Checks the subtree at `n`: every node a free block, keys in order within
    /// `(low, high)`, heights, balance and maxima exact. Returns (height, max, nodes).
    fn check_at(
        n: Block,
        low: Option<(Block, usize)>,
        high: Option<(Block, usize)>,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        budget: &mut usize,
        depth: usize,
    ) -> Result<(usize, usize, usize), Corruption> {
        let corrupt = |what| Corruption::new(CRATE_NAME, n.addr(), what);
        if n.is_none() {
            return Ok((0, 0, 0));
        }
        if *budget == 0 || depth > MAX_HEIGHT {
            return Err(corrupt(
                "the free tree holds more nodes than blocks are free (a cycle?)",
            ));
        }
        *budget -= 1;
        let Some((at, size)) = valid(n) else {
            return Err(corrupt("free-tree node is not a free block"));
        };
        if size < TREE_BLOCK {
            return Err(corrupt("free-tree node is too small for one").expected(TREE_BLOCK, size));
        }
        if low.is_some_and(|(b, s)| !O::before(b, s, n, size))
            || high.is_some_and(|(b, s)| !O::before(n, size, b, s))
        {
            return Err(corrupt("free-tree node is out of order"));
        }
        // SAFETY: `valid` found a free block of a node's size at `n`, inside a region, and
        // rebuilt it from the region's pointer: its index words are region memory.
        let (l, r, height, max) =
            unsafe { (node::left(at), node::right(at), at.get(HEIGHT), at.get(MAX)) };
        let (hl, ml, cl) = Self::check_at(l, low, Some((n, size)), valid, budget, depth + 1)?;
        let (hr, mr, cr) = Self::check_at(r, Some((n, size)), high, valid, budget, depth + 1)?;
        if hl.abs_diff(hr) > 1 {
            return Err(corrupt("free tree is out of balance").expected(hl, hr));
        }
        if height != 1 + hl.max(hr) {
            return Err(
                corrupt("free-tree node's height is wrong").expected(1 + hl.max(hr), height)
            );
        }
        let expected = size.max(ml).max(mr);
        if max != expected {
            return Err(
                corrupt("free-tree node's subtree maximum is wrong").expected(expected, max)
            );
        }
        Ok((height, max, 1 + cl + cr))
    }

    fn check(
        &self,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        budget: &mut usize,
    ) -> Result<usize, Corruption> {
        Self::check_at(self.root, None, None, valid, budget, 0).map(|(_, _, count)| count)
    }
}

/// Address order.
#[derive(Debug)]
pub struct ByAddress;

impl Order for ByAddress {
    const SMALLEST_FIRST: bool = false;

    fn before(a: Block, _: usize, b: Block, _: usize) -> bool {
        a.addr() < b.addr()
    }
}

/// Size order, ties by address.
#[derive(Debug)]
pub struct BySize;

impl Order for BySize {
    const SMALLEST_FIRST: bool = true;

    fn before(a: Block, a_size: usize, b: Block, b_size: usize) -> bool {
        (a_size, a.addr()) < (b_size, b.addr())
    }
}

/// Address-ordered first fit: the free block at the lowest address that fits.
///
/// Free blocks sit in an AVL tree keyed by address whose nodes also keep their subtree's
/// largest block size; the search descends to the leftmost subtree whose maximum is large
/// enough. Free blocks of the smallest size (four words, too small for a node) sit in a
/// treap by address beside it, and a request they fit takes the lower of the two
/// candidates. Allocate, free and in-place resizing are O(log n) in the free blocks
/// (expected, for the treap; an alignment beyond the granule may step over blocks that
/// are large enough but cannot be aligned: O(log n + k) for k of them).
#[derive(Debug)]
pub struct AddressOrderedFirstFit {
    tree: Tree<ByAddress>,
    smallest: Smallest,
}

/// Exact best fit: the smallest free block that fits, ties going to the lowest address.
///
/// Free blocks sit in an AVL tree keyed by (size, address); the search descends to the
/// first key at or above the request. Free blocks of the smallest size (four words, too
/// small for a node) sit in a treap by address beside it and come first. Allocate, free
/// and in-place resizing are O(log n) in the free blocks (expected, for the treap;
/// O(log n + k) when an alignment beyond the granule makes k blocks that are large enough
/// unusable). Not a segregated-fit approximation: every request gets the smallest block
/// that can hold it.
#[derive(Debug)]
pub struct BestFit {
    tree: Tree<BySize>,
    smallest: Smallest,
}

impl Policy for AddressOrderedFirstFit {}
impl Policy for BestFit {}

macro_rules! tree_index {
    ($policy:ty, $order:ty, $name:literal) => {
        impl Index for $policy {
            const NEW: Self = Self {
                tree: Tree::NEW,
                smallest: Smallest::NEW,
            };
            const NAME: &'static str = $name;
            const MIN_BLOCK: usize = SMALL_BLOCK;
            type Slot = ();

            unsafe fn remove(&mut self, block: Block, size: usize) {
                // SAFETY: forwarded caller guarantees; a block below a node's size is
                // in the treap, every other in the tree.
                unsafe {
                    if size < TREE_BLOCK {
                        self.smallest.remove(block);
                    } else {
                        self.tree.remove(block, size);
                    }
                }
            }

            unsafe fn insert(&mut self, block: Block, size: usize, _slot: Option<()>) {
                // SAFETY: as for `remove`.
                unsafe {
                    if size < TREE_BLOCK {
                        self.smallest.insert(block);
                    } else {
                        self.tree.insert(block, size);
                    }
                }
            }

            fn merge_slots((): (), (): ()) {}

            fn find(&self, need: Need) -> Option<Block> {
                let small = if need.size <= SMALL_BLOCK {
                    self.smallest.first_fitting(need)
                } else {
                    None
                };
                if small.is_some() && <$order>::SMALLEST_FIRST {
                    return small;
                }
                let node = Tree::<$order>::first_fitting(self.tree.root, need, 0);
                match (small, node) {
                    (Some(s), Some(n)) => {
                        // SAFETY: `n` is a node of the tree, its header its size.
                        let before = <$order>::before(s, SMALL_BLOCK, n, unsafe { n.size() });
                        Some(if before { s } else { n })
                    }
                    _ => small.or(node),
                }
            }

            fn largest(&self) -> usize {
                // SAFETY: the root is a node of the tree (or `NONE`).
                let tree = unsafe { node::max(self.tree.root) };
                if self.smallest.is_empty() {
                    tree
                } else {
                    tree.max(SMALL_BLOCK)
                }
            }

            fn for_each(&self, each: &mut dyn FnMut(Block)) {
                // The tree's nodes in order, each preceded by the smallest blocks that
                // come before it.
                let mut next_small = self.smallest.after(None);
                Tree::<$order>::for_each_at(
                    self.tree.root,
                    &mut |n| {
                        while let Some(s) = next_small {
                            // SAFETY: `n` is a node of the tree, its header its size.
                            if !<$order>::before(s, SMALL_BLOCK, n, unsafe { n.size() }) {
                                break;
                            }
                            each(s);
                            next_small = self.smallest.after(Some(s.addr()));
                        }
                        each(n);
                    },
                    0,
                );
                while let Some(s) = next_small {
                    each(s);
                    next_small = self.smallest.after(Some(s.addr()));
                }
            }

            fn check(
                &self,
                valid: &dyn Fn(Block) -> Option<(Block, usize)>,
                bound: usize,
            ) -> Result<usize, Corruption> {
                let mut budget = bound;
                let nodes = self.tree.check(valid, &mut budget)?;
                Ok(nodes + self.smallest.check(valid, &mut budget)?)
            }
        }
    };
}

tree_index!(AddressOrderedFirstFit, ByAddress, "AddressOrderedFirstFit");
tree_index!(BestFit, BySize, "BestFit");

impl Ordered for AddressOrderedFirstFit {
    type Order = ByAddress;
}
impl Ordered for BestFit {
    type Order = BySize;
}
impl TreePolicy for AddressOrderedFirstFit {}
impl TreePolicy for BestFit {}

/// The free-block index of a [`HeaderlessHeap`](crate::HeaderlessHeap) in the order `O`:
/// the tree for blocks of six words and more, the four-word blocks' treap, and the
/// one-granule blocks' treap (a block of two words has room for its two links only).
#[derive(Debug)]
pub(crate) struct HeaderlessIndex<O> {
    tree: Tree<O>,
    smallest: Smallest,
    tiny: Tiny,
}

impl<O: Order> HeaderlessIndex<O> {
    pub(crate) const NEW: Self = Self {
        tree: Tree::NEW,
        smallest: Smallest::NEW,
        tiny: Tiny::NEW,
    };

    /// Adds `block` (free, `size` bytes; from two granules on its header and footer
    /// written).
    ///
    /// # Safety
    /// `block` is a free block of ours in no index, its words ours to write.
    pub(crate) unsafe fn insert(&mut self, block: Block, size: usize) {
        // SAFETY: forwarded; each size goes to the one structure its words fit.
        unsafe {
            match size {
                GRANULE => self.tiny.insert(block),
                SMALL_BLOCK => self.smallest.insert(block),
                _ => self.tree.insert(block, size),
            }
        }
    }

    /// Takes `block` (of `size` bytes) out.
    ///
    /// # Safety
    /// `block` is in the index with `size` bytes, its header as inserted.
    pub(crate) unsafe fn remove(&mut self, block: Block, size: usize) {
        // SAFETY: as for `insert`.
        unsafe {
            match size {
                GRANULE => self.tiny.remove(block),
                SMALL_BLOCK => self.smallest.remove(block),
                _ => self.tree.remove(block, size),
            }
        }
    }

    /// The block the policy picks for `need`: the first in the order `O` that fits.
    pub(crate) fn find(&self, need: Need) -> Option<Block> {
        let tiny = (need.size <= GRANULE)
            .then(|| self.tiny.first_fitting(need))
            .flatten();
        if tiny.is_some() && O::SMALLEST_FIRST {
            return tiny;
        }
        let small = (need.size <= SMALL_BLOCK)
            .then(|| self.smallest.first_fitting(need))
            .flatten();
        if small.is_some() && O::SMALLEST_FIRST {
            return small;
        }
        let node = Tree::<O>::first_fitting(self.tree.root, need, 0);
        // In size order at most the tree's candidate is left; in address order the lowest
        // of the three.
        [tiny, small, node]
            .into_iter()
            .flatten()
            .min_by_key(|b| b.addr())
    }

    /// Bytes of the largest free block, or 0.
    pub(crate) fn largest(&self) -> usize {
        // SAFETY: the root is a node of the tree (or `NONE`).
        let tree = unsafe { node::max(self.tree.root) };
        if tree > 0 {
            tree
        } else if !self.smallest.is_empty() {
            SMALL_BLOCK
        } else if !self.tiny.is_empty() {
            GRANULE
        } else {
            0
        }
    }

    /// Calls `each` with every free block and its size, in the order `O`.
    pub(crate) fn for_each(&self, each: &mut dyn FnMut(Block, usize)) {
        let mut tiny = self.tiny.after(None);
        let mut small = self.smallest.after(None);
        // Emits the treaps' blocks that come before `limit` (a tree node and its size), or
        // all of them: by address in address order, by size in size order.
        let mut emit_before = |limit: Option<(Block, usize)>,
                               each: &mut dyn FnMut(Block, usize)| loop {
            let candidates = [(tiny, GRANULE), (small, SMALL_BLOCK)];
            let next = candidates
                .into_iter()
                .filter_map(|(b, size)| b.map(|b| (b, size)))
                .min_by(|&(a, a_size), &(b, b_size)| {
                    if O::before(a, a_size, b, b_size) {
                        core::cmp::Ordering::Less
                    } else {
                        core::cmp::Ordering::Greater
                    }
                });
            let Some((b, size)) = next else { return };
            if limit.is_some_and(|(n, n_size)| !O::before(b, size, n, n_size)) {
                return;
            }
            each(b, size);
            if size == GRANULE {
                tiny = self.tiny.after(Some(b.addr()));
            } else {
                small = self.smallest.after(Some(b.addr()));
            }
        };
        Tree::<O>::for_each_at(
            self.tree.root,
            &mut |n| {
                // SAFETY: `n` is a node of the tree, its header its size.
                let size = unsafe { n.size() };
                emit_before(Some((n, size)), each);
                each(n, size);
            },
            0,
        );
        emit_before(None, each);
    }

    /// Checks the tree and both treaps; at most `bound` nodes in all. Returns the number.
    ///
    /// # Errors
    /// The first broken invariant.
    pub(crate) fn check(
        &self,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        bound: usize,
    ) -> Result<usize, Corruption> {
        let mut budget = bound;
        let nodes = self.tree.check(valid, &mut budget)?;
        let small = self.smallest.check(valid, &mut budget)?;
        Ok(nodes + small + self.tiny.check(valid, &mut budget)?)
    }
}
