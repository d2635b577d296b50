//! How close the GEMM comes to the core's FMA limit: the register-only
//! fused multiply-add rate of one core (no memory operands, in assembly),
//! next to `gemm_packed` on a square product and on the encoder's shapes.
//!
//! cargo run --release -p transformer-rs-core --example fma_peak
//!
//! Rates are per second of this thread's CPU time, so another process on
//! the machine does not lower them (it can still lower the clock).

use transformer_rs_core::kernels::dispatch::{self, Isa};
use transformer_rs_core::kernels::gemm::{gemm_packed_with, MatRef, PackedB};
use transformer_rs_core::parallel;

/// Nanoseconds this thread has run on a CPU (Linux; updated at scheduler
/// ticks, so only long intervals are precise).
fn thread_cpu_ns() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|t| t.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Best GFLOP/s of `f` (doing `flops` each call) over 5 rounds of `reps`.
fn rate(reps: usize, flops: f64, mut f: impl FnMut()) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let start = thread_cpu_ns();
            for _ in 0..reps {
                f();
            }
            flops * reps as f64 / (thread_cpu_ns() - start)
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;

    /// `steps` rounds of 24 independent zmm FMAs on registers only (written
    /// in assembly: the compiler is free to merge or spill such a loop).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `steps` ≥ 1.
    #[target_feature(enable = "avx512f")]
    unsafe fn fma_avx512(steps: usize) {
        // SAFETY: register-only arithmetic on the registers declared
        // clobbered; the ISA is the caller's promise.
        unsafe {
            asm!(
            "vxorps xmm30, xmm30, xmm30",
            "vxorps xmm31, xmm31, xmm31",
            "2:",
            "vfmadd231ps zmm0, zmm30, zmm31",
            "vfmadd231ps zmm1, zmm30, zmm31",
            "vfmadd231ps zmm2, zmm30, zmm31",
            "vfmadd231ps zmm3, zmm30, zmm31",
            "vfmadd231ps zmm4, zmm30, zmm31",
            "vfmadd231ps zmm5, zmm30, zmm31",
            "vfmadd231ps zmm6, zmm30, zmm31",
            "vfmadd231ps zmm7, zmm30, zmm31",
            "vfmadd231ps zmm8, zmm30, zmm31",
            "vfmadd231ps zmm9, zmm30, zmm31",
            "vfmadd231ps zmm10, zmm30, zmm31",
            "vfmadd231ps zmm11, zmm30, zmm31",
            "vfmadd231ps zmm12, zmm30, zmm31",
            "vfmadd231ps zmm13, zmm30, zmm31",
            "vfmadd231ps zmm14, zmm30, zmm31",
            "vfmadd231ps zmm15, zmm30, zmm31",
            "vfmadd231ps zmm16, zmm30, zmm31",
            "vfmadd231ps zmm17, zmm30, zmm31",
            "vfmadd231ps zmm18, zmm30, zmm31",
            "vfmadd231ps zmm19, zmm30, zmm31",
            "vfmadd231ps zmm20, zmm30, zmm31",
            "vfmadd231ps zmm21, zmm30, zmm31",
            "vfmadd231ps zmm22, zmm30, zmm31",
            "vfmadd231ps zmm23, zmm30, zmm31",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) steps => _,
            out("zmm0") _,
            out("zmm1") _,
            out("zmm2") _,
            out("zmm3") _,
            out("zmm4") _,
            out("zmm5") _,
            out("zmm6") _,
            out("zmm7") _,
            out("zmm8") _,
            out("zmm9") _,
            out("zmm10") _,
            out("zmm11") _,
            out("zmm12") _,
            out("zmm13") _,
            out("zmm14") _,
            out("zmm15") _,
            out("zmm16") _,
            out("zmm17") _,
            out("zmm18") _,
            out("zmm19") _,
            out("zmm20") _,
            out("zmm21") _,
            out("zmm22") _,
            out("zmm23") _,
            out("zmm30") _,
            out("zmm31") _,
            options(nostack, nomem),
            )
        }
    }

    /// `steps` rounds of 12 independent ymm FMAs on registers only.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `steps` ≥ 1.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_avx2(steps: usize) {
        // SAFETY: as in `fma_avx512`.
        unsafe {
            asm!(
            "vxorps ymm14, ymm14, ymm14",
            "vxorps ymm15, ymm15, ymm15",
            "2:",
            "vfmadd231ps ymm0, ymm14, ymm15",
            "vfmadd231ps ymm1, ymm14, ymm15",
            "vfmadd231ps ymm2, ymm14, ymm15",
            "vfmadd231ps ymm3, ymm14, ymm15",
            "vfmadd231ps ymm4, ymm14, ymm15",
            "vfmadd231ps ymm5, ymm14, ymm15",
            "vfmadd231ps ymm6, ymm14, ymm15",
            "vfmadd231ps ymm7, ymm14, ymm15",
            "vfmadd231ps ymm8, ymm14, ymm15",
            "vfmadd231ps ymm9, ymm14, ymm15",
            "vfmadd231ps ymm10, ymm14, ymm15",
            "vfmadd231ps ymm11, ymm14, ymm15",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) steps => _,
            out("ymm0") _,
            out("ymm1") _,
            out("ymm2") _,
            out("ymm3") _,
            out("ymm4") _,
            out("ymm5") _,
            out("ymm6") _,
            out("ymm7") _,
            out("ymm8") _,
            out("ymm9") _,
            out("ymm10") _,
            out("ymm11") _,
            out("ymm14") _,
            out("ymm15") _,
            options(nostack, nomem),
            )
        }
    }

    /// Register-only FMA GFLOP/s of `isa`'s widest vectors (x86 ISAs).
    pub fn peak(isa: super::Isa) -> Option<f64> {
        // ~0.3 s a call: the CPU-time clock ticks in milliseconds.
        const STEPS: usize = 1 << 25;
        match isa {
            super::Isa::Avx512 => Some(super::rate(1, (2 * 16 * 24 * STEPS) as f64, || {
                // SAFETY: `available()` lists only ISAs this CPU runs.
                unsafe { fma_avx512(STEPS) }
            })),
            super::Isa::Avx2 => Some(super::rate(1, (2 * 8 * 12 * STEPS) as f64, || {
                // SAFETY: as above.
                unsafe { fma_avx2(STEPS) }
            })),
            _ => None,
        }
    }
}

