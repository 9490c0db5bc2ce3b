//! Regions at the edges of the address space: the tests every backend runs so that region
//! set-up never wraps.
//!
//! Two kinds of test:
//!
//! - [`refuses_wrapping_regions`] hands a backend regions whose end passes the top of the
//!   address space. It needs no memory (a refused region is never touched), so it runs on
//!   every target, natively and under miri.
//! - [`exercise_at_edges`] builds a backend over real memory straddling 2 GiB, just above
//!   2 GiB, 3 GiB and 3.5 GiB, and ending 256 MiB below the top of a 32-bit address space, then runs a fixed
//!   sequence of operations through the shadow model. The memory comes from
//!   [`EdgeMemory`], which exists only under miri on a 32-bit target (`cargo xtask miri-edges`
//!   runs `cargo miri test --target i686-unknown-linux-gnu`): miri places allocations one
//!   after another in its address space, so three 1 GiB allocations and one up to the top
//!   cover every address a test wants. Elsewhere the test prints why it is skipped.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use heapkit_core::ConfigError;

use crate::{Harness, Op, Profile, Regions, Subject};

/// Where [`exercise_at_edges`] places regions, by name. A region straddling 3 GiB or
/// 3.5 GiB holds an address aligned to 1 GiB or 512 MiB whose block of that size ends
/// exactly at 2^32: the carving of a buddy system once wrapped there.
pub const PLACEMENTS: [&str; 5] = [
    "straddling 2 GiB",
    "at 2 GiB",
    "straddling 3 GiB",
    "straddling 3.5 GiB",
    "ending 256 MiB below the top",
];

/// Memory covering most of a 32-bit address space, reserved once per process.
///
/// It ends just past `0xF000_0000`, 256 MiB below the top: the harness's own allocations
/// need somewhere to go. A 256 MiB block at `0xE000_0000`, whose buddy would end at 2^32,
/// still fits. That leaves the last 256 MiB untested with real memory;
/// [`refuses_wrapping_regions`] and each
/// backend's arithmetic tests cover the top itself.
#[derive(Debug)]
pub struct EdgeMemory {
    /// The reserved blocks, lowest first, each as a pointer whose provenance covers it.
    blocks: Vec<NonNull<[u8]>>,
}

// SAFETY: the blocks are plain memory owned by the process for its whole life; tests use
// them one at a time (`with_edge_memory` holds a lock).
unsafe impl Send for EdgeMemory {}

/// How far below the top of the address space the highest block ends. Miri places every
/// allocation above the last and never reuses a freed address for another size, so this is
/// all the room the test harness has for its own allocations once the memory is reserved.
const HEADROOM: usize = (256 << 20) - (64 << 10);

impl EdgeMemory {
    /// Reserves the memory, where the target allows it.
    fn reserve() -> Option<Self> {
        const GIB: usize = 1 << 30;
        if !(cfg!(miri) && usize::BITS == 32) {
            return None;
        }
        let mut blocks = Vec::with_capacity(4);
        let mut end = 0;
        for _ in 0..3 {
            let block = Self::allocate(GIB)?;
            end = block.cast::<u8>().as_ptr().addr() + GIB;
            blocks.push(block);
        }
        // Miri puts the next block a few bytes after `end`, aligned: ask for what reaches
        // to `HEADROOM` below the top.
        let last = usize::MAX - HEADROOM - end;
        blocks.push(Self::allocate(last)?);
        Some(Self { blocks })
    }

    fn allocate(size: usize) -> Option<NonNull<[u8]>> {
        let layout = Layout::from_size_align(size, 16).ok()?;
        // SAFETY: a non-zero size. The block is never freed: the reservation lives as long
        // as the process.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        Some(NonNull::slice_from_raw_parts(ptr, size))
    }

    /// `len` bytes starting exactly at `address`, if one reserved block covers them.
    pub fn at(&self, address: usize, len: usize) -> Option<NonNull<u8>> {
        self.blocks.iter().find_map(|block| {
            let start = block.cast::<u8>().as_ptr().addr();
            let offset = address.checked_sub(start)?;
            if offset.checked_add(len)? > block.len() {
                return None;
            }
            NonNull::new(block.cast::<u8>().as_ptr().with_addr(address))
        })
    }

    /// One past the highest reserved byte.
    pub fn top(&self) -> usize {
        let last = self.blocks.last().expect("four blocks");
        last.cast::<u8>().as_ptr().addr() + last.len()
    }

