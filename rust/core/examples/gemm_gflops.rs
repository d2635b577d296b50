//! GFLOP/s of `gemm` and `gemm_packed` for tuning the GEMM kernels.
//!
//! cargo run --release -p transformer-rs-core --example gemm_gflops -- [THREADS] [ISA] [M K N]
//! Prints, per (M, K, N): median GFLOP/s over repeated runs after warm-up.
//! B_OFFSET=F (environment) starts B F floats past a 64-byte boundary
//! (default 0; NumPy's arrays are 16-byte aligned, so 4, 8 or 12 is theirs).
//! Column `packed_cold` is `gemm_packed` over a different packed copy of B on
//! each call, COLD_MIB (default 192) MiB of them in all, more than the L3
//! holds: B then streams from DRAM, as a model's weights do.

use std::time::Instant;

use transformer_rs_core::kernels::dispatch::{self, Isa};
use transformer_rs_core::kernels::gemm::{gemm_packed_with, gemm_with, MatRef, PackedB};
use transformer_rs_core::parallel;

const SHAPES: [(usize, usize, usize); 8] = [
    (1, 512, 512),
    (1, 512, 2048),
    (4, 512, 2048),
    (32, 512, 512),
    (32, 512, 2048),
    (128, 512, 2048),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
];

/// Nanoseconds this thread has run on a CPU (Linux), so a busy shared
/// machine does not count against single-thread numbers.
fn thread_cpu_ns() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|t| t.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// (median wall-clock GFLOP/s, calling-thread CPU-time GFLOP/s).
fn gflops(mut f: impl FnMut(), flops: f64) -> (f64, f64) {
    // Enough repetitions for ~0.3 s per shape, at least 10.
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.3 / once) as usize).clamp(10, 2000);
    let cpu0 = thread_cpu_ns();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = (thread_cpu_ns() - cpu0) / reps as f64;
    times.sort_by(f64::total_cmp);
    (flops / times[reps / 2] / 1e9, flops / cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let isa = args
        .get(2)
        .and_then(|s| Isa::from_name(s))
        .unwrap_or_else(dispatch::detected);
    parallel::set_num_threads(threads).expect("thread pool");
    println!("threads={threads} isa={}", isa.name());
    println!(
        "{:>6} {:>6} {:>6} {:>10} {:>12} {:>12} {:>12}   (cpu-time GFLOP/s of the pool thread)",
        "M", "K", "N", "gemm", "gemm_packed", "gemm_caller", "packed_cold"
    );
    // Optional M K N after THREADS ISA: measure that shape only.
    let dims: Vec<usize> = args.iter().skip(3).filter_map(|s| s.parse().ok()).collect();
    let shapes = match dims[..] {
        [m, k, n] => vec![(m, k, n)],
        _ => SHAPES.to_vec(),
    };
    let b_offset: usize = std::env::var("B_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cold_mib: usize = std::env::var("COLD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192);
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        let b_store: Vec<f32> = (0..k * n + 32)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0)
            .collect();
        let b = &b_store[b_start(&b_store, b_offset)..][..k * n];
        let mut c = vec![0.0f32; m * n];
        let (av, bv) = (MatRef::row_major(&a, m, k), MatRef::row_major(b, k, n));
        let packed = PackedB::pack(bv);
        let flops = 2.0 * (m * n * k) as f64;
        let (plain, plain_cpu) =
            parallel::install(|| gflops(|| gemm_with(isa, av, bv, 0.0, &mut c, n), flops));
        let (pre, pre_cpu) = parallel::install(|| {
            gflops(|| gemm_packed_with(isa, av, &packed, 0.0, &mut c, n), flops)
        });
        // As Python calls: from a thread outside the pool, which takes part.
        let (caller, _) = gflops(|| gemm_with(isa, av, bv, 0.0, &mut c, n), flops);
        let copies = (cold_mib << 20).div_ceil(4 * k * n).max(2);
        let cold_b: Vec<PackedB> = (0..copies).map(|_| PackedB::pack(bv)).collect();
        let mut next = 0;
        let (cold, _) = parallel::install(|| {
            gflops(
                || {
                    gemm_packed_with(isa, av, &cold_b[next], 0.0, &mut c, n);
                    next = (next + 1) % copies;
                },
                flops,
            )
        });
        println!(
            "{m:>6} {k:>6} {n:>6} {plain:>10.1} {pre:>12.1} {caller:>12.1} {cold:>12.1}   ({plain_cpu:.1}, {pre_cpu:.1})"
        );
    }
}

/// The index in `store` that lies `offset` (< 16) floats past a 64-byte
/// boundary.
fn b_start(store: &[f32], offset: usize) -> usize {
    let to_line = store.as_ptr().align_offset(64);
    (to_line + offset % 16) % 16
}
