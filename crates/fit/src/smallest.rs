//! The free blocks too small for a tree node: a treap keyed by address, beside the AVL
//! tree of [`AddressOrderedFirstFit`](crate::AddressOrderedFirstFit) and
//! [`BestFit`](crate::BestFit).
//!
//! A tree node needs six words (header, two children, height, subtree maximum, footer);
//! the heap's smallest block is four (header, two links, footer), and sizes are whole
//! granules of two words, so every block below six words is exactly four. Had the tree
//! policies rounded every request up to six words, a string of a few bytes would take
//! 48 bytes on a 64-bit target instead of 32: half as much again as first fit's blocks.
//! The four-word blocks sit here instead, in a treap whose node is the two link words:
//!
//! ```text
//!  │ MIN_BLOCK | FREE │ left │ right │ MIN_BLOCK │
//! ```
//!
//! A treap is a search tree by key (the address) and a heap by priority; the priority is
//! a hash of the address, so it costs no word, and the shape is the one a random
//! insertion order would give: expected depth O(log n). The hash mixes every bit of the
//! address into every bit of the priority (murmur3's finalizer): a hash linear in the
//! address gave evenly spaced blocks (a heap's most common free pattern) evenly spaced
//! priorities, and the treap a path hundreds of blocks long. Every operation is a single
//! walk down from the root (insertion splits the subtree where the new node belongs,
//! removal merges the node's two subtrees), without recursion or parent links. All
//! blocks in one treap have one size, so both policies want the lowest address among them.
//!
//! A [`HeaderlessHeap`](crate::HeaderlessHeap) has a second treap, of one-granule blocks
//! ([`Tiny`]): with no header to keep, the block's two words are the links, and its size
//! comes from the heap's edge bitmaps.

use heapkit_core::Corruption;

use crate::heap::block::Block;
use crate::heap::{gap_for, Need, CRATE_NAME, GRANULE, WORD};

/// The size of every block in a [`Smallest`]: four words.
pub(crate) const SMALL_BLOCK: usize = 4 * WORD;

/// The treap of four-word blocks: their links follow the header.
pub(crate) type Smallest = Treap<1, SMALL_BLOCK>;

/// The treap of one-granule blocks of a [`HeaderlessHeap`](crate::HeaderlessHeap): the
/// block's two words are its links, its size known from the heap's edge bitmaps.
pub(crate) type Tiny = Treap<0, GRANULE>;

/// The priority of `block`: murmur3's finalizer of its address in units of the block size.
/// A bijection, so no two blocks here (they never overlap) share one.
#[cfg(target_pointer_width = "64")]
fn priority<const BLOCK: usize>(block: Block) -> usize {
    let mut x = (block.addr() / BLOCK) as u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    #[allow(clippy::cast_possible_truncation)] // 64-bit target: usize is u64
    let priority = x as usize;
    priority
}

/// The priority of `block`: murmur3's 32-bit finalizer of its address in units of the
/// block size. A bijection on 32-bit targets; on smaller ones ties are possible and
/// harmless (a tie is ordered either way).
#[cfg(not(target_pointer_width = "64"))]
fn priority<const BLOCK: usize>(block: Block) -> usize {
    #[allow(clippy::cast_possible_truncation)] // at most 32 bits of address
    let mut x = (block.addr() / BLOCK) as u32;
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^= x >> 16;
    x as usize
}

/// The word that holds a subtree: the root field or a child word of a node.
#[derive(Clone, Copy)]
enum Link {
    Root,
    Left(Block),
    Right(Block),
}

/// A treap of free blocks of `BLOCK` bytes each, keyed by address, whose left and right
/// links are the block's words `LEFT` and `LEFT + 1`.
#[derive(Debug)]
pub(crate) struct Treap<const LEFT: usize, const BLOCK: usize> {
    root: Block,
}

impl<const LEFT: usize, const BLOCK: usize> Treap<LEFT, BLOCK> {
    pub(crate) const NEW: Self = Self { root: Block::NONE };
    const RIGHT: usize = LEFT + 1;

    /// # Safety
    /// A `Left` or `Right` link names a node of this treap.
    unsafe fn get(&self, link: Link) -> Block {
        // SAFETY: per the caller.
        unsafe {
            match link {
                Link::Root => self.root,
                Link::Left(n) => n.link(LEFT),
                Link::Right(n) => n.link(Self::RIGHT),
            }
        }
    }

