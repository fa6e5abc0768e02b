//! [`Verb`]s to a TwiML document, written with quick-xml's [`Writer`].
//!
//! Escaping is done here rather than by quick-xml because quick-xml's escaping keeps characters
//! a conforming XML parser would change or refuse: a literal `\r` is read back as `\n`, a
//! literal tab or newline in an attribute is read back as a space, and control characters make
//! the document ill-formed. The rules otherwise follow Python's ElementTree (which the Twilio
//! helper library uses), so text and URLs come out the same way as in Twilio's own examples.
//!
//! One start-tag buffer and one scratch string are reused for the whole document, so rendering
//! allocates only the output (sized up front) and, rarely, to grow it.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::Writer;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;

use super::{Dial, Gather, Verb};

/// Renders `verbs` as a complete TwiML document:
/// `<?xml version="1.0" encoding="UTF-8"?><Response>…</Response>`, without indentation.
///
/// The output is always well-formed XML 1.0: text and attribute values are escaped, and the
/// few characters XML 1.0 cannot carry at all (control characters other than tab, newline and
/// carriage return; U+FFFE, U+FFFF) are left out. Everything else, Japanese included, is
/// written as UTF-8 unchanged.
///
/// `<Gather>` children are written as given; TwiML only allows `Say`, `Play` and `Pause`
/// there, which is what [`super::parse`] accepts back.
pub fn render(verbs: &[Verb]) -> String {
    let mut out = Renderer {
        xml: Writer::new(Vec::with_capacity(estimated_len(verbs))),
        tag: BytesStart::from_content(String::with_capacity(256), 0),
        scratch: String::with_capacity(128),
    };
    out.emit(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    out.emit(Event::Start(BytesStart::new("Response")));
    for verb in verbs {
        out.verb(verb);
    }
    out.emit(Event::End(BytesEnd::new("Response")));
    String::from_utf8(out.xml.into_inner()).expect("every byte written came from a &str")
}

/// The writer plus the two buffers reused for every element.
struct Renderer {
    xml: Writer<Vec<u8>>,
    /// The start tag being built: name, then attributes with already-escaped values.
    tag: BytesStart<'static>,
    /// Escaped text, or one escaped attribute value, before it is copied out.
    scratch: String,
}

impl Renderer {
    fn emit(&mut self, event: Event<'_>) {
        write(&mut self.xml, event);
    }

    /// Writes the tag built in `self.tag` as a start tag, `<tag ...>`.
    fn emit_start(&mut self) {
        write(&mut self.xml, Event::Start(self.tag.borrow()));
    }

    /// Writes the tag built in `self.tag` as an empty element, `<tag .../>`.
    fn emit_empty(&mut self) {
        write(&mut self.xml, Event::Empty(self.tag.borrow()));
    }

    fn verb(&mut self, verb: &Verb) {
        match verb {
            Verb::Say { text, language, voice } => {
                self.open("Say");
                if let Some(language) = language {
                    self.attr("language", language);
                }
                if let Some(voice) = voice {
                    self.attr("voice", voice);
                }
                self.text_element("Say", text);
            }
            Verb::Play { url } => {
                self.open("Play");
                self.text_element("Play", url);
            }
            Verb::Pause { length } => {
                self.open("Pause");
                self.number_attr("length", *length);
                self.emit_empty();
            }
            Verb::Gather(gather) => self.gather(gather),
            Verb::Redirect { url } => {
                self.open("Redirect");
                self.attr("method", "POST");
                self.text_element("Redirect", url);
            }
            Verb::Hangup => self.emit(Event::Empty(BytesStart::new("Hangup"))),
            Verb::Dial(dial) => self.dial(dial),
        }
    }

    /// Attributes sorted, as Twilio's helper library writes them, so the document is
    /// byte for byte what `VoiceResponse().dial(…).number(…)` gives.
    fn dial(&mut self, dial: &Dial) {
        self.open("Dial");
        self.attr("action", &dial.action);
        if let Some(caller_id) = &dial.caller_id {
            self.attr("callerId", caller_id);
        }
        self.attr("method", "POST");
        self.number_attr("timeout", dial.timeout);
        self.emit_start();
        self.open("Number");
        self.text_element("Number", &dial.number);
        self.emit(Event::End(BytesEnd::new("Dial")));
    }

    fn gather(&mut self, gather: &Gather) {
        self.open("Gather");
        self.attr("input", "dtmf");
        self.attr("action", &gather.action);
        self.attr("method", "POST");
        self.number_attr("timeout", gather.timeout);
        if let Some(num_digits) = gather.num_digits {
            self.number_attr("numDigits", num_digits);
        }
        // Always written: leaving it out would mean Twilio's default, "#", not "none".
        self.attr("finishOnKey", &gather.finish_on_key);
        if gather.action_on_empty_result {
            self.attr("actionOnEmptyResult", "true");
        }
        self.emit_start();
        for child in &gather.children {
            self.verb(child);
        }
        self.emit(Event::End(BytesEnd::new("Gather")));
    }

    /// Starts a new start tag in `self.tag`, reusing its buffer.
    fn open(&mut self, name: &str) {
        self.tag.clear_attributes().set_name(name.as_bytes());
    }

    fn attr(&mut self, key: &'static str, value: &str) {
        self.scratch.clear();
        escape_into(value, &mut self.scratch, Context::Attribute);
        self.push_scratch_attr(key);
    }

    fn number_attr(&mut self, key: &'static str, value: u32) {
        self.scratch.clear();
        write!(self.scratch, "{value}").expect("writing to a String cannot fail");
        self.push_scratch_attr(key);
    }

    fn push_scratch_attr(&mut self, key: &'static str) {
        // An `Attribute` built directly is copied as-is; the value is already escaped.
        self.tag
            .push_attribute(Attribute { key: QName(key.as_bytes()), value: Cow::Borrowed(self.scratch.as_bytes()) });
    }

    /// Writes the start tag in `self.tag`, `text` escaped, and the end tag.
    fn text_element(&mut self, name: &'static str, text: &str) {
        self.emit_start();
        if !text.is_empty() {
            self.scratch.clear();
            escape_into(text, &mut self.scratch, Context::Text);
            let escaped = BytesText::from_escaped(self.scratch.as_str());
            write(&mut self.xml, Event::Text(escaped));
        }
        self.emit(Event::End(BytesEnd::new(name)));
    }
}

fn write(xml: &mut Writer<Vec<u8>>, event: Event<'_>) {
    xml.write_event(event).expect("writing to a Vec<u8> cannot fail");
}

/// Where escaped characters end up: attribute values also need `"` and literal whitespace other
/// than spaces escaped, or a parser would end the value early or turn it into a space.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Text,
    Attribute,
}

