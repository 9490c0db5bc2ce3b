//! Records the lab's traces from real programs: `cargo run --release -p heapkit-lab
//! --example record_traces` rewrites `crates/lab/traces/*.trace`. Each program runs under a
//! recording global allocator; only the program's own thread is recorded. The `BTreeMap`
//! and JSON traces come out the same on every run; the regex crate's compiler varies a
//! little between runs (its hash maps are randomly seeded).

use std::alloc::System;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use heapkit_trace::record::Recorder;

#[global_allocator]
static RECORDER: Recorder<System> = Recorder::new(System);

/// A `BTreeMap` of 5,000 string keys to small vectors: built, queried, half removed.
fn btreemap() {
    let mut map: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for i in 0..5_000u32 {
        let key = format!("key-{:08}", i.wrapping_mul(2_654_435_761) % 1_000_003);
        map.entry(key).or_default().extend(0..i % 7);
    }
    let hits = (0..5_000u32)
        .filter(|i| map.contains_key(&format!("key-{:08}", i * 3)))
        .count();
    black_box(hits);
    let doomed: Vec<String> = map.keys().step_by(2).cloned().collect();
    for key in doomed {
        map.remove(&key);
    }
    black_box(map);
}

/// A JSON document of 600 records: built, printed, parsed back.
fn json() {
    let records: Vec<serde_json::Value> = (0..600u32)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "name": format!("user-{i}"),
                "email": format!("user{i}@example.org"),
                "tags": (0..i % 5).map(|t| format!("tag{t}")).collect::<Vec<_>>(),
                "score": f64::from(i) * 0.75,
                "address": { "street": format!("{} Main St", i % 300), "zip": format!("{:05}", i * 7 % 99_999) },
            })
        })
        .collect();
    let document = serde_json::Value::Array(records);
    let text = serde_json::to_string(&document).expect("serialisable");
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(parsed, document);
}

/// A set of 6 regexes compiled and run over a generated text.
fn regex() {
    let patterns: Vec<String> = (0..6)
        .map(|i| match i % 5 {
            0 => format!(r"\b[a-z]+{i}\b"),
            1 => format!(r"(?i)error[: ]+\w{{{}}}", i % 7 + 1),
            2 => format!(r"\d{{{}}}-\d{{2}}-\d{{2}}", i % 4 + 2),
            3 => format!(r"[A-Z][a-z]+ [A-Z][a-z]+ {i}"),
            _ => format!(r"(foo|bar|baz){i}(qux)?"),
        })
        .collect();
    let set = regex::RegexSet::new(&patterns).expect("valid patterns");
    let mut text = String::new();
    for i in 0..400 {
        let _ = writeln!(
            text,
            "line {i}: Error: thing{} 2024-0{}-1{} Foo Bar {} baz{}",
            i % 31,
            i % 9,
            i % 10,
            i % 30,
            i % 30
        );
    }
    let mut matched = 0;
    for line in text.lines() {
        matched += set.matches(line).iter().count();
    }
    let each: Vec<regex::Regex> = patterns
        .iter()
        .map(|p| regex::Regex::new(p).expect("valid"))
        .collect();
    let found: usize = each.iter().map(|re| re.find_iter(&text).count()).sum();
    black_box((matched, found));
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces");
    std::fs::create_dir_all(&dir).expect("traces directory");
    let programs: [(&str, fn()); 3] = [("btreemap", btreemap), ("json", json), ("regex", regex)];
    for (name, program) in programs {
        RECORDER.start(4 << 20);
        program();
        let trace = RECORDER.stop().expect("the recording fits its log");
        let text = trace.to_text();
        let path = dir.join(format!("{name}.trace"));
        std::fs::write(&path, &text).expect("trace written");
        let summary = trace.summary();
        println!(
            "{name}: {} events, {} allocations, peak live {} B, largest {} B, {} KiB of text",
            summary.events,
            summary.allocs,
            summary.peak_live,
            summary.max_size,
            text.len() / 1024
        );
    }
}
