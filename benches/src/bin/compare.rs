//! Side-by-side comparison of GhostFlow, a tokio reference executor and other
//! DAG executors on the same workloads, in one process, interleaved.
//!
//! ```text
//! cargo run --release -p ghostflow-benches --bin compare -- [--quick] [--json FILE]
//! ```
//!
//! See `benches/README.md` for what each column means.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ghostflow_benches::contender::Contender;
use ghostflow_benches::harness::{self, Flavor, Memory, Summary};
use ghostflow_benches::shapes::{self, Shape};
use serde::Serialize;

/// Compares executors on the benchmark shapes.
#[derive(Debug, Parser)]
#[command(name = "compare")]
struct Args {
    /// Fewer samples: a quick look, not figures to publish.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Timed samples per cell (default 25, or 7 with --quick).
    #[arg(long)]
    samples: Option<usize>,
    /// Only these shapes (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Only these contenders, besides the reference (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only this runtime flavor (`multi_thread` or `current_thread`).
    #[arg(long)]
    flavor: Option<String>,
    /// Skip the peak-memory measurements.
    #[arg(long)]
    no_memory: bool,
    /// Internal: measure the memory of one cell in this (child) process.
    #[arg(long, num_args = 3, value_names = ["FLAVOR", "SHAPE", "CONTENDER"], hide = true)]
    memory_child: Vec<String>,
}

/// One cell of the table.
#[derive(Debug, Serialize)]
struct Cell {
    flavor: Flavor,
    shape: &'static str,
    nodes: usize,
    edges: usize,
    contender: &'static str,
    samples: usize,
    runs_per_sample: usize,
    build: Summary,
    /// The compile step of the build (GhostFlow: `FlowBuilder::build`);
    /// the whole build for contenders without one.
    compile: Summary,
    run: Summary,
    run_ns_per_node: f64,
    /// Run median over the reference's run median, same flavor and shape.
    ratio_to_reference: Option<f64>,
    /// Build median over the reference's build median.
    build_ratio_to_reference: Option<f64>,
    /// Compile median over the reference's build median.
    compile_ratio_to_reference: Option<f64>,
    memory: Option<Memory>,
    memory_bytes_per_node: Option<f64>,
}

/// A shape a contender cannot express.
#[derive(Debug, Serialize)]
struct Unsupported {
    shape: &'static str,
    contender: &'static str,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    cells: Vec<Cell>,
    unsupported: Vec<Unsupported>,
    targets: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    os: &'static str,
    arch: &'static str,
    quick: bool,
}

/// A target of the benchmark issue, checked on the multi-thread figures.
#[derive(Debug, Serialize)]
struct Verdict {
    target: String,
    measured: String,
    met: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.memory_child.is_empty() {
        return memory_child(&args.memory_child);
    }
    let contenders = selected_contenders(&args.only);
    let shapes: Vec<Shape> = shapes::all()
        .into_iter()
        .filter(|s| args.shapes.is_empty() || args.shapes.iter().any(|n| n == s.name))
        .collect();
    let flavors: Vec<Flavor> = match &args.flavor {
        Some(name) => match Flavor::parse(name) {
            Some(f) => vec![f],
            None => {
                eprintln!("error: unknown flavor `{name}` (multi_thread or current_thread)");
                return ExitCode::from(2);
            }
        },
        None => Flavor::ALL.to_vec(),
    };
    let samples = args
        .samples
        .unwrap_or(if args.quick { 7 } else { 25 })
        .max(1);
    let warmup = if args.quick { 1 } else { 3 };