/// Appends `raw` to `out`, escaped for `context`, leaving out characters XML 1.0 forbids.
fn escape_into(raw: &str, out: &mut String, context: Context) {
    let attribute = context == Context::Attribute;
    let mut copied = 0;
    for (i, c) in raw.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            // Not required outside `]]>`, but ElementTree does it and it costs nothing.
            '>' => "&gt;",
            // A literal CR would be read back as LF (XML end-of-line handling).
            '\r' => "&#13;",
            '"' if attribute => "&quot;",
            '\n' if attribute => "&#10;",
            '\t' if attribute => "&#09;",
            c if is_xml_char(c) => continue,
            _ => "",
        };
        out.push_str(&raw[copied..i]);
        out.push_str(replacement);
        copied = i + c.len_utf8();
    }
    out.push_str(&raw[copied..]);
}

/// XML 1.0 `Char`: what a well-formed document may contain, literally or as a reference.
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A close upper bound of the output length when nothing needs escaping.
fn estimated_len(verbs: &[Verb]) -> usize {
    const DOCUMENT: usize = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#.len();
    DOCUMENT + verbs.iter().map(verb_len).sum::<usize>()
}

fn verb_len(verb: &Verb) -> usize {
    match verb {
        Verb::Say { text, language, voice } => {
            let language = language.as_ref().map_or(0, |l| l.len() + 12);
            let voice = voice.as_ref().map_or(0, |v| v.len() + 9);
            "<Say></Say>".len() + text.len() + language + voice
        }
        Verb::Play { url } => "<Play></Play>".len() + url.len(),
        Verb::Pause { .. } => r#"<Pause length="4294967295"/>"#.len(),
        Verb::Gather(gather) => {
            const FIXED: usize = r#"<Gather input="dtmf" action="" method="POST" timeout="4294967295" numDigits="4294967295" finishOnKey="" actionOnEmptyResult="true"></Gather>"#.len();
            FIXED
                + gather.action.len()
                + gather.finish_on_key.len()
                + gather.children.iter().map(verb_len).sum::<usize>()
        }
        Verb::Redirect { url } => r#"<Redirect method="POST"></Redirect>"#.len() + url.len(),
        Verb::Hangup => "<Hangup/>".len(),
        Verb::Dial(d) => {
            const FIXED: usize =
                r#"<Dial action="" method="POST" timeout="4294967295" callerId=""><Number></Number></Dial>"#.len();
            FIXED + d.action.len() + d.number.len() + d.caller_id.as_ref().map_or(0, String::len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    fn doc(body: &str) -> String {
        format!("{DECL}<Response>{body}</Response>")
    }

    fn say(text: &str) -> Verb {
        Verb::Say { text: text.into(), language: None, voice: None }
    }

    fn gather(children: Vec<Verb>) -> Gather {
        Gather {
            action: "/step?call=CA1&seq=2".into(),
            timeout: 5,
            num_digits: None,
            finish_on_key: "#".into(),
            action_on_empty_result: false,
            children,
        }
    }

    #[test]
    fn an_empty_response_is_still_a_document() {
        assert_eq!(render(&[]), doc(""));
    }

    #[test]
    fn say_writes_language_and_voice_only_when_set() {
        let verbs = [
            Verb::Say {
                text: "こんにちは".into(), language: Some("ja-JP".into()), voice: Some("Polly.Mizuki".into())
            },
            say("Hello"),
            say(""),
        ];
        assert_eq!(
            render(&verbs),
            doc(concat!(
                r#"<Say language="ja-JP" voice="Polly.Mizuki">こんにちは</Say>"#,
                "<Say>Hello</Say><Say></Say>"
            ))
        );
    }

    #[test]
    fn every_other_verb_has_its_fixed_shape() {
        let verbs = [
            Verb::Play { url: "https://cdn.example/a.mp3".into() },
            Verb::Pause { length: 2 },
            Verb::Redirect { url: "https://ivr.example/step".into() },
            Verb::Hangup,
        ];
        assert_eq!(
            render(&verbs),
            doc(concat!(
                "<Play>https://cdn.example/a.mp3</Play>",
                r#"<Pause length="2"/>"#,
                r#"<Redirect method="POST">https://ivr.example/step</Redirect>"#,
                "<Hangup/>"
            ))
        );
    }

    #[test]
    fn gather_attributes_come_in_a_fixed_order() {
        let mut all = gather(vec![say("1 or 2"), Verb::Pause { length: 1 }]);
        all.num_digits = Some(3);
        all.finish_on_key = String::new();
        all.action_on_empty_result = true;
        assert_eq!(
            render(&[Verb::Gather(all)]),
            doc(concat!(
                r#"<Gather input="dtmf" action="/step?call=CA1&amp;seq=2" method="POST" "#,
                r#"timeout="5" numDigits="3" finishOnKey="" actionOnEmptyResult="true">"#,
                r#"<Say>1 or 2</Say><Pause length="1"/></Gather>"#
            ))
        );
        assert_eq!(
            render(&[Verb::Gather(gather(vec![]))]),
            doc(concat!(
                r#"<Gather input="dtmf" action="/step?call=CA1&amp;seq=2" method="POST" "#,
                r##"timeout="5" finishOnKey="#"></Gather>"##
            ))
        );
    }

    #[test]
    fn text_escapes_markup_but_not_quotes() {
        assert_eq!(render(&[say(r#"<b> & "q" 'a'"#)]), doc(r#"<Say>&lt;b&gt; &amp; "q" 'a'</Say>"#));
    }

    #[test]
    fn attributes_escape_quotes_ampersands_and_whitespace() {
        let verbs = [Verb::Say {
            text: String::new(),
            language: Some("a\"b'c<d>&e".into()),
            voice: Some("tab\tnl\ncr\r".into()),
        }];
        assert_eq!(
            render(&verbs),
            doc(r#"<Say language="a&quot;b'c&lt;d&gt;&amp;e" voice="tab&#09;nl&#10;cr&#13;"></Say>"#)
        );
    }

    #[test]
    fn urls_keep_their_query_strings() {
        let verbs = [Verb::Redirect { url: "https://ivr.example/step?call=CA123&seq=4".into() }];
        assert_eq!(
            render(&verbs),
            doc(r#"<Redirect method="POST">https://ivr.example/step?call=CA123&amp;seq=4</Redirect>"#)
        );
    }

    #[test]
    fn text_keeps_newlines_and_protects_carriage_returns() {
        assert_eq!(render(&[say("a\r\nb\tc")]), doc("<Say>a&#13;\nb\tc</Say>"));
    }

    #[test]
    fn characters_xml_cannot_carry_are_left_out() {
        assert_eq!(render(&[say("a\u{0}b\u{1b}c\u{FFFE}d\u{FFFF}e\u{10FFFF}")]), doc("<Say>abcde\u{10FFFF}</Say>"));
    }

    #[test]
    fn japanese_passes_through_as_utf8() {
        let text = "本日の体温を、例えば36度8分なら368と押してください。";
        assert_eq!(render(&[say(text)]), doc(&format!("<Say>{text}</Say>")));
    }

    #[test]
    fn the_estimate_covers_output_without_escapes() {
        let verbs = [
            say("こんにちは"),
            Verb::Gather(gather(vec![say("press 1"), Verb::Pause { length: 10 }])),
            Verb::Redirect { url: "https://ivr.example/step".into() },
            Verb::Hangup,
        ];
        let rendered = render(&verbs);
        assert!(rendered.len() <= estimated_len(&verbs));
        // A tight bound: no more than the unused optional Gather attributes on top.
        assert!(estimated_len(&verbs) - rendered.len() < 100);
    }
}
