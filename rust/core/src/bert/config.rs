//! `config.json` of a Hugging Face BERT model (`transformers.BertConfig`).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::nn::Activation;
use crate::{Error, Result};

/// The hyper-parameters a [`super::BertModel`] needs, keyed as in
/// `config.json` (other keys are ignored). E = `hidden_size`,
/// H = `num_attention_heads`, F = `intermediate_size`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// `"gelu"` (exact erf form, as BERT's) or `"relu"`.
    pub hidden_act: Activation,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    /// Parses and validates `config.json` text. The file must describe a
    /// BERT model (`model_type` `"bert"`, or, in old files without it, a
    /// `Bert*` architecture) with absolute position embeddings and a
    /// supported `hidden_act`. Keys absent from the file take
    /// `transformers.BertConfig`'s defaults, except the five sizes, which are
    /// required. Errors are checkpoint errors naming the key.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::checkpoint(format!("config: not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::checkpoint(
                "config: expected a JSON object of config keys",
            ));
        };
        check_is_bert(&map)?;
        if let Some(kind) = map.get("position_embedding_type") {
            if kind.as_str() != Some("absolute") {
                return Err(bad(
                    "position_embedding_type",
                    "\"absolute\" (relative position embeddings are not supported)",
                    kind,
                ));
            }
        }
        let hidden_act = match map.get("hidden_act") {
            None => Activation::Gelu,
            Some(v) => match v.as_str() {
                Some("gelu") => Activation::Gelu,
                Some("relu") => Activation::Relu,
                _ => return Err(bad(
                    "hidden_act",
                    "\"gelu\" (exact erf form) or \"relu\"; other activations are not supported",
                    v,
                )),
            },
        };
        let layer_norm_eps = match map.get("layer_norm_eps") {
            None => 1e-12,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad("layer_norm_eps", "a number", v))?,
        };
        let cfg = BertConfig {
            vocab_size: size(&map, "vocab_size", None)?,
            hidden_size: size(&map, "hidden_size", None)?,
            num_hidden_layers: size(&map, "num_hidden_layers", None)?,
            num_attention_heads: size(&map, "num_attention_heads", None)?,
            intermediate_size: size(&map, "intermediate_size", None)?,
            hidden_act,
            max_position_embeddings: size(&map, "max_position_embeddings", Some(512))?,
            type_vocab_size: size(&map, "type_vocab_size", Some(2))?,
            layer_norm_eps,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Pretty JSON with the config.json keys.
    pub fn to_json(&self) -> String {
        // Plain numbers and a unit enum always serialise.
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Checks the invariants the model relies on; the error names the key.
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(bad(key, "a positive integer", value));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(bad(
                "num_attention_heads",
                &format!("a divisor of hidden_size ({})", self.hidden_size),
                self.num_attention_heads,
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(bad(
                "layer_norm_eps",
                "a positive finite number",
                self.layer_norm_eps,
            ));
        }
        Ok(())
    }
}

/// A BERT config says `"model_type": "bert"`; files written before
/// `model_type` existed name a `Bert*` class in `architectures` instead.
fn check_is_bert(map: &Map<String, Value>) -> Result<()> {
    match map.get("model_type") {
        Some(Value::String(t)) if t == "bert" => Ok(()),
        Some(other) => Err(Error::checkpoint(format!(
            "config: not a BERT model: `model_type` is {other}, expected \"bert\""
        ))),
        None => {
            let names_bert = map
                .get("architectures")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|n| n.as_str().is_some_and(|n| n.starts_with("Bert")))
                });
            if names_bert {
                Ok(())
            } else {
                Err(Error::checkpoint(
                    "config: not a BERT model: no `model_type` \"bert\" (nor a Bert* entry in `architectures`)",
                ))
            }
        }
    }
}

fn bad(key: &str, expected: &str, got: impl std::fmt::Display) -> Error {
    Error::checkpoint(format!("config: `{key}` must be {expected}, got {got}"))
}

/// A non-negative integer that fits `usize`; `default` when absent (or an
/// error naming the key if there is none).
fn size(map: &Map<String, Value>, key: &str, default: Option<usize>) -> Result<usize> {
    match (map.get(key), default) {
        (None, Some(d)) => Ok(d),
        (None, None) => Err(Error::checkpoint(format!("config: missing key `{key}`"))),
        (Some(v), _) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(key, "a non-negative integer", v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// all-MiniLM-L6-v2's config.json, abridged.
    const MINILM: &str = r#"{
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_size": 384, "intermediate_size": 1536,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
        "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
        "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522
    }"#;

    fn err(text: &str) -> String {
        match BertConfig::from_json(text) {
            Err(Error::Checkpoint(m)) => m,
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
    }

    #[test]
    fn parses_minilm() {
        let cfg = BertConfig::from_json(MINILM).unwrap();
        assert_eq!(
            cfg,
            BertConfig {
                vocab_size: 30522,
                hidden_size: 384,
                num_hidden_layers: 6,
                num_attention_heads: 12,
                intermediate_size: 1536,
                hidden_act: Activation::Gelu,
                max_position_embeddings: 512,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
            }
        );
        let json = cfg.to_json();
        assert!(json.contains("\"hidden_act\": \"gelu\""), "{json}");
    }

    #[test]
    fn absent_optional_keys_take_bert_defaults() {
        let text = r#"{"architectures": ["BertForMaskedLM"], "vocab_size": 10, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}"#;
        let cfg = BertConfig::from_json(text).unwrap();
        assert_eq!(cfg.hidden_act, Activation::Gelu);
        assert_eq!((cfg.max_position_embeddings, cfg.type_vocab_size), (512, 2));
        assert_eq!(cfg.layer_norm_eps, 1e-12);
        let relu = MINILM.replace("\"gelu\"", "\"relu\"");
        assert_eq!(
            BertConfig::from_json(&relu).unwrap().hidden_act,
            Activation::Relu
        );
    }

    #[test]
    fn rejects_other_models_and_unsupported_options() {
        let m = err(&MINILM.replace("\"bert\"", "\"roberta\""));
        assert!(m.contains("not a BERT") && m.contains("roberta"), "{m}");
        let m = err(&MINILM
            .replace("\"model_type\": \"bert\",", "")
            .replace("BertModel", "GPT2Model"));
        assert!(m.contains("not a BERT"), "{m}");
        let m = err(&MINILM.replace("\"gelu\"", "\"gelu_new\""));
        assert!(m.contains("hidden_act") && m.contains("gelu_new"), "{m}");
        let m = err(&MINILM.replace("\"absolute\"", "\"relative_key\""));
        assert!(
            m.contains("position_embedding_type") && m.contains("relative_key"),
            "{m}"
        );
        let m = err(&MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 5"));
        assert!(m.contains("num_attention_heads"), "{m}");
        let m = err(&MINILM.replace("\"hidden_size\": 384,", ""));
        assert!(m.contains("missing key `hidden_size`"), "{m}");
        let m = err(&MINILM.replace("\"vocab_size\": 30522", "\"vocab_size\": -1"));
        assert!(m.contains("vocab_size"), "{m}");
        let m = err(&MINILM.replace("1e-12", "0"));
        assert!(m.contains("layer_norm_eps"), "{m}");
        assert!(err("[1]").contains("JSON object"));
        assert!(err("{").contains("not valid JSON"));
    }
}
