//! Free + allocate pairs with thousands of live blocks in a large region: `BitmapArena`
//! (16-byte blocks) beside `Tlsf`, each over its own region of the same size.
//!
//! `cargo run --release -p heapkit-benches --example arena_churn` prints ns per pair for
//! each allocator and size mix. Options: `--live N` (default 5000), `--steps N` (default
//! 200000), `--region-mib N` (default 256), `--only bitmap|tlsf`, `--mix uniform|log`.
//!
//! The steady-state loop is `churn`, never inlined, so instruction counts can be taken
//! for it alone: `valgrind --tool=callgrind --toggle-collect='*churn*' <binary> --only
//! bitmap --mix uniform --steps 20000`, then divide the reported `Ir` by the steps.
#![allow(clippy::cast_precision_loss)] // ratios of counts far below 2^52

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

use heapkit_bitmap_arena::BitmapArena;
use heapkit_core::Backend;
use heapkit_tlsf::Tlsf;
use heapkit_trace::{Region, Rng};

const BLOCK: usize = 16;
const MIXES: [&str; 2] = ["uniform", "log"];

struct Options {
    live: usize,
    steps: usize,
    region: usize,
    only: Option<String>,
    mix: Option<String>,
}

fn parse() -> Options {
    let mut options = Options {
        live: 5000,
        steps: 200_000,
        region: 256 << 20,
        only: None,
        mix: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--live" => options.live = value().parse().expect("--live N"),
            "--steps" => options.steps = value().parse().expect("--steps N"),
            "--region-mib" => options.region = value().parse::<usize>().expect("MiB") << 20,
            "--only" => options.only = Some(value()),
            "--mix" => options.mix = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// A request size in 16..=4096: uniform in bytes, or uniform in log2 (mostly small).
fn size(rng: &mut Rng, mix: &str) -> usize {
    if mix == "uniform" {
        16 + rng.below(4096 - 16 + 1)
    } else {
        let bits = 4 + rng.below(9); // 2^4 ..= 2^12
        let low = 1 << bits;
        (low + rng.below(low + 1)).min(4096)
    }
}

/// Fills `live` blocks, then times `steps` pairs of (free a random live block, allocate a
/// new random size in its slot).
fn run<B: Backend>(backend: &mut B, options: &Options, mix: &str) -> f64 {
    let mut rng = Rng::new(0x5eed);
    let mut live: Vec<(NonNull<u8>, Layout)> = (0..options.live)
        .map(|_| {
            let layout = Layout::from_size_align(size(&mut rng, mix), 8).unwrap();
            (backend.allocate(layout).expect("fill").cast(), layout)
        })
        .collect();
    // Warm up, then time.
    churn(backend, &mut live, &mut rng, options.steps / 10, mix);
    let started = Instant::now();
    churn(backend, &mut live, &mut rng, options.steps, mix);
    let ns = started.elapsed().as_nanos() as f64 / options.steps as f64;
    for (ptr, layout) in live {
        // SAFETY: live with this layout.
        unsafe { backend.deallocate(ptr, layout) };
    }
    ns
}

#[inline(never)]
fn churn<B: Backend>(
    backend: &mut B,
    live: &mut [(NonNull<u8>, Layout)],
    rng: &mut Rng,
    steps: usize,
    mix: &str,
) {
    for _ in 0..steps {
        let slot = rng.below(live.len());
        let (ptr, layout) = live[slot];
        // SAFETY: live with this layout.
        unsafe { backend.deallocate(ptr, layout) };
        let layout = Layout::from_size_align(size(rng, mix), 8).unwrap();
        live[slot] = (
            black_box(backend.allocate(layout).expect("churn")).cast(),
            layout,
        );
    }
}

fn main() {
    let options = parse();
    let wanted = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    println!(
        "{} live blocks of 16-4096 B, {} MiB regions, {} pairs",
        options.live,
        options.region >> 20,
        options.steps
    );
    println!("| mix | allocator | ns per free + allocate |");
    println!("|---|---|---:|");
    for mix in MIXES {
        if options.mix.as_deref().is_some_and(|m| m != mix) {
            continue;
        }
        if wanted("bitmap") {
            let region = Region::new(options.region, 4096).leak();
            let mut arena = BitmapArena::with_region(region, BLOCK).unwrap();
            let ns = run(&mut arena, &options, mix);
            println!("| {mix} | heapkit BitmapArena | {ns:.1} |");
        }
        if wanted("tlsf") {
            let region = Region::new(options.region, 4096).leak();
            let mut tlsf: Tlsf = Tlsf::with_region(region).unwrap();
            let ns = run(&mut tlsf, &options, mix);
            println!("| {mix} | heapkit Tlsf | {ns:.1} |");
        }
    }
}
