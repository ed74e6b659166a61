//! `mg-train bench --scaling`: a training window's time and peak memory against memory size,
//! for a family of multigrid models and of DNCs on the same small world.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::Mapping;
use crate::harness::bench::BenchRecord;
use crate::harness::{ExperimentOf, Task};
use crate::plot::plot_log_log;

/// One member of the family.
pub struct Member {
    /// Name in the records.
    pub name: String,
    /// The experiment (a 7×7 spiral world, 3×3 observations and queries).
    pub config: ExperimentOf<Mapping>,
}

/// The family: multigrid writers of 16 channels whose layers' levels go 2,2,3,3,…,L−1,L−1,L
/// (memory ×4 per level), and DNCs (C = 64, W = 16, R = 4) of 128 to `max_slots` slots.
pub fn family(max_level: usize, max_slots: usize) -> anyhow::Result<Vec<Member>> {
    let world = |mask: usize| {
        format!(
            "[task]\nkind = \"mapping\"\nmap_size = 7\nmask_size = {mask}\nmask_origin = {}\n\
             location = \"normalized\"\nquery_per = \"sample\"\n",
            mask / 2
        )
    };
    let mut members = Vec::new();
    for top in 3..=max_level {
        let mut levels: Vec<usize> = (2..top).flat_map(|l| [l, l]).collect();
        levels.push(top);
        let text = format!(
            "{}[model]\nlevels = {levels:?}\nchannels = {:?}\ntail_channels = 16\n",
            world(3 << (top - 1)),
            vec![16; levels.len()]
        );
        members.push(Member {
            name: format!("multigrid-L{top}"),
            config: ExperimentOf::<Mapping>::parse(&text)?,
        });
    }
    let mut slots = 128;
    while slots <= max_slots {
        let text = format!(
            "{}[model]\nkind = \"dnc\"\ncontroller = 64\nmemory_slots = {slots}\nword_size = 16\n",
            world(48)
        );
        members.push(Member {
            name: format!("dnc-N{slots}"),
            config: ExperimentOf::<Mapping>::parse(&text)?,
        });
        slots *= 2;
    }
    for m in &members {
        Mapping::new(&m.config)?;
    }
    Ok(members)
}

/// Settings of a scaling run.
pub struct Scaling<'a> {
    /// The `--device` name to pass to each member's process.
    pub device: &'a str,
    /// Largest multigrid finest level.
    pub max_level: usize,
    /// Largest DNC memory.
    pub max_slots: usize,
    /// Training-window steps and batch.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Timed repetitions.
    pub repeats: usize,
    /// Where `scaling.jsonl` and the plots go.
    pub out: &'a Path,
    /// Print JSON lines only.
    pub json: bool,
}

/// Times every member of the family, smallest first, each in its own process (`bench
/// --scaling --member i`) so that each peak-memory reading is its own, writing each record
/// as it comes; then draws the log-log plots.
pub fn run(
    s: &Scaling,
    print: impl Fn(&[BenchRecord]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let members = family(s.max_level, s.max_slots)?;
    fs::create_dir_all(s.out).with_context(|| format!("creating {}", s.out.display()))?;
    let jsonl = s.out.join("scaling.jsonl");
    let mut file = File::create(&jsonl).with_context(|| format!("creating {}", jsonl.display()))?;
    let exe = std::env::current_exe().context("finding the mg-train executable")?;
    let mut all: Vec<BenchRecord> = Vec::new();
    for (i, member) in members.iter().enumerate() {
        if !s.json {
            eprintln!(
                "[{}/{}] {} ({} memory cells)",
                i + 1,
                members.len(),
                member.name,
                Mapping::new(&member.config)?.info().memory_cells
            );
        }
        let output = Command::new(&exe)
            .args(["bench", "--scaling", "--json", "--device", s.device])
            .args(["--member", &i.to_string()])
            .args(["--max-level", &s.max_level.to_string()])
            .args(["--max-slots", &s.max_slots.to_string()])
            .args([
                "--steps",
                &s.steps.to_string(),
                "--batch",
                &s.batch.to_string(),
            ])
            .args(["--repeats", &s.repeats.to_string()])
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "timing {} failed:\n{}",
            member.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut records = Vec::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            writeln!(file, "{line}")?;
            records.push(
                serde_json::from_str::<BenchRecord>(line)
                    .with_context(|| format!("reading the record of {}", member.name))?,
            );
        }
        file.flush()?;
        print(&records)?;
        all.extend(records);
    }
    let series = |prefix: &str, value: fn(&BenchRecord) -> Option<f64>| {
        all.iter()
            .filter(|r| r.model.starts_with(prefix))
            .filter_map(|r| Some((r.memory as f64, value(r)?)))
            .collect::<Vec<_>>()
    };
    let time = s.out.join("scaling.png");
    plot_log_log(
        &[
            ("Multigrid", series("multigrid", |r| Some(r.median_ms))),
            ("DNC", series("dnc", |r| Some(r.median_ms))),
        ],
        ["Memory cells", "Training window (ms)"],
        &time,
    )?;
    let memory = s.out.join("scaling-memory.png");
    let peaks = [
        ("Multigrid", series("multigrid", |r| r.peak_mib)),
        ("DNC", series("dnc", |r| r.peak_mib)),
    ];
    if peaks.iter().any(|(_, p)| !p.is_empty()) {
        plot_log_log(
            &peaks,
            ["Memory cells", "Peak memory growth (MiB)"],
            &memory,
        )?;
    }
    if !s.json {
        eprintln!(
            "wrote {}, {} and {} (each with an SVG beside it)",
            jsonl.display(),
            time.display(),
            memory.display()
        );
    }
    Ok(())
}
