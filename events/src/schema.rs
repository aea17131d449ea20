//! JSON Schemas generated from the Rust types: the contract other languages read.
//!
//! `schemas/` holds `envelope.json` and one `<Type>.v<version>.json` per payload. A test fails
//! when they are stale; `UPDATE_SCHEMAS=1 cargo test -p prlx-events schemas` rewrites them.

use std::collections::BTreeMap;

use crate::envelope::EnvelopeShape;
use crate::event::Event;

/// File name -> pretty JSON, for every schema this build defines.
pub fn render_all() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut envelope =
        serde_json::to_value(schemars::schema_for!(EnvelopeShape)).expect("schemas serialize");
    // The `type` field takes exactly the declared names.
    envelope["properties"]["type"]["enum"] = serde_json::json!(Event::TYPE_NAMES);
    out.insert("envelope.json".to_owned(), pretty(&envelope));
    for (name, version, schema) in Event::payload_schemas() {
        let value = serde_json::to_value(schema).expect("schemas serialize");
        out.insert(format!("{name}.v{version}.json"), pretty(&value));
    }
    out
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("schemas serialize");
    s.push('\n');
    s
}
