//! `cargo xtask loom --mutants [NAME...]`: weakens each named ordering in turn to `Relaxed`
//! and checks that a loom model then fails.
//!
//! Shipped code names every ordering stronger than `Relaxed` with
//! `heapkit_core::sync::ordering("<name>", Ordering::X)` (fences with
//! `sync::fence("<name>", ...)`). The names are found by scanning `crates/*/src/**/*.rs` for
//! those calls; a strong ordering written anywhere else, a name used twice, or a name given
//! on the command line that the scan did not find is an error. heapkit-core reads the name
//! to weaken from `HEAPKIT_WEAKEN` when it is compiled under `--cfg loom`, so each mutant
//! rebuilds only heapkit-core and what depends on it, in `target/loom-mutants`.
//!
//! Each mutant runs every loom test binary (`tests/loom*.rs`) of the crate whose sources
//! name the ordering, after one run of those binaries unweakened (which must pass, or every
//! mutant would look caught). The run fails unless every mutant makes some model fail.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{cargo, crate_dirs, loom_tests, package_name, Step};

/// The variable heapkit-core's `sync` module reads at compile time (loom builds only).
pub const WEAKEN_VAR: &str = "HEAPKIT_WEAKEN";

/// Orderings that must be named; `Relaxed` needs no name (there is nothing to weaken).
const STRONG: [&str; 4] = ["Acquire", "Release", "AcqRel", "SeqCst"];

/// The helpers that name an ordering: `ordering("name", order)` and `fence("name", order)`.
const HELPERS: [&str; 2] = ["ordering", "fence"];

/// One named ordering in the sources.
struct Named {
    name: String,
    package: String,
    /// `path:line`, relative to the workspace root.
    site: String,
    /// The ordering as written, e.g. `Ordering::Acquire`.
    order: String,
}

/// What one loom test binary did.
struct Run {
    /// `(test function, first line of its panic message)` for every failed test.
    failed: Vec<(String, String)>,
}

/// One mutant's result.
struct Outcome<'a> {
    named: &'a Named,
    /// `(test binary, test function, reason)` for every model that failed.
    caught_by: Vec<(String, String, String)>,
    elapsed: Duration,
}

pub fn run(root: &Path, args: &[String]) -> Step {
    let started = Instant::now();
    let all = scan(root)?;
    let selected = select(&all, args)?;
    let tests = loom_tests(root)?;
    let target = root.join("target").join("loom-mutants");

    let packages: BTreeSet<&str> = selected.iter().map(|n| n.package.as_str()).collect();
    for package in &packages {
        let binaries = binaries_of(&tests, package);
        if binaries.is_empty() {
            return Err(format!(
                "{package} names orderings but has no tests/loom*.rs to catch them"
            ));
        }
        for binary in binaries {
            eprintln!("--> loom --mutants: baseline {package} / {binary}");
            let baseline = run_binary(root, &target, package, binary, None)?;
            if let Some((test, reason)) = baseline.failed.first() {
                return Err(format!(
                    "{binary}::{test} fails with no ordering weakened ({reason}); \
                     fix the model before counting mutants"
                ));
            }
        }
    }

    let mut outcomes = Vec::new();
    for named in &selected {
        let began = Instant::now();
        let mut caught_by = Vec::new();
        for binary in binaries_of(&tests, &named.package) {
            eprintln!("--> loom --mutants: {} weakened, {binary}", named.name);
            let run = run_binary(root, &target, &named.package, binary, Some(&named.name))?;
            caught_by.extend(
                run.failed
                    .into_iter()
                    .map(|(test, reason)| (binary.to_owned(), test, reason)),
            );
        }
        outcomes.push(Outcome {
            named,
            caught_by,
            elapsed: began.elapsed(),
        });
    }

    let report = table(&outcomes, started.elapsed());
    println!("\n{report}");
    fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    fs::write(target.join("report.md"), &report).map_err(|e| e.to_string())?;

    let missed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.caught_by.is_empty())
        .map(|o| o.named.name.as_str())
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no loom model fails when these are Relaxed: {}",
            missed.join(", ")
        ))
    }
}

/// The named orderings the command line asks for (all of them when it names none).
fn select<'a>(all: &'a [Named], args: &[String]) -> Result<Vec<&'a Named>, String> {
    if args.is_empty() {
        return Ok(all.iter().collect());
    }
    let mut selected = Vec::new();
    for arg in args {
        if arg.starts_with('-') {
            return Err(format!("unexpected option `{arg}` after --mutants"));
        }
        let named = all.iter().find(|n| n.name == *arg).ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
            format!(
                "no ordering is named `{arg}`; the named orderings are: {}",
                known.join(", ")
            )
        })?;
        selected.push(named);
    }
    Ok(selected)
}

