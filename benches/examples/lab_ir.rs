//! One lab workload replayed on `BitmapArena` (16-byte blocks, as the lab builds it) or
//! `Tlsf` over a 32 MiB region, for instruction counts, which do not depend on what else
//! the machine is doing:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='lab_ir::measured' \
//!     target/release/examples/lab_ir bitmap plateau
//! ```
//!
//! The region is warmed with one replay, then the replay inside `measured` is the one
//! counted; the program prints the events, so `Ir / events` is instructions per call
//! (replay bookkeeping included, the same for both). `lab_ir` alone lists the workloads.

use heapkit_bitmap_arena::BitmapArena;
use heapkit_trace::arena::{Arena, Heapkit};
use heapkit_trace::replay::replay_whole;
use heapkit_trace::trace::Trace;
use heapkit_trace::Region;

const REGION: usize = 32 << 20;

#[inline(never)]
fn measured<A: Arena>(arena: &mut A, trace: &Trace) {
    replay_whole(arena, trace).expect("the lab's region holds every workload");
}

fn run<A: Arena>(mut arena: A, trace: &Trace) {
    replay_whole(&mut arena, trace).expect("the lab's region holds every workload");
    measured(&mut arena, trace);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workloads = heapkit_lab::builtin(heapkit_lab::Scale::Default, 0x5eed);
    let (Some(allocator), Some(name)) = (args.first(), args.get(1)) else {
        let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
        println!(
            "usage: lab_ir bitmap|tlsf WORKLOAD\nworkloads: {}",
            names.join(" ")
        );
        return;
    };
    let workload = workloads
        .iter()
        .find(|w| &w.name == name)
        .unwrap_or_else(|| panic!("no workload {name}"));
    let region = Region::new(REGION, REGION).leak();
    match allocator.as_str() {
        "bitmap" => run(
            Heapkit(BitmapArena::with_region(region, 16).unwrap()),
            &workload.trace,
        ),
        "tlsf" => run(heapkit_lab::peers::tlsf_over(region), &workload.trace),
        other => panic!("no allocator {other}"),
    }
    println!("events {}", workload.trace.events().len());
}
