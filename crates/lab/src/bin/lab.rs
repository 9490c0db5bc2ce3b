//! `cargo xtask lab`: every allocator on every workload; see `heapkit_lab`.

use std::path::PathBuf;
use std::process::ExitCode;

use heapkit_lab::{fragmentation, run, Config, Scale};

const USAGE: &str = "\
usage: lab [--full] [--only NAME]... [--trace FILE]... [--out DIR] [--update-readme]
       lab --study fragmentation [--only ALLOCATOR]... [--trace FILE]... [--out DIR] [--update-readme]

  --full           twice the events and twice the rounds, the scale study up to 10^7
                   live blocks (about eight minutes)
  --only NAME      keep only this workload or allocator (repeatable); `scale` is the
                   scale study (time per call against 10^3 to 10^6 live blocks, 10^7
                   with --full; the default run includes it up to 10^5)
  --trace FILE     replay this trace file instead of the built-in workloads (repeatable);
                   format: one event per line, `a ID SIZE ALIGN`, `r ID SIZE`, `f ID`
  --out DIR        where report.md and the plots go (default target/lab)
  --update-readme  copy the headline table and two plots into the workspace README
                   (with --study fragmentation: the study's tables into heapkit-fit's README)
  --study fragmentation
                   Johnstone and Wilson's fragmentation study instead of the lab: every
                   region allocator, and the classic policies with no per-block overhead
                   (`--only model`), on the recorded traces of real programs; writes
                   fragmentation.md and fragmentation.svg";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some((config, update_readme, true))) => match fragmentation::run(&config) {
            Ok(study) => {
                println!("{}", study.markdown());
                println!(
                    "wrote {}/fragmentation.md and .svg",
                    config.out_dir.display()
                );
                if update_readme {
                    if let Err(error) = readme::update_fit(&study, &config.out_dir) {
                        eprintln!("lab: {error}");
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("lab: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(Some((config, update_readme, false))) => match run(&config) {
            Ok(report) => {
                println!("{}", report.markdown());
                println!("wrote {}/report.md and its plots", config.out_dir.display());
                if update_readme {
                    if let Err(error) = readme::update(&report, &config.out_dir) {
                        eprintln!("lab: {error}");
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("lab: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("lab: {error}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The configuration, whether to update the README, and whether to run the fragmentation
/// study; `None` for `--help`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<(Config, bool, bool)>, String> {
    let mut config = Config {
        progress: true,
        ..Config::default()
    };
    let mut update_readme = false;
    let mut study = false;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--full" => config.scale = Scale::Full,
            "--only" => config.only.push(value("--only")?),
            "--trace" => config.traces.push(PathBuf::from(value("--trace")?)),
            "--out" => config.out_dir = PathBuf::from(value("--out")?),
            "--update-readme" => update_readme = true,
            "--study" => {
                let name = value("--study")?;
                if name != fragmentation::NAME {
                    return Err(format!("--study {name}: the one study is `fragmentation`"));
                }
                study = true;
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some((config, update_readme, study)))
}

mod readme {
    use std::fmt::Write as _;
    use std::path::Path;

    use heapkit_lab::fragmentation::Study;
    use heapkit_lab::Report;

    const START: &str = "<!-- lab:headline:start -->";
    const END: &str = "<!-- lab:headline:end -->";
    /// The plots the README embeds, copied next to it so they render on any host.
    const PLOTS: [&str; 2] = ["footprint-peak.svg", "latency-plateau.svg"];

    const STUDY_START: &str = "<!-- lab:fragmentation:start -->";
    const STUDY_END: &str = "<!-- lab:fragmentation:end -->";

    /// Replaces the study section of heapkit-fit's README with this run's tables, and
    /// copies its plot next to it.
    pub fn update_fit(study: &Study, out_dir: &Path) -> Result<(), String> {
        let root = root();
        let plot = "fragmentation.svg";
        let from = out_dir.join(plot);
        std::fs::copy(&from, root.join("crates/fit").join(plot))
            .map_err(|e| format!("{}: {e}", from.display()))?;
        // The study's own title gives way to the README's section heading.
        let tables = study.markdown();
        let tables = tables
            .split_once('\n')
            .map_or(tables.as_str(), |(_, rest)| rest);
        // Its sections sit under the README's own section.
        let tables = tables.replace("\n## ", "\n#### ");
        let section = format!(
            "{STUDY_START}\n_Generated by `cargo xtask lab --study fragmentation \
             --update-readme`._\n{tables}\n![{plot}]({plot})\n"
        );
        let path = root.join("crates/fit/README.md");
        replace_section(&path, STUDY_START, STUDY_END, &section)?;
        println!("updated {}", path.display());
        Ok(())
    }

    /// Replaces the text of `path` from the marker `start` up to the marker `end` (kept)
    /// with `section`, which begins with `start` again.
    fn replace_section(path: &Path, start: &str, end: &str, section: &str) -> Result<(), String> {
        let readme =
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(from), Some(to)) = (readme.find(start), readme.find(end)) else {
            return Err(format!("{} has no {start} … {end} section", path.display()));
        };
        let updated = format!("{}{section}{}", &readme[..from], &readme[to..]);
        std::fs::write(path, updated).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The workspace root.
    fn root() -> std::path::PathBuf {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        // crates/lab → the workspace root.
        manifest_dir
            .ancestors()
            .nth(2)
            .unwrap_or(manifest_dir)
            .to_path_buf()
    }

    /// Replaces the README's headline section with this run's, and copies its plots
    /// to `docs/lab/`.
    pub fn update(report: &Report, out_dir: &Path) -> Result<(), String> {
        let root = root();
        let docs = root.join("docs/lab");
        std::fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
        let mut section = format!(
            "{START}\n_Generated by `cargo xtask lab --update-readme` ({} rounds, {} MiB regions, \
             {:.0} s); geometric means over the workloads each allocator ran (the p99.9 \
             ratio over those whose best p99.9 reads above 0: the per-call counter reads in \
             steps). Full report: `target/lab/report.md`._\n\n{}\n",
            report.rounds,
            report.region_len >> 20,
            report.elapsed.as_secs_f64(),
            report.headline_markdown()
        );
        for plot in PLOTS {
            let from = out_dir.join(plot);
            if from.exists() {
                std::fs::copy(&from, docs.join(plot))
                    .map_err(|e| format!("{}: {e}", from.display()))?;
                let _ = writeln!(section, "![{plot}](docs/lab/{plot})");
            }
        }
        let path = root.join("README.md");
        replace_section(&path, START, END, &section)?;
        println!("updated {} and docs/lab/", path.display());
        Ok(())
    }
}
