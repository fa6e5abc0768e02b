//! TwiML interoperability with Twilio's official helper library (PyPI `twilio`).
//!
//! `tests/fixtures/twiml/NAME.xml` are written by `scripts/twiml-fixtures.py` with
//! `twilio.twiml.voice_response.VoiceResponse`; [`cases`] holds the verbs each one stands for.
//! For every case, `parse(fixture)` must give those verbs and `render(verbs)` must be the same
//! document as the fixture.
//!
//! "The same document" is compared as trees (names, sorted attributes, text), not as bytes.
//! Byte-exact equality holds only for some fixtures (a lone Play, Redirect or Say; a Dial), for
//! reasons that change nothing for an XML parser: twilio-python sorts attributes alphabetically
//! while `render` writes `<Gather>`'s in the order of Twilio's documentation (`input`, `action`,
//! `method`, `timeout`, ...; `<Dial>`'s are sorted); ElementTree writes empty elements as `<Pause length="1" />` where
//! quick-xml writes `<Pause length="1"/>`; and an empty `<Gather>` is `<Gather ... />` there,
//! `<Gather ...></Gather>` here. Escaping of text and attributes is byte-for-byte the same, which
//! [`without_a_gather_only_the_empty_element_form_differs`] checks.

use crate::common::peers;

use std::path::{Path, PathBuf};
use std::process::Command;

use ivr::twiml::{Dial, Gather, Verb, parse, render};
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

const STEP: &str = "https://ivr.example.jp/twilio/voice/step";
const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

fn ja(text: &str) -> Verb {
    Verb::Say { text: text.into(), language: Some("ja-JP".into()), voice: Some("Polly.Mizuki".into()) }
}

fn en(text: &str) -> Verb {
    Verb::Say { text: text.into(), language: Some("en-US".into()), voice: None }
}

fn gather(action: String, timeout: u32, finish_on_key: &str, children: Vec<Verb>) -> Gather {
    Gather {
        action,
        timeout,
        num_digits: None,
        finish_on_key: finish_on_key.into(),
        action_on_empty_result: false,
        children,
    }
}

