//! TwiML, the XML a TwiML carrier (Twilio and compatible providers) executes on a call.
//!
//! One document model, [`Verb`], both ways: [`render`] writes it with quick-xml (always
//! well-formed, text escaped), [`parse`] reads a document back (unknown verbs or attributes are
//! errors). The engine's [`crate::flow::response::Response`] becomes verbs in [`from_response`];
//! [`crate::twiml::phone`] plays verbs as a caller would hear them.

mod interpret;
pub mod phone;
mod render;

pub use interpret::{ParseError, parse};
pub use render::render;

use crate::flow::response::{Response, Speech};

/// The TwiML verbs for the engine's response. Speech plays inside the `<Gather>` so a caller
/// who knows the answer may press it at once; `action` receives the keys, and also an empty
/// result, so silence is a turn of its own. The `<Redirect>` after the gather serves carriers
/// that ignore `actionOnEmptyResult` (Twilio never reaches it).
pub fn from_response(response: &Response, action: &str) -> Vec<Verb> {
    let speech = response.speech.iter().map(|s| match s {
        Speech::Say { text, language, voice } => {
            Verb::Say { text: text.clone(), language: Some(language.clone()), voice: voice.clone() }
        }
        Speech::Play { url } => Verb::Play { url: url.clone() },
        Speech::Pause { seconds } => Verb::Pause { length: *seconds },
    });
    if let Some(d) = &response.dial {
        // Twilio posts how the dial ended to `action`; nothing after a `<Dial action>` plays.
        return speech
            .chain([Verb::Dial(Dial {
                number: d.to.clone(),
                action: action.to_string(),
                timeout: d.timeout,
                caller_id: d.caller_id.clone(),
            })])
            .collect();
    }
    match &response.gather {
        Some(g) => vec![
            Verb::Gather(Gather {
                action: action.to_string(),
                timeout: g.timeout,
                num_digits: Some(g.num_digits),
                finish_on_key: g.finish_on_key.clone(),
                action_on_empty_result: true,
                children: speech.collect(),
            }),
            Verb::Redirect { url: action.to_string() },
        ],
        None => speech.chain([Verb::Hangup]).collect(),
    }
}

/// One TwiML verb, with the attributes this engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Say language=".." voice="..">text</Say>`: text-to-speech.
    Say { text: String, language: Option<String>, voice: Option<String> },
    /// `<Play>url</Play>`: an audio file.
    Play { url: String },
    /// `<Pause length="n"/>`: silence, in seconds.
    Pause { length: u32 },
    /// `<Gather input="dtmf" ...>`: collect keys while its children play.
    Gather(Gather),
    /// `<Redirect method="POST">url</Redirect>`: fetch the next TwiML from `url`.
    Redirect { url: String },
    /// `<Hangup/>`.
    Hangup,
    /// `<Dial action=".." timeout=".." callerId=".."><Number>..</Number></Dial>`: puts the
    /// call through to a number.
    Dial(Dial),
}

/// `<Dial>`: the caller is connected to `number`; when that leg ends (or never answers), the
/// carrier posts `DialCallStatus` to `action` and plays what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The number rung, `<Number>` (E.164).
    pub number: String,
    /// Where the carrier posts how the dial ended (`method="POST"`).
    pub action: String,
    /// Seconds to ring before `no-answer`.
    pub timeout: u32,
    /// The number the dialled phone shows; `None` for the carrier's default.
    pub caller_id: Option<String>,
}

/// `<Gather>`: keys pressed while `children` play, posted to `action` as `Digits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    /// Where the carrier posts the keys (`method="POST"`).
    pub action: String,
    /// Seconds of silence after the last key (or the prompt) before the gather ends.
    pub timeout: u32,
    /// Stop after this many keys; `None` lets `finish_on_key` or the timeout end it.
    pub num_digits: Option<u32>,
    /// The key that ends input (not included in `Digits`); empty for none.
    pub finish_on_key: String,
    /// Post to `action` even when nothing was pressed (`actionOnEmptyResult="true"`).
    pub action_on_empty_result: bool,
    /// What plays while keys are collected: only `Say`, `Play` and `Pause`.
    pub children: Vec<Verb>,
}