/// `gemm_packed` GFLOP/s for A [M×K] · B [K×N] on `isa`, one thread.
fn packed_rate(isa: Isa, m: usize, k: usize, n: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let packed = PackedB::pack(MatRef::row_major(&b, k, n));
    let mut c = vec![0.0f32; m * n];
    let flops = 2.0 * (m * k * n) as f64;
    // ~0.2 s a round: the CPU-time clock ticks in milliseconds.
    let reps = (2.5e10 / flops).clamp(1.0, 1e8) as usize;
    rate(reps, flops, || {
        gemm_packed_with(isa, MatRef::row_major(&a, m, k), &packed, 0.0, &mut c, n)
    })
}

/// Products of the encoder's shapes (M = B·S tokens) and a square one.
const SHAPES: [(usize, usize, usize); 3] =
    [(1024, 1024, 1024), (128, 512, 2048), (1024, 2048, 512)];

fn main() {
    parallel::set_num_threads(1).expect("thread pool");
    println!("one thread; GFLOP/s per second of thread CPU time; gemm_packed (B packed once)");
    for isa in dispatch::available() {
        #[cfg(target_arch = "x86_64")]
        let peak = x86::peak(isa);
        #[cfg(not(target_arch = "x86_64"))]
        let peak: Option<f64> = None;
        let mut line = format!(
            "{:>7}: FMA peak {}",
            isa.name(),
            peak.map_or("-".into(), |p| format!("{p:.1}"))
        );
        for (m, k, n) in SHAPES {
            let r = packed_rate(isa, m, k, n);
            let share = peak.map_or(String::new(), |p| format!(" ({:.0}%)", 100.0 * r / p));
            line += &format!("; {m}×{k}×{n} {r:.1}{share}");
        }
        println!("{line}");
    }
}