    /// # Safety
    /// As for [`get`](Self::get), or a block being inserted (its words are ours).
    unsafe fn set(&mut self, link: Link, to: Block) {
        // SAFETY: per the caller.
        unsafe {
            match link {
                Link::Root => self.root = to,
                Link::Left(n) => n.set_link(LEFT, to),
                Link::Right(n) => n.set_link(Self::RIGHT, to),
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Adds free block `new` (of `BLOCK` bytes).
    ///
    /// # Safety
    /// `new` is a free block of ours in no index, its link words ours to write.
    pub(crate) unsafe fn insert(&mut self, new: Block) {
        let rank = priority::<BLOCK>(new);
        // SAFETY: links reached from the root name nodes; `new`'s words are ours.
        unsafe {
            // Down to the first node that ranks below `new`: `new` takes its place.
            let mut link = Link::Root;
            loop {
                let n = self.get(link);
                if n.is_none() || priority::<BLOCK>(n) < rank {
                    break;
                }
                link = if new.addr() < n.addr() {
                    Link::Left(n)
                } else {
                    Link::Right(n)
                };
            }
            // Split the displaced subtree by `new`'s address: the lower part becomes
            // `new`'s left subtree, the higher its right, each stitched top-down.
            let mut rest = self.get(link);
            self.set(link, new);
            let (mut low, mut high) = (Link::Left(new), Link::Right(new));
            while !rest.is_none() {
                if rest.addr() < new.addr() {
                    let next = rest.link(Self::RIGHT);
                    self.set(low, rest);
                    low = Link::Right(rest);
                    rest = next;
                } else {
                    let next = rest.link(LEFT);
                    self.set(high, rest);
                    high = Link::Left(rest);
                    rest = next;
                }
            }
            self.set(low, Block::NONE);
            self.set(high, Block::NONE);
        }
    }

    /// Takes `target` out.
    ///
    /// # Safety
    /// `target` is in the treap.
    pub(crate) unsafe fn remove(&mut self, target: Block) {
        // SAFETY: links reached from the root name nodes, and `target` is one of them, so
        // the walk by address reaches it before a null link.
        unsafe {
            let mut link = Link::Root;
            loop {
                let n = self.get(link);
                debug_assert!(
                    !n.is_none(),
                    "heapkit-fit: removing a block not in the treap"
                );
                if n == target {
                    break;
                }
                link = if target.addr() < n.addr() {
                    Link::Left(n)
                } else {
                    Link::Right(n)
                };
            }
            // Merge the two subtrees (all of `low` below all of `high`) into its place,
            // the higher-ranked root first.
            let (mut low, mut high) = (target.link(LEFT), target.link(Self::RIGHT));
            loop {
                if low.is_none() {
                    self.set(link, high);
                    return;
                }
                if high.is_none() {
                    self.set(link, low);
                    return;
                }
                if priority::<BLOCK>(low) > priority::<BLOCK>(high) {
                    self.set(link, low);
                    link = Link::Right(low);
                    low = low.link(Self::RIGHT);
                } else {
                    self.set(link, high);
                    link = Link::Left(high);
                    high = high.link(LEFT);
                }
            }
        }
    }

    /// The lowest-addressed block that fits `need` (whose size is at most `BLOCK`): the
    /// leftmost node, or with an alignment beyond the granule the
    /// first in address order whose payload it can align.
    pub(crate) fn first_fitting(&self, need: Need) -> Option<Block> {
        debug_assert!(need.size <= BLOCK);
        if need.align <= crate::heap::GRANULE {
            let mut n = self.root;
            // SAFETY: nodes reached from the root are the treap's.
            unsafe {
                while !n.is_none() {
                    let left = n.link(LEFT);
                    if left.is_none() {
                        return Some(n);
                    }
                    n = left;
                }
            }
            return None;
        }
        // In address order, one successor walk each: O(k log n) for the k blocks passed.
        let mut next = self.after(None);
        while let Some(n) = next {
            if gap_for(n, BLOCK, need).is_some() {
                return Some(n);
            }
            next = self.after(Some(n.addr()));
        }
        None
    }

    /// The lowest-addressed block above `addr`, if any (`None` for the lowest of all).
    pub(crate) fn after(&self, addr: Option<usize>) -> Option<Block> {
        let (mut n, mut found) = (self.root, None);
        // SAFETY: nodes reached from the root are the treap's.
        unsafe {
            while !n.is_none() {
                if addr.is_none_or(|a| n.addr() > a) {
                    found = Some(n);
                    n = n.link(LEFT);
                } else {
                    n = n.link(Self::RIGHT);
                }
            }
        }
        found
    }

    /// Checks every node: a free block of `BLOCK` bytes (per `valid`), addresses
    /// in order, priorities a heap. Counts nodes against `budget`; returns their number.
    /// Recursive, as deep as the treap (its address bounds rule out a cycle, the budget a
    /// walk longer than the free blocks).
    pub(crate) fn check(
        &self,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        budget: &mut usize,
    ) -> Result<usize, Corruption> {
        Self::check_at(self.root, None, None, None, valid, budget)
    }

    fn check_at(
        n: Block,
        low: Option<usize>,
        high: Option<usize>,
        parent_rank: Option<usize>,
        valid: &dyn Fn(Block) -> Option<(Block, usize)>,
        budget: &mut usize,
    ) -> Result<usize, Corruption> {
        if n.is_none() {
            return Ok(0);
        }
        let corrupt = |what| Corruption::new(CRATE_NAME, n.addr(), what);
        if *budget == 0 {
            return Err(corrupt(
                "the smallest blocks' treap holds more nodes than blocks are free",
            ));
        }
        *budget -= 1;
        let at = match valid(n) {
            None => return Err(corrupt("treap node is not a free block")),
            Some((_, size)) if size != BLOCK => {
                return Err(corrupt("treap node is not a block of its size").expected(BLOCK, size))
            }
            Some((at, _)) => at,
        };
        if low.is_some_and(|a| a >= n.addr()) || high.is_some_and(|a| a <= n.addr()) {
            return Err(corrupt("treap node is out of address order"));
        }
        let rank = priority::<BLOCK>(n);
        if parent_rank.is_some_and(|p| p < rank) {
            return Err(corrupt("treap node outranks its parent"));
        }
        // SAFETY: `valid` found a free block of `BLOCK` bytes at `n` and rebuilt it from its
        // region's pointer: its link words are region memory.
        let (l, r) = unsafe { (at.link(LEFT), at.link(Self::RIGHT)) };
        let left = Self::check_at(l, low, Some(n.addr()), Some(rank), valid, budget)?;
        let right = Self::check_at(r, Some(n.addr()), high, Some(rank), valid, budget)?;
        Ok(1 + left + right)
    }
}