    let mut cells = Vec::new();
    let mut unsupported = Vec::new();
    for &flavor in &flavors {
        let rt = flavor.runtime();
        for shape in &shapes {
            let shape = Arc::new(shape.clone());
            let expected = shape.reference();
            let batch = harness::batch_size(&shape);
            let mut running: Vec<&Arc<dyn Contender>> = Vec::new();
            for c in &contenders {
                match c.unsupported(&shape) {
                    Some(reason) => {
                        if flavor == flavors[0] {
                            unsupported.push(Unsupported {
                                shape: shape.name,
                                contender: c.name(),
                                reason,
                            });
                        }
                    }
                    None => running.push(c),
                }
            }
            eprint!("{:<15} {:<12}", flavor.name(), shape.name);
            let began = Instant::now();
            for c in &running {
                c.prepare(&shape);
                for _ in 0..warmup {
                    harness::sample(&rt, c, &shape, expected, batch);
                }
            }
            let mut builds: Vec<Vec<Duration>> = vec![Vec::new(); running.len()];
            let mut compiles: Vec<Vec<Duration>> = vec![Vec::new(); running.len()];
            let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); running.len()];
            for round in 0..samples {
                // Rotate the order, so no contender always runs right after another.
                for k in 0..running.len() {
                    let i = (round + k) % running.len();
                    let s = harness::sample(&rt, running[i], &shape, expected, batch);
                    builds[i].push(s.build);
                    compiles[i].push(s.compile);
                    runs[i].push(s.run);
                }
            }
            eprintln!(" {:>8.2?}", began.elapsed());
            for (i, c) in running.iter().enumerate() {
                let build = Summary::of(&mut builds[i]);
                let compile = Summary::of(&mut compiles[i]);
                let run = Summary::of(&mut runs[i]);
                cells.push(Cell {
                    flavor,
                    shape: shape.name,
                    nodes: shape.len(),
                    edges: shape.edges(),
                    contender: c.name(),
                    samples,
                    runs_per_sample: batch,
                    build,
                    compile,
                    run,
                    run_ns_per_node: run.median_ns as f64 / shape.len() as f64,
                    ratio_to_reference: None,
                    build_ratio_to_reference: None,
                    compile_ratio_to_reference: None,
                    memory: None,
                    memory_bytes_per_node: None,
                });
            }
        }
    }
    fill_ratios(&mut cells);
    if !args.no_memory {
        eprintln!("measuring peak memory, one child process per cell");
        for cell in &mut cells {
            cell.memory = memory_of(cell.flavor, cell.shape, cell.contender);
            cell.memory_bytes_per_node = cell
                .memory
                .map(|m| m.peak_above_kib as f64 * 1024.0 / cell.nodes as f64);
        }
    }
    let targets = verdicts(&cells, &unsupported);
    print_table(&cells, &unsupported, &targets);
    let report = Report {
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            quick: args.quick,
        },
        cells,
        unsupported,
        targets,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("the report is plain data");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn selected_contenders(only: &[String]) -> Vec<Arc<dyn Contender>> {
    ghostflow_benches::contenders()
        .into_iter()
        .enumerate()
        .filter(|(i, c)| *i == 0 || only.is_empty() || only.iter().any(|n| n == c.name()))
        .map(|(_, c)| c)
        .collect()
}

fn fill_ratios(cells: &mut [Cell]) {
    let reference: HashMap<(Flavor, &str), (u64, u64)> = cells
        .iter()
        .filter(|c| c.contender == "tokio-reference")
        .map(|c| ((c.flavor, c.shape), (c.run.median_ns, c.build.median_ns)))
        .collect();
    for cell in cells {
        if let Some(&(run, build)) = reference.get(&(cell.flavor, cell.shape)) {
            cell.ratio_to_reference = Some(cell.run.median_ns as f64 / run.max(1) as f64);
            cell.build_ratio_to_reference = Some(cell.build.median_ns as f64 / build.max(1) as f64);
            cell.compile_ratio_to_reference =
                Some(cell.compile.median_ns as f64 / build.max(1) as f64);
        }
    }
}

fn memory_of(flavor: Flavor, shape: &str, contender: &str) -> Option<Memory> {
    let exe = std::env::current_exe().ok()?;
    let output = Command::new(exe)
        .args(["--memory-child", flavor.name(), shape, contender])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "memory of {contender} on {shape} ({}): child failed: {}",
            flavor.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    serde_json::from_slice::<MemoryJson>(&output.stdout)
        .ok()
        .map(|m| Memory {
            baseline_kib: m.baseline_kib,
            peak_above_kib: m.peak_above_kib,
        })
}

#[derive(serde::Deserialize)]
struct MemoryJson {
    baseline_kib: u64,
    peak_above_kib: u64,
}

fn memory_child(args: &[String]) -> ExitCode {
    let (Some(flavor), Some(shape), Some(contender)) = (
        Flavor::parse(&args[0]),
        shapes::all().into_iter().find(|s| s.name == args[1]),
        ghostflow_benches::contenders()
            .into_iter()
            .find(|c| c.name() == args[2]),
    ) else {
        eprintln!("error: unknown flavor, shape or contender: {args:?}");
        return ExitCode::from(2);
    };
    match harness::measure_memory(flavor, &contender, shape) {
        Some(m) => {
            let text = serde_json::to_string(&m).expect("plain data");
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("error: /proc/self/status or /proc/self/clear_refs is not usable here");
            ExitCode::FAILURE
        }
    }
}

