//! Every example in `proto/examples/` validates against its schema in `proto/schema/` and round-trips
//! through the Rust types unchanged.

use std::path::Path;

use mediafleet_proto::Envelope;

fn load(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn examples_match_schemas_and_round_trip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        // Producer snippets (curl, PHP, Python) live in subdirectories; only the JSON files are messages.
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let example = load(&path);
        let kind = example["kind"].as_str().unwrap();
        let schema = load(&root.join("schema").join(format!("{kind}.json")));
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());

        let env = Envelope::parse(example.to_string().as_bytes()).unwrap();
        env.job()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let back: serde_json::Value = serde_json::from_slice(&env.to_bytes()).unwrap();
        assert_eq!(back, example, "{} does not round-trip", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "expected an example per job kind");
}

#[test]
fn schemas_reject_what_workers_dead_letter() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = load(&root.join("schema/media.process.json"));
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut bad = load(&root.join("examples/media.process.json"));
    bad["version"] = 2.into();
    assert!(!validator.is_valid(&bad));
    assert!(Envelope::parse(bad.to_string().as_bytes()).is_err());
    let mut bad = load(&root.join("examples/media.process.json"));
    bad["payload"] = serde_json::json!({});
    assert!(!validator.is_valid(&bad));
    assert!(Envelope::parse(bad.to_string().as_bytes())
        .unwrap()
        .job()
        .is_err());
}
