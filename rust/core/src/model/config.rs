//! `config.json` of an encoder-decoder checkpoint (CHECKPOINT.md).

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::nn::Activation;
use crate::{Error, Result};

/// The hyper-parameters of a [`super::Transformer`], keyed exactly as
/// `config.json` (other keys in the file are ignored). E = `d_model`,
/// H = `n_heads`, F = `d_ff`.
#[derive(Clone, Debug, PartialEq, Serialize)]
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

/// Largest positional table (max_len × d_model f32 values, 1 GiB).
pub const MAX_POSITION_ENTRIES: usize = 1 << 28;

/// Largest weight tensor a config may imply, in f32 values: its byte size
/// must fit `isize`, as every allocation's does.
pub const MAX_TENSOR_ENTRIES: usize = isize::MAX as usize / 4;

/// Largest `config.json` read. Real ones are a few hundred bytes (plus
/// whatever extra keys, such as a vocabulary, a project keeps there); the
/// bound keeps a hostile file from being read into memory whole.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

impl TransformerConfig {
    /// Reads ([`read_text`]) and validates the `config.json` file at
    /// `path`; errors are prefixed with the path.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_json(&read_text(path)?).map_err(|e| match e {
            Error::Checkpoint(m) => Error::checkpoint(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates `config.json` text; errors are checkpoint errors
    /// naming the key (missing, wrong type or invalid value). Other keys are
    /// ignored.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::checkpoint(format!("config: not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::checkpoint(
                "config: expected a JSON object of config keys",
            ));
        };
        let activation = match get(&map, "activation")?.as_str() {
            Some("relu") => Activation::Relu,
            Some("gelu") => Activation::Gelu,
            _ => {
                return Err(bad(
                    "activation",
                    "\"relu\" or \"gelu\"",
                    &map["activation"],
                ))
            }
        };
        let cfg = TransformerConfig {
            d_model: size(&map, "d_model")?,
            n_heads: size(&map, "n_heads")?,
            d_ff: size(&map, "d_ff")?,
            n_encoder_layers: size(&map, "n_encoder_layers")?,
            n_decoder_layers: size(&map, "n_decoder_layers")?,
            src_vocab_size: size(&map, "src_vocab_size")?,
            tgt_vocab_size: size(&map, "tgt_vocab_size")?,
            max_len: size(&map, "max_len")?,
            activation,
            norm_first: get(&map, "norm_first")?
                .as_bool()
                .ok_or_else(|| bad("norm_first", "true or false", &map["norm_first"]))?,
            layer_norm_eps: get(&map, "layer_norm_eps")?
                .as_f64()
                .ok_or_else(|| bad("layer_norm_eps", "a number", &map["layer_norm_eps"]))?,
            pad_id: id(&map, "pad_id")?,
            bos_id: id(&map, "bos_id")?,
            eos_id: id(&map, "eos_id")?,
        };
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
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(Error::checkpoint(format!(
                "config: `d_model` ({}) must be divisible by `n_heads` ({})",
                self.d_model, self.n_heads
            )));
        }
        // The positional table [max_len, E] is computed from the config
        // alone, so its size must be bounded before anything is allocated.
        if self
            .max_len
            .checked_mul(self.d_model)
            .is_none_or(|n| n > MAX_POSITION_ENTRIES)
        {
            return Err(Error::checkpoint(format!(
                "config: `max_len` × `d_model` ({} × {}) exceeds {MAX_POSITION_ENTRIES} positional-table entries",
                self.max_len, self.d_model
            )));
        }
        // Every weight is [rows, d_model]: bounding them here keeps all later
        // shape arithmetic (3·d_model, rows·d_model) free of overflow and
        // every implied allocation possible, whatever the file claims.
        let rows = [
            ("src_vocab_size", self.src_vocab_size),
            ("tgt_vocab_size", self.tgt_vocab_size),
            ("d_ff", self.d_ff),
        ];
        for (key, n) in rows {
            if n.checked_mul(self.d_model)
                .is_none_or(|n| n > MAX_TENSOR_ENTRIES)
            {
                return Err(Error::checkpoint(format!(
                    "config: `{key}` × `d_model` ({n} × {}) exceeds {MAX_TENSOR_ENTRIES} tensor entries",
                    self.d_model
                )));
            }
        }
        if self
            .d_model
            .checked_mul(self.d_model)
            .and_then(|n| n.checked_mul(3))
            .is_none_or(|n| n > MAX_TENSOR_ENTRIES)
        {
            return Err(Error::checkpoint(format!(
                "config: `d_model` ({}) makes in_proj_weight [3·d_model, d_model] exceed {MAX_TENSOR_ENTRIES} tensor entries",
                self.d_model
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
}

/// The text of the `config.json` file at `path` (any model's). A missing or
/// unreadable file is an I/O error; a file that is not a regular file (a
/// FIFO would block, `/dev/zero` never ends), is larger than
/// [`MAX_CONFIG_BYTES`] or is not UTF-8 is a checkpoint error prefixed with
/// the path.
pub fn read_text(path: &Path) -> Result<String> {
    let io_err = |e: std::io::Error| Error::io(path.display(), &e);
    let in_file = |m: String| Error::checkpoint(format!("{}: {m}", path.display()));
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(in_file("config: not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io_err)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(in_file(format!(
            "config: larger than {MAX_CONFIG_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|e| in_file(format!("config: not valid UTF-8 text: {e}")))
}

fn bad(key: &str, expected: &str, got: impl std::fmt::Display) -> Error {
    Error::checkpoint(format!("config: `{key}` must be {expected}, got {got}"))
}

fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a Value> {
    map.get(key)
        .ok_or_else(|| Error::checkpoint(format!("config: missing key `{key}`")))
}

/// A non-negative integer that fits `usize`.
fn size(map: &Map<String, Value>, key: &str) -> Result<usize> {
    let v = get(map, key)?;
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad(key, "a non-negative integer", v))
}

fn id(map: &Map<String, Value>, key: &str) -> Result<i64> {
    let v = get(map, key)?;
    v.as_i64().ok_or_else(|| bad(key, "an integer token id", v))
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
        rejects(|c| c.max_len = usize::MAX / 2, "max_len");
        rejects(|c| c.layer_norm_eps = 0.0, "layer_norm_eps");
        rejects(|c| c.layer_norm_eps = f64::NAN, "layer_norm_eps");
        rejects(|c| c.bos_id = 13, "bos_id");
        rejects(|c| c.eos_id = -1, "eos_id");
        rejects(|c| c.pad_id = 11, "pad_id");
    }

    #[test]
    fn sizes_whose_tensors_overflow_are_rejected() {
        rejects(|c| c.src_vocab_size = usize::MAX / 4, "src_vocab_size");
        rejects(|c| c.tgt_vocab_size = 1 << 62, "tgt_vocab_size");
        rejects(|c| c.d_ff = usize::MAX, "d_ff");
        rejects(
            |c| {
                (c.d_model, c.n_heads, c.max_len) = (1 << 31, 1, 1);
            },
            "d_model",
        );
    }

    #[test]
    fn read_rejects_what_is_not_a_small_regular_file() {
        let dir = std::env::temp_dir().join(format!("trs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, tiny().to_json()).unwrap();
        assert_eq!(TransformerConfig::read(&path).unwrap(), tiny());
        std::fs::write(&path, vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let err = TransformerConfig::read(&path).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        std::fs::write(&path, b"\xff{}").unwrap();
        let err = TransformerConfig::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("UTF-8") && err.contains("config.json"),
            "{err}"
        );
        for special in [Path::new("/dev/zero"), dir.as_path()] {
            let err = TransformerConfig::read(special).unwrap_err();
            assert!(
                matches!(err, Error::Checkpoint(ref m) if m.contains("not a regular file")),
                "{err:?}"
            );
        }
        let err = TransformerConfig::read(&dir.join("absent.json")).unwrap_err();
        assert!(matches!(
            err,
            Error::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
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
        let text = tiny()
            .to_json()
            .replace("\"d_model\": 8", "\"d_model\": -8");
        let err = TransformerConfig::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("d_model") && err.contains("-8"), "{err}");
        let text = tiny().to_json().replace("false", "0");
        let err = TransformerConfig::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("norm_first"), "{err}");
        let text = tiny().to_json().replace("\"bos_id\": 1", "\"bos_id\": 1.5");
        let err = TransformerConfig::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("bos_id"), "{err}");
        assert!(TransformerConfig::from_json("[1]").is_err());
        let extra = tiny().to_json().replacen('{', "{\"dropout\": 0.1,", 1);
        assert_eq!(TransformerConfig::from_json(&extra).unwrap(), tiny());
        assert!(TransformerConfig::from_json("{").is_err());
    }
}
