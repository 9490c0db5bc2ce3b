//! `cargo xtask <command>`: heapkit's project automation, one command per job.
//!
//! `cargo xtask ci` is what `.ci/run` calls: it installs what the later steps need, then runs
//! fmt, clippy, tests, miri, loom, the `no_std` build and a fuzz smoke run, stopping at the
//! first failure with the step's name.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

mod mutants;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci                      every step below after `install`, pairing independent ones
                          (one per core)
  install                 the nightly miri + rust-src components, the thumbv7em target,
                          and cargo-fuzz (each only when missing)
  fmt                     rustfmt check of the workspace and the fuzz project
  clippy                  clippy on all targets and features, then rustdoc; warnings
                          denied
  test                    cargo test --workspace --all-features (unit, integration, doc)
  miri                    unit and integration tests under miri, strict provenance
  miri-edges              every crates/*/tests/address_edges.rs, then every unit-test
                          module `address_edges`, under miri for i686-unknown-linux-gnu:
                          regions straddling 2 GiB and near the top
  miri-threads            the tests that share allocators between threads, under miri's
                          Stacked Borrows model with several scheduler seeds
  loom [--mutants [NAME...]]
                          every crates/*/tests/loom*.rs under --cfg loom, release mode;
                          --mutants weakens each named ordering (or NAME) to Relaxed in
                          turn and fails unless some loom model catches every one
  nostd                   build every #![no_std] crate for thumbv7em-none-eabihf
  stress                  the thread-caching heap's stress test (2, 4 and 8 threads, 10^7
                          operations) in release mode
  fuzz [--seconds N] [TARGET]
                          run each fuzz target (or TARGET) for N seconds (default 20)
  lab [--full] [--only NAME] [--trace FILE] [--update-readme]
                          every allocator and peer on the built-in workloads (or a trace
                          file): tables to the terminal and target/lab/report.md, SVG plots
                          in target/lab/ (about a minute; `lab --help` for the options)
  lab --study fragmentation [--update-readme]
                          Johnstone and Wilson's fragmentation study on real programs'
                          traces: target/lab/fragmentation.md and .svg (about 2 minutes)
  preload -- CMD [ARGS...]
                          build heapkit-malloc (release) and run CMD with it as the C
                          allocator (LD_PRELOAD); HEAPKIT_STATS=1 prints a summary at exit
  bench NAME [-- ARGS]    run benches/benches/NAME.rs (criterion, all contenders in one
                          process) and print each group's medians with ratios to the fastest;
                          the table is also written to target/bench/NAME.md. `bench malloc`
                          runs python3, sqlite3 and redis under glibc, heapkit-malloc,
                          mimalloc and jemalloc (apt-installing the last two where missing)
";

const NO_STD_TARGET: &str = "thumbv7em-none-eabihf";
const DEFAULT_FUZZ_SECONDS: u64 = 20;
/// `ci`'s smoke run per target: long enough to pass the seed corpus and reach new
/// inputs, short enough for the 25-minute budget (`cargo xtask fuzz` runs longer).
const CI_FUZZ_SECONDS: u64 = 6;

