//! Real programs under four C allocators: glibc, heapkit-malloc, mimalloc and jemalloc
//! (Debian's `libmimalloc2.0` and `libjemalloc2`), each preloaded, the allocators taking
//! turns within every round. Reports the median wall time and the largest peak resident
//! memory per (program, allocator), and redis-benchmark's requests per second.
//!
//! `cargo xtask bench malloc` builds the library and runs this; `-- --rounds N` repeats
//! more (default 5). glibc's row preloads libc itself, so its `malloc` comes first even in
//! a program linked against another allocator (Debian's redis links jemalloc).
#![allow(clippy::cast_precision_loss)] // ratios of times and sizes far below 2^52

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIB_DIRS: [&str; 2] = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"];

struct Allocator {
    name: &'static str,
    library: PathBuf,
}

fn system_library(file: &str) -> Option<PathBuf> {
    LIB_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(file))
        .find(|path| path.exists())
}

fn allocators(heapkit: PathBuf) -> Vec<Allocator> {
    let mut found = vec![Allocator {
        name: "heapkit-malloc",
        library: heapkit,
    }];
    for (name, file, package) in [
        ("glibc", "libc.so.6", "libc6"),
        ("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
        ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
    ] {
        match system_library(file) {
            Some(library) => found.push(Allocator { name, library }),
            None => println!("note: {name} left out: no {file} (apt install {package})"),
        }
    }
    found
}

/// Wall time and peak resident KiB of one run, through `wait4` (per child, unlike
/// `RUSAGE_CHILDREN`, which keeps the largest of all children).
fn measure(mut command: Command) -> (Duration, u64) {
    let started = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by `wait4` below, which gives its peak memory
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the program starts");
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into our locals.
    let waited = unsafe { libc::wait4(child.id() as i32, &raw mut status, 0, &raw mut usage) };
    let elapsed = started.elapsed();
    assert!(
        waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed ({status})"
    );
    (elapsed, usage.ru_maxrss as u64)
}

fn here(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn installed(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("note: {program} left out: not installed");
    }
    found
}

/// The interpreter `python3` runs: version managers (pyenv) put a shell script first on
/// the path, which would time a few dozen shell processes under each allocator as well.
fn interpreter() -> PathBuf {
    Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|path| PathBuf::from(path.trim()))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The programs: a name and a command maker taking the preloaded library.
type Program = (&'static str, Box<dyn Fn(&Path) -> Command>);

fn programs(scratch: &Path) -> Vec<Program> {
    let mut list: Vec<Program> = Vec::new();
    if installed("python3") {
        let python = interpreter();
        list.push((
            "python3 (dicts, strings, json)",
            Box::new(move |library| {
                let mut python = Command::new(&python);
                python
                    .env("LD_PRELOAD", library)
                    .env("PYTHONMALLOC", "malloc")
                    .arg(here("tests/programs/workload.py"));
                python
            }),
        ));
    }
    if installed("sqlite3") {
        let database = scratch.join("bench.db");
        list.push((
            "sqlite3 (100k rows)",
            Box::new(move |library| {
                let _ = std::fs::remove_file(&database);
                let mut sqlite = Command::new("sqlite3");
                sqlite
                    .env("LD_PRELOAD", library)
                    .arg(&database)
                    .stdin(std::fs::File::open(here("tests/programs/workload.sql")).unwrap());
                sqlite
            }),
        ));
    }
    list
}

struct Cell {
    times: Vec<Duration>,
    peak_kib: u64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// redis-benchmark against a preloaded redis-server on loopback: requests per second of
/// SET, GET, LPUSH and LPOP, and the server's peak resident KiB.
fn redis_round(library: &Path, port: u16) -> Option<(f64, u64)> {
    #[allow(clippy::zombie_processes)] // reaped by `wait4` below, which gives its peak memory
    let server = Command::new("redis-server")
        .env("LD_PRELOAD", library)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Ready when it answers.
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
    });
    let result = ready.then(|| {
        let output = Command::new("redis-benchmark")
            .args(["-p", &port.to_string(), "-q", "-n", "100000", "-c", "20"])
            .args(["-d", "256", "-t", "set,get,lpush,lpop", "--csv"])
            .output()
            .expect("redis-benchmark runs");
        let text = String::from_utf8_lossy(&output.stdout);
        // CSV: "test","rps",... one line per test after the header.
        let rates: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(1))
            .filter_map(|field| field.trim_matches('"').parse().ok())
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    });
    let _ = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "shutdown", "nosave"])
        .output();
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child.
    unsafe { libc::wait4(server.id() as i32, &raw mut status, 0, &raw mut usage) };
    result.map(|rps| (rps, usage.ru_maxrss as u64))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let library = PathBuf::from(args.next().expect("usage: programs LIBRARY [--rounds N]"));
    let rounds: usize = match (args.next().as_deref(), args.next()) {
        (Some("--rounds"), Some(n)) => n.parse().expect("a number of rounds"),
        _ => 5,
    };
    // On tmpfs where there is one: sqlite3 writes its database, and the bench times the
    // allocator, not the disk (writes to it made the medians wander by ±10%).
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let scratch = base.join("heapkit-malloc-bench");
    std::fs::create_dir_all(&scratch).unwrap();
    let allocators = allocators(library);
    let programs = programs(&scratch);
    let mut cells: Vec<Vec<Cell>> = programs
        .iter()
        .map(|_| {
            allocators
                .iter()
                .map(|_| Cell {
                    times: Vec::new(),
                    peak_kib: 0,
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for round in 0..rounds {
        for (p, (_, make)) in programs.iter().enumerate() {
            for a in rotated(allocators.len(), round) {
                let (time, kib) = measure(make(&allocators[a].library));
                cells[p][a].times.push(time);
                cells[p][a].peak_kib = cells[p][a].peak_kib.max(kib);
            }
        }
    }
    let mut table = String::from(
        "| program | allocator | median wall ms | vs glibc | vs mimalloc | peak RSS MiB | vs glibc |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    let index = |name: &str| allocators.iter().position(|a| a.name == name);
    for (p, (program, _)) in programs.iter().enumerate() {
        let ms: Vec<f64> = cells[p]
            .iter_mut()
            .map(|cell| {
                let mut t: Vec<f64> = cell.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
                median(&mut t)
            })
            .collect();
        let ratio = |a: usize, to: Option<usize>| {
            to.map_or("–".to_string(), |b| format!("{:.2}×", ms[a] / ms[b]))
        };
        for (a, allocator) in allocators.iter().enumerate() {
            let rss_ratio = index("glibc").map_or("–".to_string(), |g| {
                format!(
                    "{:.2}×",
                    cells[p][a].peak_kib as f64 / cells[p][g].peak_kib as f64
                )
            });
            let _ = writeln!(
                table,
                "| {program} | {} | {:.0} | {} | {} | {:.1} | {rss_ratio} |",
                allocator.name,
                ms[a],
                ratio(a, index("glibc")),
                ratio(a, index("mimalloc")),
                cells[p][a].peak_kib as f64 / 1024.0,
            );
        }
    }
    redis_table(&mut table, &allocators, rounds);
    let _ = writeln!(
        table,
        "\n_{rounds} rounds (redis: up to {REDIS_ROUNDS}), allocators in turn within each round, each round starting with the next; {:.0?} in all._",
        started.elapsed()
    );
    println!("{table}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("malloc.md"), &table);
}

/// The order the allocators take their turns in round `round`: each starts a round in
/// turn, so none is always the one that runs first (or right after another).
fn rotated(count: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |k| (k + round) % count)
}

/// Appends redis-benchmark's table, when redis is installed.
fn redis_table(table: &mut String, allocators: &[Allocator], rounds: usize) {
    if !(installed("redis-server") && installed("redis-benchmark") && installed("redis-cli")) {
        return;
    }
    let _ = writeln!(
        table,
        "\n| redis-benchmark (SET/GET/LPUSH/LPOP, 256 B, 20 clients) | median requests/s | vs glibc | vs glibc, median of rounds | server peak RSS MiB |\n|---|---:|---:|---:|---:|"
    );
    // Per round, per allocator: requests per second, when the server ran.
    let mut rates: Vec<Vec<Option<f64>>> = Vec::new();
    let mut peaks = vec![0u64; allocators.len()];
    for round in 0..rounds.min(REDIS_ROUNDS) {
        let mut this_round = vec![None; allocators.len()];
        for a in rotated(allocators.len(), round) {
            let port = 6400 + (round * allocators.len() + a) as u16;
            if let Some((rps, kib)) = redis_round(&allocators[a].library, port) {
                this_round[a] = Some(rps);
                peaks[a] = peaks[a].max(kib);
            }
        }
        rates.push(this_round);
    }
    let medians: Vec<f64> = (0..allocators.len())
        .map(|a| {
            let mut all: Vec<f64> = rates.iter().filter_map(|round| round[a]).collect();
            if all.is_empty() {
                0.0
            } else {
                median(&mut all)
            }
        })
        .collect();
    let glibc = allocators.iter().position(|a| a.name == "glibc");
    for (a, allocator) in allocators.iter().enumerate() {
        let vs = glibc.map_or("–".to_string(), |g| {
            format!("{:.2}×", medians[a] / medians[g])
        });
        // The machine's speed drifts between rounds more than allocators differ: the
        // ratio within each round (all allocators back to back) cancels the drift.
        let paired = glibc.map_or("–".to_string(), |g| {
            let mut ratios: Vec<f64> = rates
                .iter()
                .filter_map(|round| Some(round[a]? / round[g]?))
                .collect();
            if ratios.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2}×", median(&mut ratios))
            }
        });
        let _ = writeln!(
            table,
            "| {} | {:.0} | {vs} | {paired} | {:.1} |",
            allocator.name,
            medians[a],
            peaks[a] as f64 / 1024.0
        );
    }
}

/// Rounds of redis-benchmark at most: each takes about half a minute for four allocators.
const REDIS_ROUNDS: usize = 11;
