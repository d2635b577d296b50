//! `config.json` of an encoder-decoder checkpoint (CHECKPOINT.md).

use serde::{Deserialize, Serialize};

use crate::nn::Activation;
use crate::{Error, Result};

/// The hyper-parameters of a [`super::Transformer`], keyed exactly as
/// `config.json` (other keys in the file are ignored). E = `d_model`,
/// H = `n_heads`, F = `d_ff`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub n_encoder_layers: usize,
    pub n_decoder_layers: usize,
    pub src_vocab_size: usize,
    pub tgt_vocab_size: usize,
    /// Longest sequence (source, or target prefix) the positional table covers.
    pub max_len: usize,
    pub activation: Activation,
    /// `false`: post-LN (x = LN(x + f(x))); `true`: pre-LN (x = x + f(LN(x))).
    pub norm_first: bool,
    pub layer_norm_eps: f64,
    pub pad_id: i64,
    pub bos_id: i64,
    pub eos_id: i64,
}

impl TransformerConfig {
    /// Parses and validates `config.json` text; errors are checkpoint errors.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| Error::checkpoint(format!("config.json: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Pretty JSON with the config.json keys.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, bools and a unit enum cannot fail.
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Checks the invariants the model relies on; the error names the key,
    /// what was expected and what was found.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("n_decoder_layers", self.n_decoder_layers),
            ("src_vocab_size", self.src_vocab_size),
            ("tgt_vocab_size", self.tgt_vocab_size),
            ("max_len", self.max_len),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(bad(key, "a positive integer", value));
            }
        }
        if self.d_model % self.n_heads != 0 {
            return Err(Error::checkpoint(format!(
                "config.json: `d_model` ({}) must be divisible by `n_heads` ({})",
                self.d_model, self.n_heads
            )));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(bad(
                "layer_norm_eps",
                "a positive finite number",
                self.layer_norm_eps,
            ));
        }
        for (key, id) in [
            ("pad_id", self.pad_id),
            ("bos_id", self.bos_id),
            ("eos_id", self.eos_id),
        ] {
            for (vocab_key, vocab) in [
                ("src_vocab_size", self.src_vocab_size),
                ("tgt_vocab_size", self.tgt_vocab_size),
            ] {
                // pad_id pads sources and targets; bos/eos are target ids only.
                if key != "pad_id" && vocab_key == "src_vocab_size" {
                    continue;
                }
                if id < 0 || id as u64 >= vocab as u64 {
                    return Err(bad(
                        key,
                        &format!("an id in [0, {vocab}) ({vocab_key})"),
                        id,
                    ));
                }
            }
        }
        Ok(())
    }

    /// D = E / H.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }
}

fn bad(key: &str, expected: &str, got: impl std::fmt::Display) -> Error {
    Error::checkpoint(format!(
        "config.json: `{key}` must be {expected}, got {got}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> TransformerConfig {
        TransformerConfig {
            d_model: 8,
            n_heads: 2,
            d_ff: 12,
            n_encoder_layers: 1,
            n_decoder_layers: 2,
            src_vocab_size: 11,
            tgt_vocab_size: 13,
            max_len: 16,
            activation: Activation::Relu,
            norm_first: false,
            layer_norm_eps: 1e-5,
            pad_id: 0,
            bos_id: 1,
            eos_id: 2,
        }
    }

    fn rejects(edit: impl FnOnce(&mut TransformerConfig), key: &str) {
        let mut cfg = tiny();
        edit(&mut cfg);
        match cfg.validate() {
            Err(Error::Checkpoint(m)) => assert!(m.contains(key), "{m} should name {key}"),
            other => panic!("expected a checkpoint error naming {key}, got {other:?}"),
        }
    }

    #[test]
    fn json_round_trip() {
        let cfg = tiny();
        assert_eq!(TransformerConfig::from_json(&cfg.to_json()).unwrap(), cfg);
        assert!(cfg.to_json().contains("\"activation\": \"relu\""));
    }

    #[test]
    fn zero_encoder_layers_is_allowed() {
        let mut cfg = tiny();
        cfg.n_encoder_layers = 0;
        cfg.validate().unwrap();
    }

    #[test]
    fn invalid_values_name_the_key() {
        rejects(|c| c.n_heads = 3, "n_heads");
        rejects(|c| c.n_heads = 0, "n_heads");
        rejects(|c| c.d_model = 0, "d_model");
        rejects(|c| c.d_ff = 0, "d_ff");
        rejects(|c| c.n_decoder_layers = 0, "n_decoder_layers");
        rejects(|c| c.src_vocab_size = 0, "src_vocab_size");
        rejects(|c| c.max_len = 0, "max_len");
        rejects(|c| c.layer_norm_eps = 0.0, "layer_norm_eps");
        rejects(|c| c.layer_norm_eps = f64::NAN, "layer_norm_eps");
        rejects(|c| c.bos_id = 13, "bos_id");
        rejects(|c| c.eos_id = -1, "eos_id");
        rejects(|c| c.pad_id = 11, "pad_id");
    }

    #[test]
    fn bad_json_is_a_checkpoint_error() {
        let text = tiny().to_json().replace("\"relu\"", "\"swish\"");
        assert!(
            matches!(TransformerConfig::from_json(&text), Err(Error::Checkpoint(m)) if m.contains("swish"))
        );
        let text = tiny().to_json().replace("\"d_ff\"", "\"dff\"");
        assert!(
            matches!(TransformerConfig::from_json(&text), Err(Error::Checkpoint(m)) if m.contains("d_ff"))
        );
        assert!(TransformerConfig::from_json("{").is_err());
    }
}
