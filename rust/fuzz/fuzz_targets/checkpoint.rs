//! Fuzzes `Transformer::load` on a checkpoint folder built from the input:
//! `[n: u16 LE][config.json: n bytes][model.safetensors: the rest]`. Loading
//! must return Ok or an error, never panic, abort or hang; a model that
//! loads (possibly with NaN or huge weights) must then encode, decode and
//! generate without panicking.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use transformer_rs_core::decoding::SearchOptions;
use transformer_rs_core::model::{TokenBatch, Transformer};

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Some((config, weights)) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))
    else {
        return;
    };
    let dir = scratch_dir();
    std::fs::write(dir.join("config.json"), config).expect("scratch file");
    std::fs::write(dir.join("model.safetensors"), weights).expect("scratch file");
    if let Ok(model) = Transformer::load(dir) {
        exercise(&model);
    }
});

/// One folder per fuzzing process, in memory when /dev/shm exists.
fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::path::Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("trs-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Runs every entry point on small valid arguments; only errors may come out.
fn exercise(model: &Transformer) {
    let cfg = model.config();
    let len = cfg.max_len.min(3);
    let src: Vec<i64> = (0..2 * len)
        .map(|i| (i as u64 % cfg.src_vocab_size as u64) as i64)
        .collect();
    let tgt: Vec<i64> = (0..2 * len)
        .map(|i| ((i as u64 * 7 + 1) % cfg.tgt_vocab_size as u64) as i64)
        .collect();
    let (src, tgt) = (TokenBatch::new(&src, 2, len), TokenBatch::new(&tgt, 2, len));
    let _ = model.forward(src, tgt);
    for beam_size in [1, 3] {
        let opts = SearchOptions {
            max_new_tokens: len,
            beam_size,
            length_penalty: 1.0,
            num_hypotheses: beam_size.min(2),
            bos_id: cfg.bos_id,
            eos_id: cfg.eos_id,
            return_scores: true,
        };
        let _ = model.generate(src, &opts);
    }
}