fn binaries_of<'a>(tests: &'a [(String, String)], package: &str) -> Vec<&'a str> {
    tests
        .iter()
        .filter(|(p, _)| p == package)
        .map(|(_, test)| test.as_str())
        .collect()
}

/// Runs one loom test binary, with `weaken` (or nothing) weakened; an error if it could not
/// be built or run at all.
fn run_binary(
    root: &Path,
    target: &Path,
    package: &str,
    binary: &str,
    weaken: Option<&str>,
) -> Result<Run, String> {
    let mut command = cargo(root);
    command
        .args(["test", "--release", "--all-features", "-p", package])
        .args(["--test", binary])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", target);
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        command.env("LOOM_MAX_PREEMPTIONS", "3");
    }
    match weaken {
        Some(name) => command.env(WEAKEN_VAR, name),
        None => command.env_remove(WEAKEN_VAR),
    };
    let output = command
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stdout.contains("test result:") {
        // Nothing ran: a build error, not a caught mutant.
        return Err(format!(
            "{package} / {binary} did not run (weakened: {}):\n{stderr}{stdout}",
            weaken.unwrap_or("nothing")
        ));
    }
    let failed = parse_failures(&stdout);
    if failed.is_empty() != output.status.success() {
        return Err(format!(
            "{package} / {binary}: exit status {} disagrees with its test report:\n{stdout}",
            output.status
        ));
    }
    Ok(Run { failed })
}

/// `(test, reason)` for each `test NAME ... FAILED` line of libtest's report, the reason
/// being the line after the test's `panicked at` line in its captured output.
fn parse_failures(stdout: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut failed = Vec::new();
    for line in &lines {
        let Some(test) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        else {
            continue;
        };
        let panicked = format!("thread '{test}'");
        let reason = lines
            .iter()
            .position(|l| l.starts_with(&panicked) && l.contains("panicked at"))
            .and_then(|at| Some((lines[at], lines.get(at + 1)?)))
            .map_or_else(
                || "failed (no panic message)".to_owned(),
                |(header, message)| {
                    let place = header
                        .split_once("panicked at ")
                        .map_or("", |(_, place)| place.trim_end_matches(':'));
                    // Loom's own panics (causality violations) point into its sources.
                    let place = if place.contains("/registry/") {
                        "loom"
                    } else {
                        place
                    };
                    format!("{} ({place})", message.trim())
                },
            );
        failed.push((test.to_owned(), reason));
    }
    // libtest reports in completion order; sort for a stable table.
    failed.sort();
    failed
}

/// The markdown table of results.
fn table(outcomes: &[Outcome<'_>], total: Duration) -> String {
    let mut out = String::from(
        "| ordering | site | caught | model(s) that failed | first failure | time |\n\
         |---|---|---|---|---|---:|\n",
    );
    for outcome in outcomes {
        let named = outcome.named;
        let models: Vec<String> = outcome
            .caught_by
            .iter()
            .map(|(binary, test, _)| format!("{binary}::{test}"))
            .collect();
        let first = outcome
            .caught_by
            .first()
            .map_or("", |(_, _, reason)| reason.as_str());
        let _ = writeln!(
            out,
            "| `{}` ({}) | {} | {} | {} | {} | {:.1} s |",
            named.name,
            named.order,
            named.site,
            if models.is_empty() { "NO" } else { "yes" },
            if models.is_empty() {
                "none".to_owned()
            } else {
                models.join(", ")
            },
            first.replace('|', "\\|"),
            outcome.elapsed.as_secs_f64()
        );
    }
    let caught = outcomes.iter().filter(|o| !o.caught_by.is_empty()).count();
    let _ = writeln!(
        out,
        "\n{caught} of {} mutants caught; `cargo xtask loom --mutants` took {:.0} s.",
        outcomes.len(),
        total.as_secs_f64()
    );
    out
}

/// Every named ordering in `crates/*/src`, checked: names unique, no strong ordering left
/// unnamed.
fn scan(root: &Path) -> Result<Vec<Named>, String> {
    let mut named = Vec::new();
    let mut unnamed = Vec::new();
    for dir in crate_dirs(root)? {
        let package = package_name(&dir)?;
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files)?;
        files.sort();
        for file in files {
            let text = fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let relative = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            scan_source(&text, &relative, &package, &mut named, &mut unnamed)?;
        }
    }
    if !unnamed.is_empty() {
        return Err(format!(
            "orderings stronger than Relaxed must be named with heapkit_core::sync::ordering \
             (or sync::fence) so --mutants can weaken them; unnamed at: {}",
            unnamed.join(", ")
        ));
    }
    for (i, a) in named.iter().enumerate() {
        if let Some(b) = named[i + 1..].iter().find(|b| b.name == a.name) {
            return Err(format!(
                "ordering name `{}` is used twice: {} and {}",
                a.name, a.site, b.site
            ));
        }
    }
    if named.is_empty() {
        return Err("no named orderings found under crates/*/src".into());
    }
    Ok(named)
}

