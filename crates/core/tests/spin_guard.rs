//! `SpinGuard` borrows under miri's default aliasing model (Stacked Borrows): two shared
//! references taken through one guard must both stay usable. A `Deref` that makes a fresh
//! `&mut` on every call invalidates the first reference when the second is made, which
//! `cargo +nightly miri test -p heapkit-core --test spin_guard` reports as undefined
//! behaviour. Loom builds use loom's lock (checked by the loom models instead).
#![cfg(not(loom))]

use heapkit_core::sync::SpinLock;

#[test]
fn two_shared_derefs_of_one_guard_both_stay_usable() {
    let lock = SpinLock::new([1u64, 2, 3]);
    let guard = lock.lock();
    let first = &*guard;
    let second = &*guard;
    // Using `first` after `second` was made is what a `&mut`-making `Deref` breaks.
    assert_eq!(first[0], 1);
    assert_eq!(second[2], 3);
    assert_eq!(first, second);
}

#[test]
fn shared_derefs_after_a_write_see_it() {
    let lock = SpinLock::new(0u32);
    {
        let mut guard = lock.lock();
        *guard = 7;
        let first = &*guard;
        let second = &*guard;
        assert_eq!(*first + *second, 14);
    }
    assert_eq!(*lock.lock(), 7);
    assert_eq!(lock.into_inner(), 7);
}