fn cell<'a>(cells: &'a [Cell], flavor: Flavor, shape: &str, who: &str) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.flavor == flavor && c.shape == shape && c.contender == who)
}

fn verdicts(cells: &[Cell], unsupported: &[Unsupported]) -> Vec<Verdict> {
    let mt = Flavor::MultiThread;
    let mut out = Vec::new();
    let mut ratio = |shape: &str, max: f64| {
        if let Some(c) = cell(cells, mt, shape, "ghostflow") {
            let r = c.ratio_to_reference.unwrap_or(f64::NAN);
            out.push(Verdict {
                target: format!("{shape}: run ≤ {max}× reference"),
                measured: format!("{r:.2}×"),
                met: r <= max,
            });
        }
    };
    for shape in ["fan_out", "fan_in_tree", "independent"] {
        ratio(shape, 1.5);
    }
    ratio("layered_random", 1.0);
    ratio("chain", 0.3);
    if let Some(c) = cell(cells, mt, "diamond", "ghostflow") {
        out.push(Verdict {
            target: "diamond: run ≤ 2 µs".into(),
            measured: format!("{:.2} µs", c.run.median_ns as f64 / 1000.0),
            met: c.run.median_ns <= 2_000,
        });
    }
    for c in cells
        .iter()
        .filter(|c| c.flavor == mt && c.contender == "ghostflow")
    {
        let r = c.compile_ratio_to_reference.unwrap_or(f64::NAN);
        let whole = c.build_ratio_to_reference.unwrap_or(f64::NAN);
        out.push(Verdict {
            target: format!(
                "{}: build (graph → compiled plan) ≤ 2× reference setup",
                c.shape
            ),
            measured: format!("{r:.2}× (with making the nodes and ids: {whole:.2}×)"),
            met: r <= 2.0,
        });
        if c.nodes >= 10_000
            && let Some(b) = c.memory_bytes_per_node
        {
            out.push(Verdict {
                target: format!("{}: peak memory ≤ 1 KiB per node", c.shape),
                measured: format!("{b:.0} B/node"),
                met: b <= 1024.0,
            });
        }
    }
    for peer in ["dagx", "dagrs"] {
        for c in cells
            .iter()
            .filter(|c| c.flavor == mt && c.contender == peer)
        {
            if let Some(ours) = cell(cells, mt, c.shape, "ghostflow") {
                let r = c.run.median_ns as f64 / ours.run.median_ns.max(1) as f64;
                out.push(Verdict {
                    target: format!("{}: faster than {peer}", c.shape),
                    measured: format!("{peer} takes {r:.2}× ghostflow's time"),
                    met: r > 1.0,
                });
            }
        }
        for u in unsupported.iter().filter(|u| u.contender == peer) {
            out.push(Verdict {
                target: format!("{}: faster than {peer}", u.shape),
                measured: format!("{peer} cannot express it: {}", u.reason),
                met: true,
            });
        }
    }
    out
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

fn print_table(cells: &[Cell], unsupported: &[Unsupported], targets: &[Verdict]) {
    let mut flavor = None;
    for c in cells {
        if flavor != Some(c.flavor) {
            flavor = Some(c.flavor);
            println!("\n## {}\n", c.flavor.name());
            println!(
                "| shape | nodes | executor | build (median) | build × ref | compile × ref | run (median) | run (p90) | ns/node | run × ref | peak RSS above harness | B/node |"
            );
            println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        }
        let opt = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.2}×"));
        let (mem, per_node) = match c.memory {
            Some(m) => (
                format!("{} KiB", m.peak_above_kib),
                format!("{:.0}", c.memory_bytes_per_node.unwrap_or(0.0)),
            ),
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            c.shape,
            c.nodes,
            c.contender,
            fmt_ns(c.build.median_ns),
            opt(c.build_ratio_to_reference),
            opt(c.compile_ratio_to_reference),
            fmt_ns(c.run.median_ns),
            fmt_ns(c.run.p90_ns),
            c.run_ns_per_node,
            opt(c.ratio_to_reference),
            mem,
            per_node
        );
    }
    if !unsupported.is_empty() {
        println!("\n## Not expressible\n");
        for u in unsupported {
            println!("- {} on {}: {}", u.contender, u.shape, u.reason);
        }
    }
    if !targets.is_empty() {
        println!("\n## Targets (multi_thread, ghostflow with default engine)\n");
        println!("| target | measured | met |");
        println!("|---|---|---|");
        for t in targets {
            println!(
                "| {} | {} | {} |",
                t.target,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            );
        }
    }
}