/// Every `.rs` file under `dir`, recursively, appended to `out`.
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Finds the helper calls and the unnamed strong orderings in one file. Comments are
/// skipped, and so is everything from a top-level `#[cfg(test)]` line on (unit tests sit
/// at the end of a file and may spell out orderings freely).
fn scan_source(
    text: &str,
    file: &str,
    package: &str,
    named: &mut Vec<Named>,
    unnamed: &mut Vec<String>,
) -> Result<(), String> {
    let code = blank_comments(text);
    let code = match code.find("\n#[cfg(test)]\n") {
        Some(at) => &code[..at],
        None => &code[..],
    };
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for helper in HELPERS {
        let pattern = format!("{helper}(");
        for (at, _) in code.match_indices(&pattern) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                || code[..at].trim_end().ends_with("fn")
            {
                continue; // another identifier, or the helper's own definition
            }
            let site = format!("{file}:{}", line_of(at));
            let args_at = at + pattern.len();
            let (name, order, end) = parse_call(&code[args_at..]).ok_or_else(|| {
                format!("{site}: `{helper}(` must be called as {helper}(\"name\", Ordering::X)")
            })?;
            calls.push((at, args_at + end));
            named.push(Named {
                name,
                package: package.to_owned(),
                site,
                order,
            });
        }
    }
    for strong in STRONG {
        let pattern = format!("Ordering::{strong}");
        for (at, _) in code.match_indices(&pattern) {
            let after = code[at + pattern.len()..].chars().next();
            if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if !calls.iter().any(|&(start, end)| start < at && at < end) {
                unnamed.push(format!("{file}:{}", line_of(at)));
            }
        }
    }
    Ok(())
}

/// Parses `"name", Ordering::X)` (whitespace and a trailing comma allowed): the name, the
/// ordering, and the offset just past the closing parenthesis.
fn parse_call(args: &str) -> Option<(String, String, usize)> {
    let rest = args.trim_start();
    let rest = rest.strip_prefix('"')?;
    let name_end = rest.find('"')?;
    let name = &rest[..name_end];
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('\\') {
        return None;
    }
    let rest = rest[name_end + 1..].trim_start().strip_prefix(',')?;
    let close = rest.find(')')?;
    let order = rest[..close].trim().trim_end_matches(',').trim();
    if order.is_empty() || order.contains('(') {
        return None;
    }
    let end = args.len() - rest.len() + close + 1;
    Some((name.to_owned(), order.to_owned(), end))
}

