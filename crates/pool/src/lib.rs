//! Fixed-size block pools: the allocator of choice for embedded systems, where every
//! object of a kind has one size. Memory is split into equal blocks; free blocks are kept
//! on a linked list, so allocating and freeing are a few instructions, with no search and
//! no fragmentation beyond the block's rounding.
//!
//! - [`Pool`]: single owner (wrap it in [`Local`](heapkit_core::Local) or
//!   [`Locked`](heapkit_core::Locked)); the links live inside the free blocks, so the pool
//!   spends no memory per block.
//! - [`AtomicPool`]: `Sync` and lock-free (a Treiber stack with an ABA tag), an allocator by
//!   itself; needs a 64-bit compare-exchange.
//!
//! Both start in O(1): blocks never used are handed out by a bump cursor, not threaded
//! onto the list up front.
//!
//! ```
//! use core::mem::MaybeUninit;
//! use allocator_api2::vec::Vec;
//! use heapkit_core::Local;
//! use heapkit_pool::Pool;
//!
//! // 16 blocks of 256 bytes in a static buffer, used by a `Vec` of readings. The buffer
//! // must start at a multiple of the block alignment: a plain byte array need not.
//! #[repr(align(8))]
//! struct Buffer([MaybeUninit<u8>; 16 * 256]);
//! static mut BUFFER: Buffer = Buffer([MaybeUninit::uninit(); 16 * 256]);
//! // SAFETY: the only reference ever made to BUFFER.
//! let buffer = unsafe { &mut (*core::ptr::addr_of_mut!(BUFFER)).0 };
//! let pool = Local::new(Pool::new(buffer, 256, 8).unwrap());
//!
//! let mut readings: Vec<u32, _> = Vec::with_capacity_in(64, &pool);
//! readings.extend([17, 21, 19]);
//! assert_eq!(readings.iter().sum::<u32>(), 57);
//! assert_eq!(pool.stats().in_use, 256);
//! // A request larger than a block is refused, never served with a wrong block.
//! let mut bytes: Vec<u8, _> = Vec::new_in(&pool);
//! assert!(bytes.try_reserve_exact(257).is_err());
//! ```
//!
//! # Features
//!
//! - `checked`: double frees, foreign pointers, pointers into the middle of a block and
//!   layouts larger than a block panic with a message of the form
//!   `heapkit-pool: invalid <operation> of <address>: <reason>`. `Pool` keeps one bit per block after the blocks (initialised as
//!   the bump cursor advances, so set-up stays O(1)); `AtomicPool` marks its link slots.
//! - `std`: nothing beyond `heapkit-core`'s `std`.

#![no_std]

#[cfg(any(loom, test))]
extern crate std;

#[cfg(target_has_atomic = "64")]
mod atomic;
mod pool;
mod shape;

#[cfg(target_has_atomic = "64")]
pub use atomic::AtomicPool;
pub use pool::Pool;
