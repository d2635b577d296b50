//! Fuzzes `config.json` parsing: any bytes give a config or an error; a
//! config that parses round-trips through `to_json`, and building a model
//! from it with no weights is an error (the missing tensor), reached without
//! allocating anything the config's sizes imply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transformer_rs_core::model::{Transformer, TransformerConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = TransformerConfig::from_json(text) else {
        return;
    };
    let again = TransformerConfig::from_json(&config.to_json()).expect("to_json parses");
    assert_eq!(again, config);
    assert!(Transformer::from_tensors(config, Vec::new()).is_err());
});