/// `text` with every comment replaced by spaces (newlines kept, so offsets and line numbers
/// stay put). Knows strings, raw strings, and char literals well enough not to mistake
/// `"//"` or `'"'` for anything else.
fn blank_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                let mut j = i;
                while j < bytes.len() {
                    if bytes[j..].starts_with(b"/*") {
                        depth += 1;
                        j += 2;
                    } else if bytes[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (i == 0 || !ident(bytes[i - 1]))
                && matches!(bytes.get(i + 1), Some(b'"' | b'#')) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                if bytes.get(i + 1 + hashes) == Some(&b'"') {
                    let close = format!("\"{}", "#".repeat(hashes));
                    let body = i + 2 + hashes;
                    i = text[body..]
                        .find(&close)
                        .map_or(bytes.len(), |n| body + n + close.len());
                } else {
                    i += 1;
                }
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '"'); otherwise a lifetime or label.
                if bytes.get(i + 1) == Some(&b'\\') {
                    i = text[i + 2..]
                        .find('\'')
                        .map_or(bytes.len(), |n| i + 2 + n + 1);
                } else if let Some(c) = text[i + 1..].chars().next() {
                    let after = i + 1 + c.len_utf8();
                    i = if bytes.get(after) == Some(&b'\'') {
                        after + 1
                    } else {
                        i + 1
                    };
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

#[cfg(test)]
mod tests {
    use super::{blank_comments, parse_call, parse_failures, scan_source, select, Named};

    fn scan(text: &str) -> Result<(Vec<Named>, Vec<String>), String> {
        let (mut named, mut unnamed) = (Vec::new(), Vec::new());
        scan_source(text, "f.rs", "p", &mut named, &mut unnamed)?;
        Ok((named, unnamed))
    }

    #[test]
    fn finds_named_orderings_across_lines() {
        let (named, unnamed) = scan(
            "let x = a.load(sync::ordering(\"a.b\", Ordering::Acquire));\n\
             a.cas(\n    1,\n    ordering(\n        \"c.d\",\n        Ordering::Release,\n    ),\n);\n\
             sync::fence(\"e.f\", Ordering::SeqCst);\n",
        )
        .unwrap();
        let found: Vec<(&str, &str, &str)> = named
            .iter()
            .map(|n| (n.name.as_str(), n.order.as_str(), n.site.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("a.b", "Ordering::Acquire", "f.rs:1"),
                ("c.d", "Ordering::Release", "f.rs:4"),
                ("e.f", "Ordering::SeqCst", "f.rs:9"),
            ]
        );
        assert!(unnamed.is_empty());
    }

    #[test]
    fn reports_unnamed_strong_orderings_but_not_relaxed_comments_or_tests() {
        let (named, unnamed) = scan(
            "a.load(Ordering::Relaxed);\n\
             a.store(1, Ordering::Release);\n\
             // a.load(Ordering::Acquire);\n\
             let s = \"// not a comment\"; a.swap(2, Ordering::AcqRel);\n\
             /* Ordering::SeqCst */ let c = '\"'; a.load(Ordering::SeqCst);\n\
             \n#[cfg(test)]\nmod tests { fn t() { a.load(Ordering::Acquire); } }\n",
        )
        .unwrap();
        assert!(named.is_empty());
        assert_eq!(unnamed, ["f.rs:2", "f.rs:4", "f.rs:5"]);
    }

    #[test]
    fn skips_the_helpers_definitions_and_other_identifiers() {
        let (named, unnamed) = scan(
            "pub const fn ordering(name: &'static str, order: Ordering) -> Ordering { order }\n\
             pub fn fence(name: &'static str, order: Ordering) { unnamed_fence(order) }\n\
             fn reordering(x: u8) {}\n",
        )
        .unwrap();
        assert!(named.is_empty() && unnamed.is_empty());
    }

    #[test]
    fn a_call_without_a_literal_name_is_an_error() {
        let err = scan("a.load(ordering(NAME, Ordering::Acquire));\n")
            .err()
            .unwrap();
        assert!(err.contains("f.rs:1"), "{err}");
    }

    #[test]
    fn parse_call_needs_a_name_and_an_ordering() {
        assert_eq!(
            parse_call(" \"x.y\", Ordering::Acquire)").map(|(n, o, _)| (n, o)),
            Some(("x.y".into(), "Ordering::Acquire".into()))
        );
        assert!(parse_call("\"\", Ordering::Acquire)").is_none());
        assert!(parse_call("\"x y\", Ordering::Acquire)").is_none());
        assert!(parse_call("\"x\")").is_none());
    }

    #[test]
    fn blanking_keeps_lines_and_strings() {
        let text = "a // b\n\"// c\" /* d\n e */ f";
        let blanked = blank_comments(text);
        assert_eq!(blanked.len(), text.len());
        assert_eq!(blanked.lines().count(), text.lines().count());
        assert!(blanked.contains("\"// c\""));
        assert!(!blanked.contains('b') && !blanked.contains('d') && !blanked.contains('e'));
    }

    #[test]
    fn failures_are_read_from_the_test_report() {
        let report = "running 2 tests\n\
            test b ... FAILED\n\
            test a ... ok\n\
            test c ... FAILED\n\n\
            ---- b stdout ----\n\n\
            thread 'b' (7) panicked at /root/.cargo/registry/src/x/loom-0.7.3/src/rt/location.rs:115:9:\n\
            Causality violation: Concurrent write accesses to `UnsafeCell`.\n\
            ---- c stdout ----\n\
            thread 'c' (8) panicked at crates/p/tests/loom_p.rs:80:5:\n\
            block handed out twice\n";
        assert_eq!(
            parse_failures(report),
            [
                (
                    "b".to_owned(),
                    "Causality violation: Concurrent write accesses to `UnsafeCell`. (loom)"
                        .to_owned()
                ),
                (
                    "c".to_owned(),
                    "block handed out twice (crates/p/tests/loom_p.rs:80:5)".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        let (named, _) = scan("x(ordering(\"a.b\", Ordering::Acquire));\n").unwrap();
        assert!(select(&named, &["a.b".into()]).is_ok());
        let err = select(&named, &["a.c".into()]).err().unwrap();
        assert!(err.contains("a.c") && err.contains("a.b"), "{err}");
        assert_eq!(select(&named, &[]).unwrap().len(), 1);
    }
}