type Step = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let root = workspace_root();
    let started = Instant::now();
    let result = match command.as_str() {
        "ci" => ci(&root),
        "install" => run_step("install", install),
        "fmt" => run_step("fmt", || fmt(&root)),
        "clippy" => run_step("clippy", || clippy(&root)),
        "test" => run_step("test", || test(&root)),
        "miri" => run_step("miri", || miri(&root)),
        "miri-edges" => run_step("miri-edges", || miri_edges(&root)),
        "miri-threads" => run_step("miri-threads", || miri_threads(&root)),
        "loom" => match rest.split_first() {
            Some((flag, names)) if flag == "--mutants" => {
                run_step("loom --mutants", || mutants::run(&root, names))
            }
            Some((other, _)) => Err(format!("unexpected argument `{other}`\n{USAGE}")),
            None => run_step("loom", || loom(&root)),
        },
        "nostd" => run_step("nostd", || nostd(&root)),
        "stress" => run_step("stress", || stress(&root)),
        "fuzz" => parse_fuzz_args(rest).and_then(|(seconds, target)| {
            run_step("fuzz", || fuzz(&root, seconds, target.as_deref()))
        }),
        // Not `-q`: the first run compiles the lab and the peers for most of a minute, and
        // cargo's progress says so.
        "lab" => run(cargo(&root)
            .args([
                "run",
                "--release",
                "-p",
                "heapkit-lab",
                "--bin",
                "lab",
                "--",
            ])
            .args(rest)),
        "preload" => preload(
            &root,
            rest.strip_prefix(&["--".to_string()]).unwrap_or(rest),
        ),
        "bench" => match rest.split_first() {
            Some((name, args)) => run_step("bench", || bench(&root, name, args)),
            None => Err(format!("bench needs a name\n{USAGE}")),
        },
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => {
            eprintln!("xtask: {command} passed in {:.0?}", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn ci(root: &Path) -> Step {
    let mut times = Vec::new();
    let result = ci_steps(root, &mut times);
    eprintln!("\n{}", time_table(&times, result.is_ok()));
    result
}

fn ci_steps(root: &Path, times: &mut Vec<(&'static str, Duration)>) -> Step {
    let mut step = |name: &'static str, work: &dyn Fn() -> Step| {
        let started = Instant::now();
        let result = run_step(name, work);
        times.push((name, started.elapsed()));
        result
    };
    step("install", &install)?;
    step("fmt", &|| fmt(root))?;
    step("clippy", &|| clippy(root))?;
    step("test", &|| test(root))?;
    step("miri", &|| miri(root))?;
    step("miri-edges+threads", &|| miri_edges_and_threads(root))?;
    step("loom", &|| loom(root))?;
    step("nostd", &|| nostd(root))?;
    step("stress", &|| stress(root))?;
    step("fuzz", &|| fuzz(root, CI_FUZZ_SECONDS, None))
}

/// Each step's time, and the total, as a Markdown table.
fn time_table(times: &[(&str, Duration)], passed: bool) -> String {
    let mut table = String::from("| step | time |\n|---|---:|\n");
    for (name, time) in times {
        let _ = writeln!(table, "| {name} | {} |", minutes_seconds(*time));
    }
    let total = times.iter().map(|(_, time)| *time).sum();
    let _ = writeln!(
        table,
        "| **total** ({}) | {} |",
        if passed { "passed" } else { "failed" },
        minutes_seconds(total)
    );
    table
}

fn minutes_seconds(time: Duration) -> String {
    let seconds = time.as_secs();
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

/// Announces a step, times it, and names it in the error if it fails.
fn run_step(name: &str, step: impl FnOnce() -> Step) -> Step {
    eprintln!("\n==> xtask: step `{name}`");
    let started = Instant::now();
    let result = step().map_err(|why| format!("step `{name}` failed: {why}"));
    if result.is_ok() {
        eprintln!("==> xtask: step `{name}` done in {:.0?}", started.elapsed());
    }
    result
}

fn install() -> Step {
    // All three are no-ops when already present.
    run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    run(Command::new("rustup").args(["+nightly", "component", "add", "miri", "rust-src"]))?;
    run(Command::new("rustup").args(["target", "add", NO_STD_TARGET]))?;
    let have_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if have_fuzz {
        eprintln!("cargo-fuzz is installed");
        Ok(())
    } else {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
    }
}

fn fmt(root: &Path) -> Step {
    run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(&root.join("fuzz")).args(["fmt", "--", "--check"]))
}

fn clippy(root: &Path) -> Step {
    // Default features and all features: `checked` code paths differ.
    for features in [None, Some("--all-features")] {
        let mut command = cargo(root);
        command.args(["clippy", "--workspace", "--all-targets"]);
        command.args(features);
        command.args(["--", "-D", "warnings"]);
        run(&mut command)?;
    }
    // Broken and private intra-doc links are what a reader of the docs meets first.
    run(cargo(root)
        .args(["doc", "--no-deps", "--workspace"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

/// The programs behind the README's snippets, (package, example): `test` builds them with
/// the rest and runs each, so a snippet that stops compiling or working fails CI.
const README_EXAMPLES: [(&str, &str); 4] = [
    ("heapkit-pool", "vec_in_pool"),
    ("heapkit-tlsf", "global_static"),
    ("heapkit-tlsf", "global_system"),
    ("heapkit-segregated", "hashbrown_heap"),
];

fn test(root: &Path) -> Step {
    run(cargo(root).args(["test", "--workspace", "--all-features"]))?;
    // The debug assertions that stand in for `checked` when it is off.
    run(cargo(root).args([
        "test",
        "-p",
        "heapkit-fit",
        "--test",
        "model",
        "debug_builds",
    ]))?;
    // heapkit-malloc's programs test the library their features build: the all-features
    // run tested the checked one; this tests the one programs preload (its fast paths).
    run(cargo(root).args(["test", "-p", "heapkit-malloc", "--test", "programs"]))?;
    // `cargo test` built every example into the target folder; run the README's.
    // A relative CARGO_TARGET_DIR is relative to the workspace, where cargo ran.
    let target = root.join(env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()));
    for (package, example) in README_EXAMPLES {
        let program = target.join("debug").join("examples").join(example);
        if !program.is_file() {
            return Err(format!(
                "{package}'s example {example} was not built at {}",
                program.display()
            ));
        }
        eprintln!("--> example: {package} / {example}");
        run(&mut Command::new(&program))?;
    }
    Ok(())
}

/// The packages the miri step's second lane runs, about half of the interpreted time
/// (measured per package); every other library package runs in the first lane.
const MIRI_SECOND_LANE: [&str; 5] = [
    "heapkit-bitmap-arena",
    "heapkit-tlsf",
    "heapkit-sharded",
    "heapkit-pool",
    "heapkit-testkit",
];

fn miri(root: &Path) -> Step {
    // Miri interprets on one core: two lanes, each with its own target directory (cargo
    // locks one for a whole run), use both cores of the CI machine.
    // Doctests are left to `test`: miri would rebuild each as its own crate, and they
    // exercise nothing the unit and contract tests do not.
    let lane = |target_dir: Option<&str>| {
        let mut command = cargo(root);
        command
            .args(["+nightly", "miri", "test"])
            .args(["--all-features", "--lib", "--tests"])
            .env("MIRIFLAGS", miri_flags());
        if let Some(dir) = target_dir {
            command.env("CARGO_TARGET_DIR", root.join(dir));
        }
        command
    };
    let mut first = lane(None);
    first.args([
        "--workspace",
        "--exclude",
        "xtask",
        // Their tests run natively only (they leak benchmark regions and time real
        // allocators); under miri they were minutes of compiling plotters, mimalloc
        // and the peer crates for nothing.
        "--exclude",
        "heapkit-lab",
        "--exclude",
        "heapkit-benches",
        // A C surface whose tests run real programs with it preloaded: nothing for miri.
        "--exclude",
        "heapkit-malloc",
    ]);
    let mut second = lane(Some("target/miri-second-lane"));
    for package in MIRI_SECOND_LANE {
        first.args(["--exclude", package]);
        second.args(["-p", package]);
    }
    run_together(
        root,
        [("miri-first-lane", first), ("miri-second-lane", second)],
    )
}

/// Runs the commands at once, each writing to its own log under `target/xtask-logs`, then
/// prints each log whole (so their lines do not interleave) and fails if any failed.
fn run_together<const N: usize>(root: &Path, commands: [(&str, Command); N]) -> Step {
    let logs = root.join("target/xtask-logs");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let mut running = Vec::new();
    for (name, mut command) in commands {
        let path = logs.join(format!("{name}.log"));
        let log = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let log_too = log.try_clone().map_err(|e| e.to_string())?;
        eprintln!("--> {name}: {command:?} (log: {})", path.display());
        let child = command
            .stdout(log)
            .stderr(log_too)
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        running.push((name, command, child, path));
    }
    let mut failures = Vec::new();
    for (name, command, mut child, path) in running {
        let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
        let output = fs::read_to_string(&path).unwrap_or_default();
        eprintln!("--- {name} ({status}) ---\n{output}");
        if !status.success() {
            failures.push(format!("{command:?} exited with {status}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn miri_flags() -> String {
    let mut flags = String::from("-Zmiri-strict-provenance");
    if let Ok(extra) = env::var("MIRIFLAGS") {
        flags.push(' ');
        flags.push_str(&extra);
    }
    flags
}

/// The 32-bit target the address-edge tests run on under miri (no libc needed).
const EDGE_TARGET: &str = "i686-unknown-linux-gnu";

/// The integration tests `tests/address_edges.rs` with every feature, then the unit tests
/// in modules named `address_edges` (for what only a crate's own tests can reach, such as
/// a region plan over made-up addresses near the top) with every feature and with none:
/// `checked` changes the bookkeeping a region needs, and so where its edges are.
fn miri_edges(root: &Path) -> Step {
    let packages = packages_with_test(root, "address_edges")?;
    if packages.is_empty() {
        return Err("no crates/*/tests/address_edges.rs found".into());
    }
    run(miri_edges_command(root, &packages, "--all-features").args(["--test", "address_edges"]))?;
    let packages = packages_with_unit_module(root, "address_edges")?;
    if packages.is_empty() {
        return Err("no unit-test module `address_edges` found under crates/*/src".into());
    }
    for features in ["--all-features", "--no-default-features"] {
        run(miri_edges_command(root, &packages, features).args(["--lib", "--", "address_edges"]))?;
    }
    Ok(())
}

/// `cargo miri test` for the edge target over `packages` with `features` (a cargo flag);
/// the caller names the targets.
fn miri_edges_command(root: &Path, packages: &[String], features: &str) -> Command {
    let mut command = cargo(root);
    command.args([
        "+nightly",
        "miri",
        "test",
        "--target",
        EDGE_TARGET,
        features,
    ]);
    for package in packages {
        command.args(["-p", package]);
    }
    command.env("MIRIFLAGS", miri_flags());
    command
}

/// The address edges and the threaded tests at once, one per core, each through this
/// program's own step: the edges in their own target directory (cargo locks one for a
/// whole run).
fn miri_edges_and_threads(root: &Path) -> Step {
    let program = env::current_exe().map_err(|e| format!("cannot find xtask itself: {e}"))?;
    let mut edges = Command::new(&program);
    edges
        .arg("miri-edges")
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target/miri-edges"));
    let mut threads = Command::new(program);
    threads.arg("miri-threads").current_dir(root);
    run_together(root, [("miri-edges", edges), ("miri-threads", threads)])
}

/// The test files whose allocators are shared between real threads: `Locked` and its
/// guard, `AtomicPool`, `AtomicBitmap`, the sharded heap's remote frees and abandonment. Each runs under Stacked Borrows (miri's default
/// model) once per seed, so different interleavings are tried.
const THREAD_TESTS: [(&str, &str); 5] = [
    ("heapkit-core", "adapters"),
    ("heapkit-core", "spin_guard"),
    ("heapkit-pool", "stress"),
    ("heapkit-bitmap-arena", "stress"),
    ("heapkit-sharded", "threads"),
];
const THREAD_SEEDS: &str = "0..2";

fn miri_threads(root: &Path) -> Step {
    for (package, test) in THREAD_TESTS {
        let file = root
            .join("crates")
            .join(package.trim_start_matches("heapkit-"));
        if !file.join("tests").join(format!("{test}.rs")).is_file() {
            return Err(format!("{package} has no tests/{test}.rs"));
        }
        eprintln!("--> miri-threads: {package} / {test}, seeds {THREAD_SEEDS}");
        let mut command = cargo(root);
        command
            .args(["+nightly", "miri", "test", "--all-features", "-p", package])
            .args(["--test", test])
            .env(
                "MIRIFLAGS",
                format!("{} -Zmiri-many-seeds={THREAD_SEEDS}", miri_flags()),
            );
        run(&mut command)?;
    }
    Ok(())
}

/// Packages with an inline `mod <name> {` (a line of its own) in a source file under
/// `crates/*/src`.
fn packages_with_unit_module(root: &Path, name: &str) -> Result<Vec<String>, String> {
    let module = format!("mod {name} {{");
    let mut packages = Vec::new();
    for dir in crate_dirs(root)? {
        let mut files = Vec::new();
        mutants::rust_files(&dir.join("src"), &mut files)?;
        for file in files {
            let text = fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            if text.lines().any(|line| line.trim_start() == module) {
                packages.push(package_name(&dir)?);
                break;
            }
        }
    }
    Ok(packages)
}

/// Packages with a `tests/<name>.rs` file under `crates/`.
fn packages_with_test(root: &Path, name: &str) -> Result<Vec<String>, String> {
    let mut packages = Vec::new();
    for dir in crate_dirs(root)? {
        if dir.join("tests").join(format!("{name}.rs")).is_file() {
            packages.push(package_name(&dir)?);
        }
    }
    Ok(packages)
}

fn loom(root: &Path) -> Step {
    let tests = loom_tests(root)?;
    if tests.is_empty() {
        return Err("no crates/*/tests/loom*.rs found".into());
    }
    for (package, test) in tests {
        eprintln!("--> loom: {package} / {test}");
        let mut command = cargo(root);
        command
            .args([
                "test",
                "--release",
                "--all-features",
                "-p",
                &package,
                "--test",
                &test,
            ])
            .args(["--", "--nocapture"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root.join("target").join("loom"))
            .env_remove(mutants::WEAKEN_VAR);
        if env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
            command.env("LOOM_MAX_PREEMPTIONS", "3");
        }
        run(&mut command)?;
    }
    Ok(())
}

/// `(package, test target)` for every `crates/<dir>/tests/loom*.rs`.
fn loom_tests(root: &Path) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    for dir in crate_dirs(root)? {
        let Ok(entries) = fs::read_dir(dir.join("tests")) else {
            continue;
        };
        let package = package_name(&dir)?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let stem = path.file_stem()?.to_str()?.to_owned();
                (stem.starts_with("loom") && path.extension()? == "rs").then_some(stem)
            })
            .collect();
        names.sort();
        found.extend(names.into_iter().map(|name| (package.clone(), name)));
    }
    Ok(found)
}

/// The release-mode stress run: 10^7 operations take seconds optimised, minutes not.
/// Without `checked`, which takes a lock on every free: with it the run took 125 s of
/// CI's 25 minutes, against 47 s. The test step's debug run keeps `checked` under
/// concurrency (the same test, 1/50 of the operations, all features).
fn stress(root: &Path) -> Step {
    run(cargo(root).args([
        "test",
        "--release",
        "-p",
        "heapkit-sharded",
        "--test",
        "stress",
    ]))
}

fn nostd(root: &Path) -> Step {
    let mut built = 0;
    for dir in crate_dirs(root)? {
        let lib = fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        if !lib.contains("#![no_std]") && !lib.contains("no_std)]") {
            continue;
        }
        let package = package_name(&dir)?;
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).map_err(|e| e.to_string())?;
        let mut feature_sets = vec![""];
        if manifest
            .lines()
            .any(|line| line.trim_start().starts_with("checked ="))
        {
            feature_sets.push("checked");
        }
        for features in feature_sets {
            eprintln!("--> nostd: {package} [{features}]");
            let mut command = cargo(root);
            command
                .args(["build", "--target", NO_STD_TARGET, "-p", &package])
                .arg("--no-default-features");
            if !features.is_empty() {
                command.args(["--features", features]);
            }
            run(&mut command)?;
            built += 1;
        }
    }
    if built == 0 {
        return Err("no #![no_std] crate found under crates/".into());
    }
    Ok(())
}

fn fuzz(root: &Path, seconds: u64, only: Option<&str>) -> Step {
    let fuzz_dir = root.join("fuzz");
    let listed = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(&fuzz_dir)
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    if !listed.status.success() {
        return Err(String::from_utf8_lossy(&listed.stderr).into_owned());
    }
    let targets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && only.is_none_or(|only| only == *name))
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        return Err(match only {
            Some(name) => format!("no fuzz target named `{name}`"),
            None => "no fuzz targets in fuzz/".into(),
        });
    }
    // One build for every target, then two targets at a time, one per core.
    run(Command::new("cargo")
        .args(["+nightly", "fuzz", "build"])
        .current_dir(&fuzz_dir))?;
    let fuzz_run = |target: &str| -> Result<Command, String> {
        fs::create_dir_all(fuzz_dir.join("corpus").join(target)).map_err(|e| e.to_string())?;
        let mut command = Command::new("cargo");
        command
            .args(["+nightly", "fuzz", "run", target])
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .current_dir(&fuzz_dir);
        Ok(command)
    };
    for pair in targets.chunks(2) {
        eprintln!("--> fuzz: {} for {seconds} s", pair.join(" and "));
        match pair {
            [one, two] => run_together(
                root,
                [
                    (format!("fuzz-{one}").as_str(), fuzz_run(one)?),
                    (format!("fuzz-{two}").as_str(), fuzz_run(two)?),
                ],
            )?,
            [one] => run(&mut fuzz_run(one)?)?,
            _ => unreachable!("chunks of two"),
        }
    }
    Ok(())
}

fn bench(root: &Path, name: &str, args: &[String]) -> Step {
    let started = std::time::SystemTime::now();
    let passthrough = args.iter().skip_while(|a| *a == "--");
    if name == "malloc" {
        // Whole programs under each C allocator: not criterion (one process per run).
        install_apt(&["libmimalloc2.0", "libjemalloc2", "redis-server"]);
        run(cargo(root).args(["build", "--release", "-q", "-p", "heapkit-malloc"]))?;
        return run(cargo(root)
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "heapkit-malloc",
                "--example",
                "programs",
                "--",
            ])
            .arg(malloc_library(root))
            .args(passthrough));
    }
    run(cargo(root)
        .args(["bench", "-p", "heapkit-benches", "--bench", name, "--"])
        .args(passthrough))?;
    let table = bench_table(&root.join("target/criterion"), started)?;
    let out = root.join("target/bench");
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    fs::write(out.join(format!("{name}.md")), &table).map_err(|e| e.to_string())?;
    println!("\n{table}");
    Ok(())
}

/// One criterion result: its group, its name, and the median time per element in ns.
struct Measured {
    group: String,
    name: String,
    ns_per_element: f64,
}

/// Markdown tables of every criterion result written since `since`, one per group, with
/// each median as a ratio to the group's fastest.
fn bench_table(criterion: &Path, since: std::time::SystemTime) -> Result<String, String> {
    let mut results = Vec::new();
    collect_results(criterion, since, &mut results)?;
    if results.is_empty() {
        return Err("criterion wrote no results".into());
    }
    results.sort_by(|a, b| {
        a.group
            .cmp(&b.group)
            .then(a.ns_per_element.total_cmp(&b.ns_per_element))
    });
    let mut table = String::new();
    for group in results.chunk_by(|a, b| a.group == b.group) {
        let best = group[0].ns_per_element;
        let _ = write!(
            table,
            "### {}\n\n| allocator | median ns/op | vs fastest |\n|---|---:|---:|\n",
            group[0].group
        );
        for m in group {
            let _ = writeln!(
                table,
                "| {} | {:.2} | {:.2}x |",
                m.name,
                m.ns_per_element,
                m.ns_per_element / best
            );
        }
        table.push('\n');
    }
    Ok(table)
}

fn collect_results(
    dir: &Path,
    since: std::time::SystemTime,
    out: &mut Vec<Measured>,
) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_results(&path, since, out)?;
            continue;
        }
        let is_new = path.parent().is_some_and(|p| p.ends_with("new"));
        if !is_new || path.file_name().is_none_or(|n| n != "benchmark.json") {
            continue;
        }
        let fresh = fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified >= since);
        if !fresh {
            continue;
        }
        let info = fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let estimates =
            fs::read_to_string(path.with_file_name("estimates.json")).map_err(|e| e.to_string())?;
        let field = |json: &str, key: &str| json_string(json, key);
        let group = field(&info, "group_id").ok_or("benchmark.json without group_id")?;
        let full = field(&info, "full_id").ok_or("benchmark.json without full_id")?;
        let name = full
            .strip_prefix(&format!("{group}/"))
            .unwrap_or(&full)
            .to_owned();
        let elements = json_number_after(&info, "\"Elements\":").unwrap_or(1.0);
        let median = estimates
            .find("\"median\":")
            .and_then(|at| json_number_after(&estimates[at..], "\"point_estimate\":"))
            .ok_or("estimates.json without a median")?;
        out.push(Measured {
            group,
            name,
            ns_per_element: median / elements,
        });
    }
    Ok(())
}