/// The twin of each case in `scripts/twiml-fixtures.py`, by fixture name.
fn cases() -> Vec<(&'static str, Vec<Verb>)> {
    vec![
        ("menu_gather_ja", {
            let prompt = "接触確認アプリをお使いの方は1を、お使いでない方は2を押してください。";
            let mut menu = gather(
                format!("{STEP}?call=CA123&seq=1"),
                5,
                "#",
                vec![ja(prompt), Verb::Pause { length: 1 }, ja("もう一度お伝えします。")],
            );
            menu.num_digits = Some(1);
            menu.action_on_empty_result = true;
            vec![Verb::Gather(menu)]
        }),
        ("number_gather", {
            let prompt = "今朝の体温を押してください。36度8分なら、3、6、8です。";
            let mut number = gather(format!("{STEP}?call=CA123&seq=2"), 10, "#", vec![ja(prompt)]);
            number.num_digits = Some(3);
            vec![Verb::Gather(number)]
        }),
        ("gather_no_finish_key", {
            let url = "https://cdn.example.jp/prompts/ja-JP/spo2.mp3".into();
            let play = Verb::Play { url };
            let action = format!("{STEP}?call=CA123&seq=3");
            vec![Verb::Gather(gather(action, 7, "", vec![play]))]
        }),
        (
            "play_query_url",
            vec![Verb::Play { url: "https://cdn.example.jp/prompts/ja-JP/welcome.mp3?v=3&sig=ab%2Fcd".into() }],
        ),
        ("pause", vec![ja("少々お待ちください。"), Verb::Pause { length: 3 }]),
        ("redirect", vec![Verb::Redirect { url: format!("{STEP}?call=CA123&seq=4") }]),
        ("say_then_hangup", vec![ja("ご回答ありがとうございました。お大事になさってください。"), Verb::Hangup]),
        (
            "special_characters",
            vec![
                en(r#"1 < 2 & 3 > 2, "double" and 'single' quotes </Say>"#),
                Verb::Play { url: r#"https://cdn.example.jp/a.mp3?name="x"&lang='ja'&cmp=<2>"#.into() },
                Verb::Gather(gather(format!(r#"{STEP}?note="a"&who='b'&cmp=<c>"#), 5, "*", vec![])),
            ],
        ),
        ("say_en_us", vec![en("Please enter your temperature, then press the hash key.")]),
        (
            "dial_centre",
            vec![
                ja("保健所の担当者におつなぎします。そのまま、お待ちください。"),
                Verb::Dial(Dial {
                    number: "+81353210001".into(),
                    action: format!("{STEP}?call=CA123&seq=5"),
                    timeout: 20,
                    caller_id: Some("+815012345678".into()),
                }),
            ],
        ),
    ]
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/twiml")
}

fn fixture(name: &str) -> String {
    let path = fixture_dir().join(format!("{name}.xml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `.xml` file names in `dir`, sorted.
fn xml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

/// An element with its attributes sorted and its text pieces joined: what any XML parser sees,
/// whatever the attribute order, quoting, escaping or empty-element form.
#[derive(Debug, PartialEq)]
struct Node {
    name: String,
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

fn canonical(xml: &str) -> Node {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let event = reader.read_event().expect("well-formed XML");
        let open = |start: &quick_xml::events::BytesStart<'_>| {
            let mut attributes: Vec<(String, String)> = start
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                    (key, a.unescape_value().unwrap().into_owned())
                })
                .collect();
            attributes.sort();
            Node {
                name: String::from_utf8(start.name().as_ref().to_vec()).unwrap(),
                attributes,
                text: String::new(),
                children: Vec::new(),
            }
        };
        let closed = match event {
            Event::Start(start) => {
                stack.push(open(&start));
                None
            }
            Event::Empty(start) => Some(open(&start)),
            Event::End(_) => stack.pop(),
            Event::Text(text) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&text.xml10_content().unwrap());
                }
                None
            }
            Event::GeneralRef(reference) => {
                let node = stack.last_mut().expect("references only inside elements");
                match reference.resolve_char_ref().unwrap() {
                    Some(c) => node.text.push(c),
                    None => {
                        let name = reference.decode().unwrap();
                        node.text.push_str(resolve_predefined_entity(&name).unwrap());
                    }
                }
                None
            }
            Event::Eof => panic!("no root element"),
            _ => None,
        };
        if let Some(node) = closed {
            match stack.last_mut() {
                Some(parent) => parent.children.push(node),
                None => return node,
            }
        }
    }
}

#[test]
fn every_fixture_has_a_twin_and_every_twin_a_fixture() {
    let mut names: Vec<String> = cases().iter().map(|(name, _)| format!("{name}.xml")).collect();
    names.sort();
    assert_eq!(xml_files(&fixture_dir()), names);
}

#[test]
fn twilio_python_documents_parse_to_the_expected_verbs() {
    for (name, verbs) in cases() {
        assert_eq!(parse(&fixture(name)), Ok(verbs), "{name}.xml");
    }
}

#[test]
fn rendered_documents_equal_twilio_pythons_as_trees() {
    for (name, verbs) in cases() {
        let expected = fixture(name);
        let rendered = render(&verbs);
        assert!(expected.starts_with(DECL), "{name}.xml: {expected}");
        assert!(rendered.starts_with(DECL), "{name}: {rendered}");
        assert_eq!(canonical(&rendered), canonical(&expected), "{name}");
    }
}

#[test]
fn without_a_gather_only_the_empty_element_form_differs() {
    // `<Dial>` included: its attributes are sorted as twilio-python sorts them.
    let no_gather = |verbs: &[Verb]| !verbs.iter().any(|v| matches!(v, Verb::Gather(_)));
    for (name, verbs) in cases().into_iter().filter(|(_, verbs)| no_gather(verbs)) {
        let twilio = fixture(name).replace(" />", "/>");
        assert_eq!(render(&verbs), twilio, "{name}");
    }
}

/// Regenerates the fixtures with twilio-python and compares them byte for byte with the
/// committed ones, so a change in the library (or in the script) cannot go unnoticed.
#[test]
fn committed_fixtures_are_what_twilio_python_writes() {
    if !peers::python_module(
        "twilio",
        "PyPI twilio not installed; fixtures in tests/fixtures/twiml were not regenerated",
    ) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("python3")
        .arg(root.join("scripts/twiml-fixtures.py"))
        .arg(out.path())
        .current_dir(root)
        .output()
        .expect("python3 runs");
    assert!(run.status.success(), "scripts/twiml-fixtures.py failed:\n{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(xml_files(out.path()), xml_files(&fixture_dir()));
    for name in xml_files(out.path()) {
        let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap();
        assert_eq!(fresh, fixture(name.trim_end_matches(".xml")), "{name}");
    }
}