    /// The start of a region of `len` bytes at each of the [`PLACEMENTS`].
    pub fn placements(&self, len: usize) -> [(&'static str, NonNull<u8>, usize); 5] {
        const TWO_GIB: usize = 0x8000_0000;
        const THREE_GIB: usize = 0xC000_0000;
        const THREE_AND_A_HALF_GIB: usize = 0xE000_0000;
        // Odd starts, so that backends aligning their start do so across the boundary.
        let addresses = [
            TWO_GIB - len / 2 - 3,
            TWO_GIB,
            THREE_GIB - len / 2 - 5,
            THREE_AND_A_HALF_GIB - len / 2 - 1,
            self.top() - len,
        ];
        core::array::from_fn(|i| {
            let ptr = self
                .at(addresses[i], len)
                .unwrap_or_else(|| panic!("no reserved memory at {:#x}", addresses[i]));
            (PLACEMENTS[i], ptr, len)
        })
    }
}

/// Runs `test` with the process's [`EdgeMemory`], or prints why it cannot and returns
/// `false` (not under miri on a 32-bit target).
pub fn with_edge_memory(test: impl FnOnce(&EdgeMemory)) -> bool {
    static MEMORY: OnceLock<Option<Mutex<EdgeMemory>>> = OnceLock::new();
    let Some(memory) = MEMORY.get_or_init(|| EdgeMemory::reserve().map(Mutex::new)) else {
        // Constant per build: under miri for a 32-bit target the tests must not skip.
        #[allow(clippy::assertions_on_constants)]
        {
            assert!(
                !(cfg!(miri) && usize::BITS == 32),
                "miri on a 32-bit target could not reserve the edge memory"
            );
        }
        println!(
            "skipped: regions at the 32-bit edges need miri on a 32-bit target \
             (cargo xtask miri-edges runs them for i686-unknown-linux-gnu)"
        );
        return false;
    };
    let memory = memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    test(&memory);
    true
}

/// Builds an allocator with `make` over regions at each of the [`PLACEMENTS`] (`len`
/// bytes each) and runs a fixed sequence of allocations, resizes and frees through the
/// shadow model, which flags any block outside the region, overlapping another or not
/// restored when all is freed. Returns whether it ran (see [`with_edge_memory`]).
///
/// # Panics
///
/// On the first violation, naming the placement.
pub fn exercise_at_edges<A: Subject>(
    profile: Profile,
    len: usize,
    make: impl Fn(NonNull<u8>, usize) -> A,
) -> bool {
    with_edge_memory(|memory| {
        for (name, start, len) in memory.placements(len) {
            let mut harness = Harness::new(profile, |regions: &mut Regions| {
                regions.add_bounds(start, len);
                make(start, len)
            });
            if let Err(error) = harness.run(&edge_operations()) {
                panic!(
                    "region {name} ({:#x}, {len} bytes): {error}",
                    start.as_ptr().addr()
                );
            }
        }
    })
}

/// A fixed mix of sizes and alignments, frees in a scattered order, grows and shrinks:
/// enough to reach the end of a small region, few enough for miri.
fn edge_operations() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..32u32 {
        ops.push(Op::Alloc {
            size: i.wrapping_mul(0x9E37_79B9),
            align: i as u8,
            zeroed: i % 5 == 0,
        });
        if i % 3 == 2 {
            ops.push(Op::Free {
                slot: (i * 7) as u16,
                fit: i as u16,
            });
        }
        if i % 7 == 3 {
            ops.push(Op::Grow {
                slot: i as u16,
                by: i.wrapping_mul(0x85EB_CA6B),
                align: 0,
                zeroed: false,
            });
        }
        if i % 11 == 5 {
            ops.push(Op::Shrink {
                slot: (i * 3) as u16,
                to: i.wrapping_mul(0xC2B2_AE35),
            });
        }
    }
    ops
}

/// Hands `add` regions whose end passes the top of the address space and checks each is
/// refused with [`ConfigError::RegionWraps`]. The regions are never touched: a refusal
/// comes before any write.
///
/// `add` is the backend's raw constructor or `add_region`, called with a start and a
/// length; `align` is the start alignment it requires (a misaligned start may be refused
/// first, for another reason).
///
/// # Panics
///
/// When a region is accepted or refused for another reason.
pub fn refuses_wrapping_regions(
    align: usize,
    add: impl Fn(NonNull<u8>, usize) -> Result<(), ConfigError>,
) {
    // (start, bytes past the top): the region ends that far past `usize::MAX`.
    let cases = [
        (usize::MAX - 4 * align.max(4096), 1),
        (usize::MAX - 4 * align.max(4096), 4096),
        (usize::MAX - align, align),
        (usize::MAX / 2, 1),
        (align, align),
    ];
    for (address, past) in cases {
        let address = address - address % align;
        let len = usize::MAX - address + past;
        let start = NonNull::new(core::ptr::without_provenance_mut(address)).expect("non-zero");
        match add(start, len) {
            Err(ConfigError::RegionWraps { .. }) => {}
            other => panic!("a region of {len:#x} bytes at {address:#x} wraps, got {other:?}"),
        }
    }
}