/// The string value of `"key":"value"` in a flat JSON text (criterion's files).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_owned())
}

/// The number right after the first `marker` in `json`.
fn json_number_after(json: &str, marker: &str) -> Option<f64> {
    let start = json.find(marker)? + marker.len();
    let rest = &json[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn parse_fuzz_args(args: &[String]) -> Result<(u64, Option<String>), String> {
    let mut seconds = DEFAULT_FUZZ_SECONDS;
    let mut target = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let value = args.next().ok_or("--seconds needs a number")?;
            seconds = value
                .parse()
                .map_err(|_| format!("--seconds takes a whole number, not `{value}`"))?;
        } else if target.is_none() && !arg.starts_with('-') {
            target = Some(arg.clone());
        } else {
            return Err(format!("unexpected argument `{arg}`\n{USAGE}"));
        }
    }
    Ok((seconds, target))
}

/// A `cargo` command (through the rustup proxy, so `+nightly` works) run in `dir`.
/// Where `cargo build --release -p heapkit-malloc` puts the preloadable library.
fn malloc_library(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release/libheapkit_malloc.so")
}

/// Installs Debian packages a benchmark compares against, where missing, saying so; a
/// failure is only reported (the benchmark leaves that contender out).
fn install_apt(packages: &[&str]) {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg")
                .args(["-s", package])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("xtask: installing {} with apt-get", missing.join(" "));
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&missing)
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("xtask: could not install {}; left out", missing.join(" "));
    }
}

/// Builds heapkit-malloc and runs `command` with it preloaded, passing its exit status on.
fn preload(root: &Path, command: &[String]) -> Step {
    let Some((program, args)) = command.split_first() else {
        return Err(format!("preload needs a command\n{USAGE}"));
    };
    run(cargo(root).args(["build", "--release", "-q", "-p", "heapkit-malloc"]))?;
    let library = malloc_library(root);
    if !library.exists() {
        return Err(format!("no library at {}", library.display()));
    }
    run(Command::new(program).args(args).env("LD_PRELOAD", &library))
}

fn cargo(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(dir);
    command
}

fn run(command: &mut Command) -> Step {
    let status = command
        .status()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} exited with {status}"))
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives in <root>/xtask.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .map_err(|e| format!("cannot list crates/: {e}"))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn package_name(dir: &Path) -> Result<String, String> {
    let manifest = fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    manifest
        .lines()
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("name")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .ok_or_else(|| format!("no package name in {}/Cargo.toml", dir.display()))
}
