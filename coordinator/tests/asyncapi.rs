//! The AsyncAPI document and the prose reference name every message type the WebSocket
//! code speaks, and no other: they cannot drift apart silently.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// Upper-case string literals ("EXECUTION_STEP", "CANCEL") in the ws module's sources.
fn types_in_code() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ws");
    let mut types = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for literal in text.split('"').skip(1).step_by(2) {
            let is_type =
                literal.len() >= 4 && literal.chars().all(|c| c.is_ascii_uppercase() || c == '_');
            if is_type {
                types.insert(literal.to_string());
            }
        }
    }
    types
}

#[test]
fn every_message_type_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let asyncapi = std::fs::read_to_string(root.join("docs/asyncapi.yaml")).unwrap();
    let prose = std::fs::read_to_string(root.join("docs/websocket.md")).unwrap();
    let code = types_in_code();
    assert!(code.len() >= 19, "found only {code:?}");
    for t in &code {
        assert!(asyncapi.contains(&format!("name: {t}\n")), "{t} is missing from docs/asyncapi.yaml");
        assert!(prose.contains(&format!("`{t}`")), "{t} is missing from docs/websocket.md");
    }
    for line in asyncapi.lines() {
        if let Some(name) = line.trim().strip_prefix("name: ")
            && name != "error"
        {
            assert!(code.contains(name), "docs/asyncapi.yaml documents {name}, which the code does not speak");
        }
    }
}
