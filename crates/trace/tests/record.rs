#![cfg(not(miri))] // leaks a benchmark region, as the lib tests do
//! The recording global allocator, in a test binary of its own (it is the global
//! allocator here).

use std::alloc::System;

use heapkit_trace::arena::Heapkit;
use heapkit_trace::record::Recorder;
use heapkit_trace::replay::replay_timed;
use heapkit_trace::trace::{Event, Trace};

#[global_allocator]
static RECORDER: Recorder<System> = Recorder::new(System);

/// One recording at a time: the tests run on parallel threads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_recording_holds_the_programs_calls_and_replays() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    let before = vec![1u8; 100];
    RECORDER.start(1 << 16);
    let mut grown: Vec<u64> = Vec::with_capacity(4);
    grown.extend(0..100);
    let boxed = Box::new([7u8; 300]);
    drop(before);
    drop(boxed);
    let kept = String::from("still live when the recording stops");
    let trace = RECORDER.stop().unwrap();
    drop((grown, kept));

    let events = trace.events();
    assert_eq!(
        events[0],
        Event::Alloc {
            slot: 0,
            size: 32,
            align: 8
        },
        "the vector's first buffer: 4 u64s"
    );
    assert!(
        matches!(events[1], Event::Realloc { slot: 0, size } if size >= 800),
        "{:?}",
        events[1]
    );
    assert!(events.contains(&Event::Alloc {
        slot: 1,
        size: 300,
        align: 1
    }));
    assert_eq!(
        trace.summary().allocs,
        3,
        "vector, box, string; `before` predates the start"
    );
    let frees = events
        .iter()
        .filter(|e| matches!(e, Event::Free { .. }))
        .count();
    assert_eq!(
        frees, 3,
        "the box's free, then the two live blocks freed at the end"
    );
    assert_eq!(Trace::parse(&trace.to_text()).unwrap(), trace);
    let region = heapkit_trace::Region::new(1 << 20, 4096).leak();
    let mut tlsf = Heapkit(<heapkit_tlsf::Tlsf>::with_region(region).unwrap());
    replay_timed(&mut tlsf, &trace, &mut Vec::new()).unwrap();
}

#[test]
fn a_recording_that_overflows_says_so() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    RECORDER.start(2);
    let blocks: Vec<Box<u32>> = (0..10).map(Box::new).collect();
    let error = RECORDER.stop().unwrap_err();
    drop(blocks);
    assert!(error.contains("filled its 2 calls"), "{error}");
}

#[test]
fn a_second_recording_cannot_start_while_one_runs() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    RECORDER.start(16);
    let second = std::thread::spawn(|| RECORDER.start(16)).join();
    RECORDER.stop().unwrap();
    assert!(second.is_err(), "the second start panics");
}
