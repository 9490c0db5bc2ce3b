//! heapkit-malloc under real programs: C test programs compiled here, python3 and sqlite3,
//! each run with the library preloaded. A program that is not installed is skipped with
//! the reason printed (run with `--nocapture` to see it); `cargo xtask ci` shows it.
#![cfg(all(target_os = "linux", not(miri)))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The preloadable library, built once per test run (`cargo test` does not build a
/// crate's `cdylib` for its tests).
fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        // The library under test has this test's features (`--features checked` too).
        let mut args = vec!["build", "--release", "-p", "heapkit-malloc"];
        if cfg!(feature = "checked") {
            args.extend(["--features", "checked"]);
        }
        cargo_messages(&args)
            .iter()
            .filter(|message| message["reason"] == "compiler-artifact")
            .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|name| name.as_str().map(PathBuf::from))
            .find(|path| path.extension().is_some_and(|ext| ext == "so"))
            .expect("cargo names the cdylib it built")
    })
}

/// Runs cargo with `args` and `--message-format=json`: its messages, one per line.
fn cargo_messages(args: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .arg("--message-format=json")
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Whether `program` can be run; prints why the test is skipped when it cannot.
fn available(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        println!("SKIPPED {test}: `{program}` is not installed");
    }
    found
}

/// Whether `test` runs in this build: not under `checked`, for the reason `why` (printed).
fn runs_unchecked(test: &str, why: &str) -> bool {
    if cfg!(feature = "checked") {
        println!("SKIPPED {test}: {why}");
        return false;
    }
    true
}

/// Whether this run takes whole programs (python3, sqlite3, the workspace's tests): not
/// under `checked`, whose run tests the checked library with the C programs; CI runs
/// these tests again without features, against the library programs preload.
fn takes_whole_programs(test: &str) -> bool {
    runs_unchecked(
        test,
        "whole programs run against the library without `checked`",
    )
}

fn here(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("heapkit-malloc");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// `command` with the library preloaded.
fn preloaded(mut command: Command) -> Command {
    command.env("LD_PRELOAD", library());
    command
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("the program starts");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Compiles `tests/c/{name}.c` with the system C compiler.
fn compile_c(name: &str) -> PathBuf {
    let binary = scratch().join(name);
    run({
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-Wall", "-pthread", "-o"])
            .arg(&binary)
            .arg(here(&format!("tests/c/{name}.c")));
        cc
    });
    binary
}

/// Runs a C test program under the preload; it prints `ok <name>` when every check held.
fn c_program(name: &str) {
    if !available("cc", name) {
        return;
    }
    let binary = compile_c(name);
    let output = run(preloaded(Command::new(&binary)));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("ok {name}")),
        "{name} did not finish:\n{stdout}"
    );
}

#[test]
fn c_edge_cases_of_every_function() {
    c_program("edges");
}

#[test]
fn c_four_threads_with_cross_thread_frees() {
    c_program("threads");
}

#[test]
fn c_fork_from_a_multi_threaded_parent() {
    c_program("fork");
}

#[test]
fn c_shrinking_never_fails_when_memory_runs_out() {
    c_program("shrink");
}

#[test]
fn c_a_signal_handler_allocating_mid_call_corrupts_nothing() {
    if runs_unchecked(
        "c_a_signal_handler_allocating_mid_call_corrupts_nothing",
        "under `checked` every free takes a lock to validate its pointer, and a handler \
         that interrupts it would wait for that lock",
    ) {
        c_program("signals");
    }
}

/// Runs `command` under glibc and under the preload (with `HEAPKIT_STATS`, to prove the
/// library served it) and checks the outputs are the same.
fn same_output_as_glibc(make: impl Fn() -> Command) -> String {
    let glibc = run(make());
    let mut heapkit = preloaded(make());
    heapkit.env("HEAPKIT_STATS", "1");
    let heapkit = run(heapkit);
    assert_eq!(
        String::from_utf8_lossy(&glibc.stdout),
        String::from_utf8_lossy(&heapkit.stdout),
        "output differs from glibc's"
    );
    let report = String::from_utf8_lossy(&heapkit.stderr).into_owned();
    let mallocs: u64 = report
        .split_whitespace()
        .find_map(|word| word.strip_prefix("malloc="))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no stats report, so the library was not loaded:\n{report}"));
    assert!(
        mallocs > 1000,
        "only {mallocs} mallocs went through heapkit"
    );
    report
}

#[test]
fn python3_dicts_strings_and_json() {
    if !takes_whole_programs("python3_dicts_strings_and_json")
        || !available("python3", "python3_dicts_strings_and_json")
    {
        return;
    }
    same_output_as_glibc(|| {
        let mut python = Command::new("python3");
        // Every object through the C allocator, not python's own small-object pools.
        python
            .env("PYTHONMALLOC", "malloc")
            .arg(here("tests/programs/workload.py"));
        python
    });
}

