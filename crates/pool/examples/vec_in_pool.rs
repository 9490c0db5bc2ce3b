//! A collection in a fixed-size pool over a static buffer, as the root README's "The
//! trait" section shows it; `cargo xtask ci` builds and runs it.

use core::mem::MaybeUninit;

use allocator_api2::vec::Vec;
use heapkit_core::Local;
use heapkit_pool::Pool;

#[repr(align(8))]
struct Buffer([MaybeUninit<u8>; 16 * 256]);
static mut BUFFER: Buffer = Buffer([MaybeUninit::uninit(); 16 * 256]);

fn main() {
    // SAFETY: the only reference ever made to BUFFER.
    let buffer = unsafe { &mut (*core::ptr::addr_of_mut!(BUFFER)).0 };
    let heap = Local::new(Pool::with_region(buffer, 256, 8).unwrap());
    let mut readings = Vec::new_in(&heap);
    readings.extend([17u32, 21, 19]);
    assert_eq!(readings.iter().sum::<u32>(), 57);
    assert_eq!(heap.stats().in_use, 256);
    println!(
        "{} readings in one 256-byte block of a pool",
        readings.len()
    );
}
