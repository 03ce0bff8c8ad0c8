//! The M/M/c benchmark model of `../shared/peers/` run on pooltune's full
//! engine (pool state machine, HDR histograms for wait/query/response per
//! priority, time-weighted integrals, a time series sampled every second),
//! printing one JSON line shaped like the peers' output, so the three can
//! be compared side by side (see `bench/peers.sh`).
//!
//! cargo run --release --example mmc_bench -- --c 25 --a 20 --mean-service 0.010 --customers 5000000 --seed 1

use std::time::Instant;

use pooltune::core::metrics::NullSink;
use pooltune::sim::queueing::QueueingModel;
use pooltune::sim::RunOptions;
use pooltune::time::SimDuration;

fn erlang_c(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    c as f64 * b / (c as f64 - a * (1.0 - b))
}

fn parse<T: std::str::FromStr>(k: &str, v: &str) -> T {
    v.parse().unwrap_or_else(|_| {
        eprintln!("bad value for {k}: {v}");
        std::process::exit(2)
    })
}

fn main() {
    let mut c = 25u32;
    let mut a = 20.0f64;
    let mut mean_s = 0.010f64;
    let mut n = 5_000_000u64;
    let mut seed = 1u64;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            eprintln!(
                "usage: mmc_bench [--c N] [--a A] [--mean-service S] [--customers N] [--seed N]"
            );
            std::process::exit(2);
        };
        match k.as_str() {
            "--c" => c = parse(k, v),
            "--a" => a = parse(k, v),
            "--mean-service" => mean_s = parse(k, v),
            "--customers" => n = parse(k, v),
            "--seed" => seed = parse(k, v),
            _ => {
                eprintln!("unknown argument {k}");
                std::process::exit(2);
            }
        }
    }
    let model = QueueingModel::mmc(c, a / mean_s, mean_s, n);
    let opts = RunOptions {
        sample_interval: Some(SimDuration::from_secs(1)),
        ..RunOptions::default()
    };
    #[allow(clippy::disallowed_methods)] // wall-clock timing of the benchmark itself
    let t0 = Instant::now();
    let out = model
        .run(seed, &opts, &mut NullSink)
        .expect("benchmark run completes");
    let wall = t0.elapsed().as_secs_f64();
    let m = &out.pool.classes()[1];
    let wq = m.wait.mean_ns() / 1e9;
    let pw = m.found_busy as f64 / m.arrived as f64;
    let pw_an = erlang_c(c, a);
    let wq_an = pw_an / (c as f64 / mean_s - a / mean_s);
    println!(
        "{{\"engine\": \"pooltune (full engine)\", \"c\": {c}, \"a\": {a}, \"mean_service_s\": {mean_s}, \"customers\": {n}, \"seed\": {seed}, \
\"wall_s\": {wall:.4}, \"customers_per_s\": {:.1}, \"events\": {}, \"events_per_s\": {:.1}, \
\"wq_sim_s\": {wq:e}, \"wq_erlang_s\": {wq_an:e}, \"pwait_sim\": {pw}, \"pwait_erlang\": {pw_an}}}",
        n as f64 / wall,
        out.events,
        out.events as f64 / wall
    );
}
