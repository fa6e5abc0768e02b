//! The settings file the Debian package installs as /etc/ivr/ivr.toml (`packaging/ivr.toml`):
//! every setting the program reads is in it, each value it shows is one the program accepts,
//! and as installed it starts in the safe mode (the simulator, no daily campaign).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ivr::config::{KNOWN_KEYS, Settings};

fn packaged() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ivr.toml")
}

/// The file with every `#key = value` and `#[section]` line made live: the settings shown at
/// their defaults and the examples. Explanations (`# …`) stay comments.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The settings a TOML text holds, as `section.key`; a table (`[scheduler.slots]`) counts as
/// `scheduler.slots.*`, the form of [`KNOWN_KEYS`].
fn keys_of(text: &str) -> BTreeSet<String> {
    let doc: toml::Table = text.parse().expect("the packaged ivr.toml, uncommented, is valid TOML");
    let mut keys = BTreeSet::new();
    for (section, value) in &doc {
        let table = value.as_table().unwrap_or_else(|| panic!("{section} is not a [section]"));
        for (key, value) in table {
            let name = format!("{section}.{key}");
            if KNOWN_KEYS.contains(&format!("{name}.*").as_str()) {
                assert!(value.is_table(), "{name} should be a table");
                keys.insert(format!("{name}.*"));
            } else {
                keys.insert(name);
            }
        }
    }
    keys
}

#[test]
fn every_known_setting_is_in_the_packaged_settings_file() {
    let text = std::fs::read_to_string(packaged()).unwrap();
    let in_file = keys_of(&uncommented(&text));
    let known: BTreeSet<String> = KNOWN_KEYS.iter().map(|k| k.to_string()).collect();
    let missing: Vec<_> = known.difference(&in_file).collect();
    let unknown: Vec<_> = in_file.difference(&known).collect();
    assert!(missing.is_empty(), "packaging/ivr.toml lacks {missing:?}: add each, commented, with its default");
    assert!(unknown.is_empty(), "packaging/ivr.toml has {unknown:?}, which no setting reads");
}

#[test]
fn every_value_the_packaged_file_shows_is_accepted() {
    let text = std::fs::read_to_string(packaged()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.toml");
    std::fs::write(&all, uncommented(&text)).unwrap();
    let s = Settings::load(Some(&all)).unwrap_or_else(|e| panic!("packaging/ivr.toml uncommented: {e}"));
    assert_eq!(s.carrier_kind(), "simulator");
}

#[test]
fn the_packaged_settings_start_with_the_simulator_and_no_campaign() {
    let s = Settings::load(Some(&packaged())).unwrap();
    assert_eq!(s.carrier_kind(), "simulator");
    assert!(!s.scheduler.autostart);
    assert_eq!(s.flows.dir, Path::new("/usr/share/ivr/call-flows"));
    assert_eq!(s.flows.prompts_dir, Path::new("/usr/share/ivr/prompts"));
}

#[test]
fn ivr_check_with_the_packaged_settings_passes_on_the_shipped_flows() {
    let root = env!("CARGO_MANIFEST_DIR");
    // The package puts call-flows/ and prompts/ under /usr/share/ivr; here they are the tree's.
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["check", "--config", packaged().to_str().unwrap()])
        .env("IVR_FLOWS__DIR", Path::new(root).join("call-flows"))
        .env("IVR_FLOWS__PROMPTS_DIR", Path::new(root).join("prompts"))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("checked 1 flow file(s) and 2 prompt file(s): 0 error(s), 0 warning(s)"), "{stderr}");
}

#[test]
fn ivr_check_outside_the_source_tree_names_a_settings_error_without_looking_for_flows() {
    // The packaged file switched to Twilio, with everything but the centre's own number.
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["check", "--config", packaged().to_str().unwrap()])
        .envs([
            ("IVR_CARRIER__KIND", "twilio"),
            ("IVR_CARRIER__ACCOUNT_SID", "AC00000000000000000000000000000000"),
            ("IVR_CARRIER__AUTH_TOKEN", "token"),
            ("IVR_CARRIER__FROM", "+815000000000"),
            ("IVR_ISSUER__KEY", "key"),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "error: configuration: centre.phone: 03-1234-5678 is the shipped placeholder: set the number patients call back (IVR_CENTRE__PHONE)\n"
    );
}
