//! Segment and slot sizes.
//!
//! A segment is `SEGMENT` bytes aligned to its size, so masking any pointer into it gives
//! its header; it is cut into `SLOTS` slots of `SLOT` bytes, slot 0 holding the header and
//! page table. Loom and miri builds use small segments (64 KiB of 4 KiB slots), so a
//! model or an interpreted test runs the same code over little memory.

cfg_if::cfg_if! {
    if #[cfg(any(loom, miri))] {
        /// log2 of the segment size.
        pub const SEGMENT_SHIFT: u32 = 16;
        /// log2 of the slot size.
        pub const SLOT_SHIFT: u32 = 12;
    } else {
        /// log2 of the segment size: 4 MiB.
        pub const SEGMENT_SHIFT: u32 = 22;
        /// log2 of the slot size: 64 KiB.
        pub const SLOT_SHIFT: u32 = 16;
    }
}

/// Bytes per segment, and its alignment.
pub const SEGMENT: usize = 1 << SEGMENT_SHIFT;
/// Bytes per slot: the smallest page.
pub const SLOT: usize = 1 << SLOT_SHIFT;
/// Slots per segment (at most 64: a segment's free slots are one `u64`).
pub const SLOTS: usize = SEGMENT / SLOT;
/// The most slots one page spans.
pub const MAX_SPAN: usize = SLOTS / 4;

const _: () = assert!(SLOTS <= 64 && MAX_SPAN >= 1);
