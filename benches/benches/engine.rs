//! Criterion benchmarks of the engine: plan compilation and runs of small and
//! large shapes. Run with `cargo bench -p ghostflow-benches`.

use criterion::{Criterion, criterion_group, criterion_main};
use ghostflow::{Engine, Inputs};
use ghostflow_benches::{build, chain, diamond, fan_out, reference};

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for (name, shape) in [("chain_1000", chain(1000)), ("fan_out_1000", fan_out(1000))] {
        group.bench_function(name, |b| b.iter(|| build(&shape)));
    }
    group.finish();
}

fn run(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let engine = Engine::new();
    let mut group = c.benchmark_group("run");
    for (name, shape) in [
        ("diamond", diamond()),
        ("chain_1000", chain(1000)),
        ("fan_out_1000", fan_out(1000)),
    ] {
        let flow = build(&shape);
        let expected = reference(&shape);
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = rt
                    .block_on(engine.run(&flow, Inputs::new()))
                    .expect("bench flows succeed");
                assert_eq!(outcome.output::<u64>("out").expect("output"), expected);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, compile, run);
criterion_main!(benches);