/// Both directions together: whatever [`render`] writes, [`parse`] reads back unchanged.
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::render::is_xml_char;
    use super::*;

    fn say(text: &str, language: Option<&str>, voice: Option<&str>) -> Verb {
        Verb::Say { text: text.into(), language: language.map(Into::into), voice: voice.map(Into::into) }
    }

    fn round_trip(verbs: &[Verb]) -> Result<Vec<Verb>, ParseError> {
        parse(&render(verbs))
    }

    #[test]
    fn every_verb_survives_a_round_trip() {
        let verbs = vec![
            say("こんにちは。", Some("ja-JP"), Some("Polly.Mizuki")),
            say("Hello", Some("en-US"), None),
            say("", None, None),
            Verb::Play { url: "https://cdn.example/a.mp3".into() },
            Verb::Pause { length: 0 },
            Verb::Pause { length: u32::MAX },
            Verb::Gather(Gather {
                action: "https://ivr.example/twilio/voice/step?call=CA123&seq=4".into(),
                timeout: 10,
                num_digits: Some(3),
                finish_on_key: "#".into(),
                action_on_empty_result: true,
                children: vec![
                    say("体温を入力してください。", Some("ja-JP"), None),
                    Verb::Pause { length: 1 },
                    Verb::Play { url: "/beep.wav".into() },
                ],
            }),
            Verb::Gather(Gather {
                action: "/step".into(),
                timeout: 5,
                num_digits: None,
                finish_on_key: String::new(),
                action_on_empty_result: false,
                children: vec![],
            }),
            Verb::Redirect { url: "/twilio/voice/step?call=CA123&seq=5".into() },
            Verb::Hangup,
            Verb::Dial(Dial {
                number: "+81312345678".into(),
                action: "https://ivr.example/twilio/voice/step?call=CA123&seq=6".into(),
                timeout: 20,
                caller_id: Some("+815012345678".into()),
            }),
            Verb::Dial(Dial { number: "+81312345678".into(), action: "/a".into(), timeout: 30, caller_id: None }),
        ];
        assert_eq!(round_trip(&verbs), Ok(verbs));
    }

    #[test]
    fn xml_special_characters_survive_in_text_and_urls() {
        let verbs = vec![
            say(r#"<b>Tom & "Jerry"</b> 'quoted' ]]> &amp;"#, Some(r#"a"b'c&d"#), None),
            Verb::Play { url: "https://cdn.example/a.mp3?x=1&y=<2>&z=\"3\"".into() },
            Verb::Redirect { url: "/step?call=CA123&seq=4&note='a b'".into() },
        ];
        let xml = render(&verbs);
        assert!(xml.contains("call=CA123&amp;seq=4"), "{xml}");
        assert_eq!(parse(&xml), Ok(verbs));
    }

    #[test]
    fn whitespace_survives_in_text_and_attributes() {
        let verbs = vec![say(" \t a\r\nb\rc\n ", Some(" \t\r\n "), Some("x\r\ny")), say("   ", None, None)];
        assert_eq!(round_trip(&verbs), Ok(verbs));
    }

    /// Strings built from pieces that stress escaping, plus ASCII, Japanese and any character
    /// XML can carry.
    fn text() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            "<", ">", "&", "\"", "'", "]]>", "&amp;", "&#10;", "\r\n", "\r", "\n", "\t", " ", "?a=1&b=2",
        ])
        .prop_map(str::to_owned);
        let piece = prop_oneof![
            special,
            "[a-zA-Z0-9 .:/?=%-]{1,8}",
            "[ぁ-ゖァ-ヺ一-龥、。ー]{1,6}",
            any::<char>().prop_filter("a character XML can carry", |&c| is_xml_char(c)).prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    fn say_strategy() -> impl Strategy<Value = Verb> {
        (text(), prop::option::of(text()), prop::option::of(text())).prop_map(|(text, language, voice)| Verb::Say {
            text,
            language,
            voice,
        })
    }

    /// What `<Gather>` may hold.
    fn prompt() -> impl Strategy<Value = Verb> {
        prop_oneof![
            say_strategy(),
            text().prop_map(|url| Verb::Play { url }),
            any::<u32>().prop_map(|length| Verb::Pause { length }),
        ]
    }

    fn verb() -> impl Strategy<Value = Verb> {
        let gather = (
            text(),
            any::<u32>(),
            prop::option::of(any::<u32>()),
            text(),
            any::<bool>(),
            prop::collection::vec(prompt(), 0..4),
        )
            .prop_map(|(action, timeout, num_digits, finish_on_key, empty, children)| {
                Verb::Gather(Gather {
                    action,
                    timeout,
                    num_digits,
                    finish_on_key,
                    action_on_empty_result: empty,
                    children,
                })
            });
        let dial = (text(), text(), any::<u32>(), prop::option::of(text()))
            .prop_map(|(number, action, timeout, caller_id)| Verb::Dial(Dial { number, action, timeout, caller_id }));
        prop_oneof![prompt(), text().prop_map(|url| Verb::Redirect { url }), Just(Verb::Hangup), gather, dial]
    }

    proptest! {
        #[test]
        fn render_then_parse_is_the_identity(verbs in prop::collection::vec(verb(), 0..6)) {
            prop_assert_eq!(round_trip(&verbs), Ok(verbs));
        }

        #[test]
        fn any_string_renders_well_formed(s in any::<String>()) {
            // Characters XML cannot carry are left out; everything else comes back.
            let kept: String = s.chars().filter(|&c| is_xml_char(c)).collect();
            let parsed = round_trip(&[say(&s, Some(&s), None)]);
            prop_assert_eq!(parsed, Ok(vec![say(&kept, Some(&kept), None)]));
        }
    }
}
