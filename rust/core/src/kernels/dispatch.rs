//! Instruction-set selection, made once at run time and cached.
//!
//! Wheels are built for the baseline target, never tuned to the build host's CPU; the
//! fast paths live in `#[target_feature]` functions that are only reached after
//! [`Isa::is_available`] said yes on this CPU.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The instruction sets we have kernels for, best last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Neon,
    /// AVX2 + FMA (x86-64-v3 level arithmetic).
    Avx2,
    /// AVX-512F.
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether this CPU can run kernels of this ISA: detected once, then a
    /// bit test (every row-wise kernel call asserts it).
    #[inline]
    pub fn is_available(self) -> bool {
        static AVAILABLE: OnceLock<u8> = OnceLock::new();
        let mask = AVAILABLE.get_or_init(|| {
            Isa::ALL
                .iter()
                .filter(|isa| isa.detect())
                .fold(0, |mask, &isa| mask | isa.bit())
        });
        mask & self.bit() != 0
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn detect(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// Every ISA this host can run, scalar first. Tests run each kernel on each.
pub fn available() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|isa| isa.is_available())
        .collect()
}

/// The best ISA of this CPU, detected on first use.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| available().into_iter().max().unwrap_or(Isa::Scalar))
}

const NO_OVERRIDE: u8 = u8::MAX;
static OVERRIDE: AtomicU8 = AtomicU8::new(NO_OVERRIDE);

/// The ISA kernels use now: [`detected`], unless [`force`] chose another.
#[inline]
pub fn selected() -> Isa {
    match OVERRIDE.load(Ordering::Relaxed) {
        NO_OVERRIDE => detected(),
        i => Isa::ALL[i as usize],
    }
}

/// Makes every kernel use `isa` (or the detected one for `None`), so tests
/// can hold each implementation to the reference. Refuses an ISA this CPU
/// cannot run, which is what keeps the `#[target_feature]` calls sound.
pub fn force(isa: Option<Isa>) -> Result<(), String> {
    let code = match isa {
        None => NO_OVERRIDE,
        Some(isa) if isa.is_available() => Isa::ALL.iter().position(|&i| i == isa).unwrap() as u8,
        Some(isa) => return Err(format!("this CPU cannot run {} kernels", isa.name())),
    };
    OVERRIDE.store(code, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_always_available_and_detected_is_available() {
        assert!(available().contains(&Isa::Scalar));
        assert!(detected().is_available());
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
    }
}