#[test]
fn sqlite3_builds_and_queries_100k_rows() {
    if !takes_whole_programs("sqlite3_builds_and_queries_100k_rows")
        || !available("sqlite3", "sqlite3_builds_and_queries_100k_rows")
    {
        return;
    }
    let dir = scratch();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    same_output_as_glibc(|| {
        let database = dir.join(format!(
            "workload-{}.db",
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&database);
        let mut sqlite = Command::new("sqlite3");
        sqlite
            .arg(&database)
            .stdin(std::fs::File::open(here("tests/programs/workload.sql")).expect("the workload"));
        sqlite
    });
}

#[test]
fn stats_report_counts_calls_and_classes() {
    // `ls` closes its standard error before it exits (GNU's `close_stdout`): the report
    // must still come out.
    let mut ls = preloaded(Command::new("ls"));
    ls.env("HEAPKIT_STATS", "1").arg("/");
    let output = run(ls);
    let report = String::from_utf8_lossy(&output.stderr);
    for expected in ["calls malloc=", "peak live", "peak mapped", "by class"] {
        assert!(report.contains(expected), "no `{expected}` in:\n{report}");
    }
    let mut quiet = preloaded(Command::new("ls"));
    quiet.arg("/");
    assert!(
        run(quiet).stderr.is_empty(),
        "no report without HEAPKIT_STATS"
    );
}

#[test]
fn heapkit_trace_records_every_thread_and_the_lab_can_read_it() {
    if !available(
        "cc",
        "heapkit_trace_records_every_thread_and_the_lab_can_read_it",
    ) {
        return;
    }
    let binary = compile_c("traced");
    let trace_path = scratch().join("traced.trace");
    let _ = std::fs::remove_file(&trace_path);
    let mut traced = preloaded(Command::new(&binary));
    traced.env("HEAPKIT_TRACE", &trace_path);
    let output = run(traced);
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok traced"));
    let text = std::fs::read_to_string(&trace_path).expect("the trace was written at exit");
    let trace = heapkit_trace::trace::Trace::parse(&text).expect("a valid trace");
    let threads = trace.threads();
    assert_eq!(threads.len(), trace.events().len(), "every event tagged");
    let distinct: std::collections::BTreeSet<u32> = threads.iter().copied().collect();
    assert!(
        distinct.len() >= 4,
        "main and the three workers, got threads {distinct:?}"
    );
    let summary = trace.summary();
    // 3 × 1000 blocks, a tenth of them reallocated; the forked child's calls are not in it.
    assert!(summary.allocs >= 3000, "{summary:?}");
    let reallocs = trace
        .events()
        .iter()
        .filter(|event| matches!(event, heapkit_trace::trace::Event::Realloc { .. }))
        .count();
    assert!(reallocs >= 300, "{reallocs} reallocs");
    let childs = trace
        .events()
        .iter()
        .filter(|event| matches!(event, heapkit_trace::trace::Event::Alloc { size: 777, .. }))
        .count();
    assert_eq!(
        childs, 0,
        "the forked child wrote its own trace over the parent's"
    );
    assert!(summary.max_size >= 1000);
}

#[test]
fn the_workspaces_own_test_binaries_pass_under_the_preload() {
    if !takes_whole_programs("the_workspaces_own_test_binaries_pass_under_the_preload") {
        return;
    }
    // Rust programs on the system allocator: std's `System` calls `malloc`, so with the
    // library preloaded every Box, Vec and String of these tests is ours.
    let binaries: Vec<PathBuf> = cargo_messages(&[
        "test",
        "--no-run",
        "-p",
        "heapkit-trace",
        "-p",
        "heapkit-pool",
    ])
    .iter()
    // Test harnesses only, not the examples `--no-run` builds too.
    .filter(|message| message["profile"]["test"] == true)
    .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
    .collect();
    assert!(binaries.len() >= 3, "test binaries: {binaries:?}");
    for binary in binaries {
        let mut test = preloaded(Command::new(&binary));
        test.env("HEAPKIT_STATS", "1").arg("--test-threads=2");
        let output = run(test);
        let report = String::from_utf8_lossy(&output.stderr);
        assert!(
            report.contains("heapkit-malloc stats: calls malloc="),
            "{binary:?} did not run on heapkit-malloc:\n{report}"
        );
    }
}

#[test]
fn reports_at_exit_do_not_change_the_exit_status_when_stderr_is_a_closed_pipe() {
    // `program 2>&1 | head`: the reader is gone by the time the exit report is written,
    // and a SIGPIPE then must not kill the program.
    let trace = scratch().join("closed-pipe-%p.trace");
    let mut ls = preloaded(Command::new("ls"));
    ls.env("HEAPKIT_STATS", "1")
        .env("HEAPKIT_TRACE", &trace)
        .arg("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = ls.spawn().expect("ls starts");
    drop(child.stderr.take());
    let status = child.wait().expect("ls ends");
    assert!(status.success(), "ls ended with {status}");
}

#[test]
fn a_fork_handler_registered_before_ours_may_allocate() {
    if !available("cc", "a_fork_handler_registered_before_ours_may_allocate") {
        return;
    }
    let dir = scratch();
    let library = dir.join("libforkhandler.so");
    run({
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-shared", "-fPIC", "-pthread", "-o"])
            .arg(&library)
            .arg(here("tests/c/fork_handler_lib.c"));
        cc
    });
    let binary = dir.join("fork_handler");
    run({
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-pthread", "-o"])
            .arg(&binary)
            .arg(here("tests/c/fork_handler.c"))
            .arg("-Wl,--no-as-needed")
            .arg(&library)
            .arg(format!("-Wl,-rpath,{}", dir.display()));
        cc
    });
    let mut program = preloaded(Command::new(&binary));
    program.stdout(std::process::Stdio::piped());
    let mut child = program.spawn().expect("starts");
    // A deadlock shows as a hang: give it a generous minute, then fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("fork_handler hung: a deadlock between fork handlers and the heap's locks");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(
        status.success() && stdout.contains("ok fork_handler"),
        "{status}: {stdout}"
    );
}
