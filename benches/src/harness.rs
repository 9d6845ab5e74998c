//! Measuring: interleaved samples of build and run time, and peak memory in
//! a child process per cell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::runtime::Runtime;

use crate::contender::{Built, Contender};
use crate::shapes::Shape;

/// A tokio runtime flavor under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// The multi-thread runtime with two workers.
    MultiThread,
    /// The current-thread runtime.
    CurrentThread,
}

impl Flavor {
    /// Both flavors, multi-thread first.
    pub const ALL: [Flavor; 2] = [Flavor::MultiThread, Flavor::CurrentThread];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MultiThread => "multi_thread",
            Flavor::CurrentThread => "current_thread",
        }
    }

    /// Parses [`Flavor::name`].
    pub fn parse(s: &str) -> Option<Flavor> {
        Flavor::ALL.into_iter().find(|f| f.name() == s)
    }

    /// A fresh runtime of this flavor.
    pub fn runtime(self) -> Runtime {
        let mut builder = match self {
            Flavor::MultiThread => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        };
        builder.enable_time().build().expect("a tokio runtime")
    }
}

/// How many runs one sample times together, so that a sample of a tiny
/// shape lasts long enough to be measured (about 20,000 nodes per sample).
pub fn batch_size(shape: &Shape) -> usize {
    (20_000 / shape.len().max(1)).clamp(1, 2_000)
}

/// One timed sample: the build and run time of one run, averaged over a batch.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Build time per run.
    pub build: Duration,
    /// The compile step of the build (see [`Built::compile_time`]); the whole
    /// build when the contender has no such step.
    pub compile: Duration,
    /// Run time per run.
    pub run: Duration,
}

/// Builds and runs `shape` `batch` times on one task of the runtime, timing
/// builds and runs apart. A contender whose built graph is reusable runs
/// its first graph every time (the later builds are only timed); the others
/// run each graph right after building it. Whatever a run leaves is dropped
/// between runs, outside the clock.
///
/// # Panics
/// When a run's result differs from the sequential reference: a contender
/// that skips work must not produce a figure.
pub fn sample(
    rt: &Runtime,
    contender: &Arc<dyn Contender>,
    shape: &Arc<Shape>,
    expected: u64,
    batch: usize,
) -> Sample {
    let contender = contender.clone();
    let shape = shape.clone();
    let totals = rt
        .block_on(rt.spawn(async move {
            let (mut build, mut compile, mut run) =
                (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            // Builds, timed; each graph is dropped outside the clock, but
            // the first is kept for contenders that can run a graph again.
            let mut kept: Option<Box<dyn Built>> = None;
            for _ in 0..batch {
                let began = Instant::now();
                let built = contender.build(&shape);
                let build_time = began.elapsed();
                build += build_time;
                compile += built.compile_time().unwrap_or(build_time);
                if kept.is_none() && built.rerun().is_some() {
                    kept = Some(built);
                }
            }
            // Runs, timed: of the kept graph again and again, or else each of
            // a graph built (untimed) right before it.
            for _ in 0..batch {
                let runnable = match &kept {
                    Some(graph) => graph.rerun().expect("a reusable graph stays reusable"),
                    None => contender.build(&shape),
                };
                let started = Instant::now();
                let ran = runnable.run().await;
                run += started.elapsed();
                assert_eq!(
                    ran.checksum,
                    expected,
                    "{} computed a wrong result on {}",
                    contender.name(),
                    shape.name
                );
                drop(ran);
            }
            [build, compile, run]
        }))
        .expect("a benchmark run panicked");
    let per_run = |d: Duration| d / batch as u32;
    Sample {
        build: per_run(totals[0]),
        compile: per_run(totals[1]),
        run: per_run(totals[2]),
    }
}

/// Median and 90th percentile of a set of durations.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    /// Median, in nanoseconds.
    pub median_ns: u64,
    /// 90th percentile, in nanoseconds.
    pub p90_ns: u64,
}

impl Summary {
    /// Summarizes `values` (not empty).
    pub fn of(values: &mut [Duration]) -> Summary {
        values.sort_unstable();
        let at = |q: f64| {
            let i = ((values.len() - 1) as f64 * q).round() as usize;
            values[i].as_nanos() as u64
        };
        Summary {
            median_ns: at(0.5),
            p90_ns: at(0.9),
        }
    }
}

/// Peak resident memory of building and running one shape, above the same
/// process before it built anything.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Resident set size before building, in KiB.
    pub baseline_kib: u64,
    /// Peak resident set size above the baseline, in KiB.
    pub peak_above_kib: u64,
}

/// Reads a `kB` field of `/proc/self/status`.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Builds and runs `shape` once in this process and reports the peak memory
/// above what the process used before. Meant for a fresh child process.
///
/// The high-water mark is reset (`/proc/self/clear_refs`) after the runtime
/// and the shape exist, so it measures the contender alone.
pub fn measure_memory(
    flavor: Flavor,
    contender: &Arc<dyn Contender>,
    shape: Shape,
) -> Option<Memory> {
    let rt = flavor.runtime();
    let shape = Arc::new(shape);
    let expected = shape.reference();
    contender.prepare(&shape);
    // Start the workers and touch their stacks, as a run would.
    rt.block_on(async {
        let tasks: Vec<_> = (0..4).map(|_| tokio::spawn(async {})).collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let baseline = proc_status_kib("VmRSS")?;
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let _ = sample(&rt, contender, &shape, expected, 1);
    let peak = proc_status_kib("VmHWM")?;
    Some(Memory {
        baseline_kib: baseline,
        peak_above_kib: peak.saturating_sub(baseline),
    })
}
