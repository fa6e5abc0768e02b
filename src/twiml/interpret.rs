//! A TwiML document back to [`Verb`]s, read with quick-xml's [`Reader`]: the inverse of
//! [`super::render`].
//!
//! Strict on purpose: a verb, attribute or value this engine does not use is an error naming it
//! and its byte offset, rather than something silently dropped that a real carrier would act on.
//! Attribute order, quoting, whitespace between elements, comments and CDATA are free, as in any
//! XML. Text is read as a conforming XML 1.0 parser reads it (references resolved, line ends
//! normalised), so what comes back is what Twilio would speak or fetch.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::escape::{resolve_predefined_entity, unescape};
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::render::is_xml_char;
use super::{Dial, Gather, Verb};

/// Why a document is not TwiML this engine can run. Every variant carries the byte offset
/// (`at`) of the element or text at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (or XML that TwiML has no use for, such as a DOCTYPE).
    #[error("malformed XML at byte {at}: {message}")]
    Malformed { message: String, at: u64 },
    /// The document element is not `<Response>`, or there is none.
    #[error("missing root <Response>: found {found} at byte {at}")]
    MissingRoot { found: String, at: u64 },
    /// Something other than comments or whitespace after `</Response>`.
    #[error("unexpected {found} after </Response> at byte {at}")]
    AfterRoot { found: String, at: u64 },
    /// An element that is not one of the verbs in [`Verb`].
    #[error("unknown verb <{name}> at byte {at}")]
    UnknownVerb { name: String, at: u64 },
    /// An attribute this engine does not use on that verb.
    #[error("unknown attribute {attribute} on <{verb}> at byte {at}")]
    UnknownAttribute { attribute: String, verb: &'static str, at: u64 },
    /// A known attribute with a value this engine does not accept.
    #[error("invalid {attribute}=\"{value}\" on <{verb}> at byte {at}: {expected}")]
    InvalidValue { attribute: &'static str, value: String, verb: &'static str, expected: &'static str, at: u64 },
    /// A `<Gather>` or `<Dial>` without `action`: its result would go back to the document's
    /// own URL.
    #[error("<{verb}> at byte {at} has no action (this engine always posts {what} to one)", what = if *verb == "Dial" { "the dial's result" } else { "keys" })]
    MissingAction { verb: &'static str, at: u64 },
    /// A verb other than `Say`, `Play` or `Pause` nested in `<Gather>`.
    #[error("<Gather> may only contain <Say>, <Play>, <Pause>; found <{found}> at byte {at}")]
    GatherChild { found: String, at: u64 },
    /// An element inside a verb that holds only text (`Say`, `Play`, `Redirect`) or nothing.
    #[error("<{found}> is not allowed inside <{verb}> at byte {at}")]
    UnexpectedElement { found: String, verb: &'static str, at: u64 },
    /// Text other than whitespace where only elements (or nothing) may be.
    #[error("unexpected text inside <{parent}> at byte {at}")]
    UnexpectedText { parent: &'static str, at: u64 },
}

/// Reads a TwiML document (`<Response>` with the verbs of [`Verb`]) into verbs.
///
/// Missing attributes take Twilio's documented defaults: `<Pause/>` is one second; `<Gather>`
/// has `timeout` 5, `finishOnKey` `#`, no `numDigits`, `actionOnEmptyResult` false, and
/// `input` dtmf; `method` is POST. Values other than those this engine renders (`method="GET"`,
/// `input="speech"`) are errors, and so is a `<Gather>` without `action`.
///
/// Text is taken as written (after XML unescaping), whitespace included; whitespace-only text
/// between elements is ignored.
pub fn parse(xml: &str) -> Result<Vec<Verb>, ParseError> {
    let mut parser = Parser { reader: Reader::from_str(xml) };
    let verbs = loop {
        let (at, event) = parser.next()?;
        match event {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Text(text) if is_blank(&text) => {}
            // A DTD could declare entities that a carrier would expand and this parser would not.
            Event::DocType(_) => return Err(malformed("a DOCTYPE has no place in TwiML", at)),
            Event::Start(start) if start.name().as_ref() == b"Response" => {
                no_attributes(&start, "Response", at)?;
                break parser.children(Parent::Response)?;
            }
            Event::Empty(start) if start.name().as_ref() == b"Response" => {
                no_attributes(&start, "Response", at)?;
                break Vec::new();
            }
            other => {
                let found = describe(&other);
                return Err(ParseError::MissingRoot { found, at });
            }
        }
    };
    loop {
        let (at, event) = parser.next()?;
        match event {
            Event::Eof => return Ok(verbs),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Text(text) if is_blank(&text) => {}
            other => {
                let found = describe(&other);
                return Err(ParseError::AfterRoot { found, at });
            }
        }
    }
}

/// Where elements are being read, which decides what may appear.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Response,
    Gather,
    /// A verb with no content (`Pause`, `Hangup`).
    Empty(&'static str),
}

impl Parent {
    fn name(self) -> &'static str {
        match self {
            Parent::Response => "Response",
            Parent::Gather => "Gather",
            Parent::Empty(name) => name,
        }
    }
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    /// The next event and the byte offset where it starts.
    fn next(&mut self) -> Result<(u64, Event<'a>), ParseError> {
        let at = self.reader.buffer_position();
        self.reader.read_event().map(|event| (at, event)).map_err(|e| malformed(e, self.reader.error_position()))
    }

    /// Reads the content of `parent` up to its end tag.
    fn children(&mut self, parent: Parent) -> Result<Vec<Verb>, ParseError> {
        let mut verbs = Vec::new();
        loop {
            let (at, event) = self.next()?;
            match event {
                Event::Start(start) => verbs.push(self.verb(&start, false, parent, at)?),
                Event::Empty(start) => verbs.push(self.verb(&start, true, parent, at)?),
                // The reader checks that end tags match their start tags.
                Event::End(_) => return Ok(verbs),
                Event::Text(text) if is_blank(&text) => {}
                Event::GeneralRef(reference) if is_blank(resolve(&reference, at)?.as_bytes()) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    let parent = parent.name();
                    return Err(ParseError::UnexpectedText { parent, at });
                }
                Event::Comment(_) | Event::PI(_) => {}
                other => return Err(misplaced(&other, parent.name(), at)),
            }
        }
    }

    /// Reads one verb whose start tag, `start`, was at `at`; `empty` for `<Verb/>`.
    fn verb(&mut self, start: &BytesStart<'_>, empty: bool, parent: Parent, at: u64) -> Result<Verb, ParseError> {
        let name = start.name();
        let found = || String::from_utf8_lossy(name.as_ref()).into_owned();
        match parent {
            Parent::Gather if !matches!(name.as_ref(), b"Say" | b"Play" | b"Pause") => {
                return Err(ParseError::GatherChild { found: found(), at });
            }
            Parent::Empty(verb) => {
                return Err(ParseError::UnexpectedElement { found: found(), verb, at });
            }
            _ => {}
        }
        match name.as_ref() {
            b"Say" => {
                let (mut language, mut voice) = (None, None);
                for attribute in attributes(start, at) {
                    match attribute? {
                        (b"language", value) => language = Some(value),
                        (b"voice", value) => voice = Some(value),
                        (other, _) => return Err(unknown_attribute(other, "Say", at)),
                    }
                }
                let text = self.text("Say", empty)?;
                Ok(Verb::Say { text, language, voice })
            }
            b"Play" => {
                no_attributes(start, "Play", at)?;
                Ok(Verb::Play { url: self.text("Play", empty)? })
            }
            b"Pause" => {
                let mut length = 1;
                for attribute in attributes(start, at) {
                    match attribute? {
                        (b"length", value) => length = number(value, "length", "Pause", at)?,
                        (other, _) => return Err(unknown_attribute(other, "Pause", at)),
                    }
                }
                self.nothing("Pause", empty)?;
                Ok(Verb::Pause { length })
            }
            b"Gather" => self.gather(start, empty, at),
            b"Redirect" => {
                for attribute in attributes(start, at) {
                    match attribute? {
                        (b"method", value) => post_only(value, "Redirect", at)?,
                        (other, _) => return Err(unknown_attribute(other, "Redirect", at)),
                    }
                }
                Ok(Verb::Redirect { url: self.text("Redirect", empty)? })
            }
            b"Dial" => self.dial(start, empty, at),
            b"Hangup" => {
                no_attributes(start, "Hangup", at)?;
                self.nothing("Hangup", empty)?;
                Ok(Verb::Hangup)
            }
            _ => Err(ParseError::UnknownVerb { name: found(), at }),
        }
    }

    fn gather(&mut self, start: &BytesStart<'_>, empty: bool, at: u64) -> Result<Verb, ParseError> {
        const VERB: &str = "Gather";
        let mut action = None;
        // Twilio's documented defaults for a missing attribute.
        let mut gather = Gather {
            action: String::new(),
            timeout: 5,
            num_digits: None,
            finish_on_key: "#".to_owned(),
            action_on_empty_result: false,
            children: Vec::new(),
        };
        for attribute in attributes(start, at) {
            match attribute? {
                (b"input", value) if value == "dtmf" => {}
                (b"input", value) => {
                    let expected = "only input=dtmf is supported";
                    return Err(invalid("input", value, VERB, expected, at));
                }
                (b"action", value) => action = Some(value),
                (b"method", value) => post_only(value, VERB, at)?,
                (b"timeout", value) => gather.timeout = number(value, "timeout", VERB, at)?,
                (b"numDigits", value) => {
                    gather.num_digits = Some(number(value, "numDigits", VERB, at)?);
                }
                (b"finishOnKey", value) => gather.finish_on_key = value,
                (b"actionOnEmptyResult", value) => {
                    gather.action_on_empty_result = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            let expected = "expected true or false";
                            return Err(invalid("actionOnEmptyResult", value, VERB, expected, at));
                        }
                    };
                }
                (other, _) => return Err(unknown_attribute(other, VERB, at)),
            }
        }
        gather.action = action.ok_or(ParseError::MissingAction { verb: "Gather", at })?;
        if !empty {
            gather.children = self.children(Parent::Gather)?;
        }
        Ok(Verb::Gather(gather))
    }

    /// `<Dial>` with its number as text or in one `<Number>`; `action` required, as for
    /// `<Gather>` (this engine always wants to hear how a dial ended).
    fn dial(&mut self, start: &BytesStart<'_>, empty: bool, at: u64) -> Result<Verb, ParseError> {
        const VERB: &str = "Dial";
        let mut action = None;
        // Twilio's default ring time.
        let mut dial = Dial { number: String::new(), action: String::new(), timeout: 30, caller_id: None };
        for attribute in attributes(start, at) {
            match attribute? {
                (b"action", value) => action = Some(value),
                (b"method", value) => post_only(value, VERB, at)?,
                (b"timeout", value) => dial.timeout = number(value, "timeout", VERB, at)?,
                (b"callerId", value) => dial.caller_id = Some(value),
                (other, _) => return Err(unknown_attribute(other, VERB, at)),
            }
        }
        dial.action = action.ok_or(ParseError::MissingAction { verb: VERB, at })?;
        if empty {
            return Ok(Verb::Dial(dial));
        }
        loop {
            let (at, event) = self.next()?;
            let empty = matches!(event, Event::Empty(_));
            match event {
                Event::Start(s) | Event::Empty(s) if s.name().as_ref() == b"Number" => {
                    no_attributes(&s, "Number", at)?;
                    dial.number.push_str(&self.text("Number", empty)?);
                }
                Event::Start(s) | Event::Empty(s) => {
                    let found = String::from_utf8_lossy(s.name().as_ref()).into_owned();
                    return Err(ParseError::UnexpectedElement { found, verb: VERB, at });
                }
                Event::Text(raw) => {
                    let piece = raw.xml10_content().map_err(|e| malformed(e, at))?;
                    check_chars(&piece, at)?;
                    dial.number.push_str(piece.trim());
                }
                Event::GeneralRef(reference) => dial.number.push_str(resolve(&reference, at)?.trim()),
                Event::End(_) => return Ok(Verb::Dial(dial)),
                Event::Comment(_) | Event::PI(_) => {}
                other => return Err(misplaced(&other, VERB, at)),
            }
        }
    }

    /// Reads the text content of `verb` up to its end tag.
    fn text(&mut self, verb: &'static str, empty: bool) -> Result<String, ParseError> {
        let mut text = String::new();
        if empty {
            return Ok(text);
        }
        loop {
            let (at, event) = self.next()?;
            let piece = match event {
                Event::Text(raw) => raw.xml10_content().map_err(|e| malformed(e, at))?,
                Event::CData(raw) => raw.xml10_content().map_err(|e| malformed(e, at))?,
                Event::GeneralRef(reference) => resolve(&reference, at)?,
                Event::End(_) => return Ok(text),
                Event::Comment(_) | Event::PI(_) => continue,
                Event::Start(start) | Event::Empty(start) => {
                    let found = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    return Err(ParseError::UnexpectedElement { found, verb, at });
                }
                other => return Err(misplaced(&other, verb, at)),
            };
            check_chars(&piece, at)?;
            text.push_str(&piece);
        }
    }

    /// Reads the content of a verb that has none (whitespace and comments aside).
    fn nothing(&mut self, verb: &'static str, empty: bool) -> Result<(), ParseError> {
        if !empty {
            self.children(Parent::Empty(verb))?;
        }
        Ok(())
    }
}

/// The attributes of `start` as (name, value), values unescaped as an XML parser would.
fn attributes<'s>(
    start: &'s BytesStart<'_>,
    at: u64,
) -> impl Iterator<Item = Result<(&'s [u8], String), ParseError>> + 's {
    start.attributes().map(move |attribute| {
        let attribute = attribute.map_err(|e| malformed(e, at))?;
        let value = attribute_value(&attribute.value, at)?;
        Ok((attribute.key.into_inner(), value))
    })
}

/// For elements TwiML gives no attributes.
fn no_attributes(start: &BytesStart<'_>, verb: &'static str, at: u64) -> Result<(), ParseError> {
    match attributes(start, at).next().transpose()? {
        Some((name, _)) => Err(unknown_attribute(name, verb, at)),
        None => Ok(()),
    }
}

/// XML 1.0 attribute-value normalisation (literal tab, CR, LF and CR LF each become a space;
/// their character references stay), then unescaping.
fn attribute_value(raw: &[u8], at: u64) -> Result<String, ParseError> {
    let raw = std::str::from_utf8(raw).map_err(|e| malformed(e, at))?;
    if raw.contains('<') {
        return Err(malformed("`<` in an attribute value", at));
    }
    let normalized = if raw.contains(['\t', '\n', '\r']) {
        Cow::Owned(raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " "))
    } else {
        Cow::Borrowed(raw)
    };
    let value = unescape(&normalized).map_err(|e| malformed(e, at))?;
    check_chars(&value, at)?;
    Ok(value.into_owned())
}

/// A character or predefined entity reference (`&#38;`, `&amp;`) as text.
fn resolve(reference: &BytesRef<'_>, at: u64) -> Result<Cow<'static, str>, ParseError> {
    if let Some(c) = reference.resolve_char_ref().map_err(|e| malformed(e, at))? {
        return Ok(Cow::Owned(c.to_string()));
    }
    let name = reference.decode().map_err(|e| malformed(e, at))?;
    resolve_predefined_entity(&name).map(Cow::Borrowed).ok_or_else(|| malformed(format!("unknown entity &{name};"), at))
}

fn check_chars(text: &str, at: u64) -> Result<(), ParseError> {
    match text.chars().find(|&c| !is_xml_char(c)) {
        Some(c) => Err(malformed(format!("character U+{:04X} is not allowed in XML", u32::from(c)), at)),
        None => Ok(()),
    }
}

fn is_blank(text: &[u8]) -> bool {
    text.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn number(value: String, attribute: &'static str, verb: &'static str, at: u64) -> Result<u32, ParseError> {
    value.parse().map_err(|_| invalid(attribute, value, verb, "expected a whole number", at))
}

fn post_only(value: String, verb: &'static str, at: u64) -> Result<(), ParseError> {
    if value == "POST" { Ok(()) } else { Err(invalid("method", value, verb, "only method=POST is supported", at)) }
}

fn invalid(attribute: &'static str, value: String, verb: &'static str, expected: &'static str, at: u64) -> ParseError {
    ParseError::InvalidValue { attribute, value, verb, expected, at }
}

fn unknown_attribute(name: &[u8], verb: &'static str, at: u64) -> ParseError {
    let attribute = String::from_utf8_lossy(name).into_owned();
    ParseError::UnknownAttribute { attribute, verb, at }
}

fn malformed(message: impl ToString, at: u64) -> ParseError {
    ParseError::Malformed { message: message.to_string(), at }
}

/// An event that has no place inside `parent` at all (a declaration or DOCTYPE, end of input).
fn misplaced(event: &Event<'_>, parent: &str, at: u64) -> ParseError {
    match event {
        Event::Eof => malformed(format!("<{parent}> is not closed"), at),
        other => malformed(format!("unexpected {} inside <{parent}>", describe(other)), at),
    }
}

/// What an event is, for error messages.
fn describe(event: &Event<'_>) -> String {
    match event {
        Event::Start(e) | Event::Empty(e) => {
            format!("<{}>", String::from_utf8_lossy(e.name().as_ref()))
        }
        Event::End(e) => format!("</{}>", String::from_utf8_lossy(e.name().as_ref())),
        Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => "text".to_owned(),
        Event::Decl(_) => "an XML declaration".to_owned(),
        Event::DocType(_) => "a DOCTYPE".to_owned(),
        Event::Comment(_) => "a comment".to_owned(),
        Event::PI(_) => "a processing instruction".to_owned(),
        Event::Eof => "end of input".to_owned(),
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

    fn error(body: &str) -> String {
        parse(&doc(body)).unwrap_err().to_string()
    }

    #[test]
    fn attributes_may_come_in_any_order_and_quoting() {
        let xml = r#"
            <Response>
              <!-- menu -->
              <Gather finishOnKey='' numDigits="1" timeout="7" method="POST"
                      actionOnEmptyResult="true" action="/step?a=1&amp;b=2" input="dtmf">
                <Say voice="Polly.Mizuki" language="ja-JP">はい</Say>
                <Pause length="2"/>
                <Play>https://cdn.example/a.mp3</Play>
              </Gather>
              <Redirect method="POST">/next</Redirect>
              <Hangup></Hangup>
            </Response>
        "#;
        let expected = vec![
            Verb::Gather(Gather {
                action: "/step?a=1&b=2".into(),
                timeout: 7,
                num_digits: Some(1),
                finish_on_key: String::new(),
                action_on_empty_result: true,
                children: vec![
                    Verb::Say {
                        text: "はい".into(),
                        language: Some("ja-JP".into()),
                        voice: Some("Polly.Mizuki".into()),
                    },
                    Verb::Pause { length: 2 },
                    Verb::Play { url: "https://cdn.example/a.mp3".into() },
                ],
            }),
            Verb::Redirect { url: "/next".into() },
            Verb::Hangup,
        ];
        assert_eq!(parse(xml), Ok(expected));
    }

    #[test]
    fn missing_attributes_take_twilios_defaults() {
        let xml = doc(r#"<Gather action="/step"/><Pause/><Redirect>/next</Redirect>"#);
        let expected = vec![
            Verb::Gather(Gather {
                action: "/step".into(),
                timeout: 5,
                num_digits: None,
                finish_on_key: "#".into(),
                action_on_empty_result: false,
                children: vec![],
            }),
            Verb::Pause { length: 1 },
            Verb::Redirect { url: "/next".into() },
        ];
        assert_eq!(parse(&xml), Ok(expected));
    }

    #[test]
    fn an_empty_response_has_no_verbs() {
        assert_eq!(parse("<Response/>"), Ok(vec![]));
        assert_eq!(parse(&doc("\n  \n")), Ok(vec![]));
    }

    #[test]
    fn text_is_read_as_an_xml_parser_reads_it() {
        let xml = doc(concat!(
            "<Say>  a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#x3042;&#12354; </Say>",
            "<Say><![CDATA[<raw> & ]]> tail<!-- note --></Say>",
            "<Say>line\r\nbreak\rand &#13;kept</Say>",
            "<Say></Say><Say/>",
        ));
        let expected = vec![
            say(r#"  a <b> & "c" 'd' ああ "#),
            say("<raw> &  tail"),
            say("line\nbreak\nand \rkept"),
            say(""),
            say(""),
        ];
        assert_eq!(parse(&xml), Ok(expected));
    }

    #[test]
    fn attribute_whitespace_is_normalised_but_references_are_kept() {
        let xml = doc("<Say language=\"a\tb\r\nc\nd&#10;e&#9;f\"></Say>");
        let expected = Verb::Say { text: String::new(), language: Some("a b c d\ne\tf".into()), voice: None };
        assert_eq!(parse(&xml), Ok(vec![expected]));
    }

    #[test]
    fn unknown_verbs_are_named_with_their_offset() {
        // Offsets count from the start of the document: `<Response>` is bytes 0..10 here,
        // `<Say>hi</Say>` 10..23; below, the 38-byte declaration comes first.
        assert_eq!(
            parse("<Response><Say>hi</Say><Conference>x</Conference></Response>").unwrap_err().to_string(),
            "unknown verb <Conference> at byte 23"
        );
        assert_eq!(error("<Record/>"), "unknown verb <Record> at byte 48");
    }

    #[test]
    fn a_dial_takes_its_number_as_text_or_in_number_and_needs_an_action() {
        let dial = |number: &str, timeout, caller_id: Option<&str>| {
            Verb::Dial(Dial {
                number: number.into(),
                action: "/a".into(),
                timeout,
                caller_id: caller_id.map(Into::into),
            })
        };
        assert_eq!(
            parse(&doc(
                r#"<Dial action="/a" timeout="20" callerId="+815012345678"><Number>+81312345678</Number></Dial>"#
            )),
            Ok(vec![dial("+81312345678", 20, Some("+815012345678"))])
        );
        assert_eq!(parse(&doc(r#"<Dial action="/a"> +81312345678 </Dial>"#)), Ok(vec![dial("+81312345678", 30, None)]));
        assert_eq!(
            error(r#"<Dial>+81312345678</Dial>"#),
            "<Dial> at byte 48 has no action (this engine always posts the dial's result to one)"
        );
        assert!(error(r#"<Dial action="/a" record="true"/>"#).starts_with("unknown attribute record on <Dial>"));
        assert!(error(r#"<Dial action="/a"><Sip>x</Sip></Dial>"#).starts_with("<Sip> is not allowed inside <Dial>"));
    }

    #[test]
    fn unknown_attributes_are_refused() {
        assert_eq!(
            error(r#"<Gather action="/a" speechTimeout="auto"/>"#),
            "unknown attribute speechTimeout on <Gather> at byte 48"
        );
        assert!(error(r#"<Play loop="2">/a.mp3</Play>"#).starts_with("unknown attribute loop on <Play>"));
        assert!(error(r#"<Hangup reason="x"/>"#).starts_with("unknown attribute reason on <Hangup>"));
        assert!(
            parse(r#"<Response xmlns="urn:x"/>"#)
                .unwrap_err()
                .to_string()
                .starts_with("unknown attribute xmlns on <Response>")
        );
    }

    #[test]
    fn gather_holds_only_say_play_and_pause() {
        assert_eq!(
            error(r#"<Gather action="/a"><Hangup/></Gather>"#),
            "<Gather> may only contain <Say>, <Play>, <Pause>; found <Hangup> at byte 68"
        );
        assert!(
            error(r#"<Gather action="/a"><Gather action="/b"/></Gather>"#).starts_with("<Gather> may only contain")
        );
        assert!(
            error(r#"<Gather action="/a"><Redirect>/b</Redirect></Gather>"#).starts_with("<Gather> may only contain")
        );
    }

    #[test]
    fn text_verbs_hold_no_elements_and_empty_verbs_hold_nothing() {
        assert_eq!(error(r#"<Say>a<break time="1s"/>b</Say>"#), "<break> is not allowed inside <Say> at byte 54");
        assert!(error("<Pause><Say>x</Say></Pause>").starts_with("<Say> is not allowed inside <Pause>"));
        assert!(error("<Hangup>now</Hangup>").starts_with("unexpected text inside <Hangup>"));
        assert_eq!(parse(&doc("<Pause> </Pause>")), Ok(vec![Verb::Pause { length: 1 }]));
    }

    #[test]
    fn stray_text_between_verbs_is_refused() {
        assert_eq!(error("<Say>a</Say>hello<Hangup/>"), "unexpected text inside <Response> at byte 60");
        assert!(error(r#"<Gather action="/a">&amp;</Gather>"#).starts_with("unexpected text inside <Gather>"));
        assert_eq!(parse(&doc("&#32;<Hangup/>&#10;")), Ok(vec![Verb::Hangup]));
    }

    #[test]
    fn only_post_and_dtmf_are_accepted() {
        assert_eq!(
            error(r#"<Redirect method="GET">/a</Redirect>"#),
            r#"invalid method="GET" on <Redirect> at byte 48: only method=POST is supported"#
        );
        assert!(error(r#"<Gather action="/a" method="GET"/>"#).ends_with("only method=POST is supported"));
        assert!(error(r#"<Gather action="/a" input="speech"/>"#).ends_with("only input=dtmf is supported"));
    }

    #[test]
    fn values_must_have_the_right_shape() {
        assert_eq!(
            error(r#"<Pause length="two"/>"#),
            r#"invalid length="two" on <Pause> at byte 48: expected a whole number"#
        );
        assert!(error(r#"<Gather action="/a" timeout="-1"/>"#).starts_with("invalid timeout=\"-1\""));
        assert!(error(r#"<Gather action="/a" numDigits=""/>"#).starts_with("invalid numDigits=\"\""));
        assert!(error(r#"<Gather action="/a" actionOnEmptyResult="yes"/>"#).ends_with("expected true or false"));
    }

    #[test]
    fn a_gather_needs_an_action() {
        assert_eq!(
            error(r#"<Gather timeout="3"><Say>x</Say></Gather>"#),
            "<Gather> at byte 48 has no action (this engine always posts keys to one)"
        );
    }

    #[test]
    fn the_root_must_be_response() {
        assert_eq!(parse("<Reply/>").unwrap_err().to_string(), "missing root <Response>: found <Reply> at byte 0");
        assert!(parse("").unwrap_err().to_string().contains("found end of input"));
        assert!(parse(DECL).unwrap_err().to_string().contains("found end of input"));
        assert!(parse("hello").unwrap_err().to_string().contains("found text"));
        assert!(matches!(parse(&format!("{}<Response/>", doc(""))), Err(ParseError::AfterRoot { .. })));
        assert_eq!(parse(&format!("{}\n<!-- end -->\n", doc(""))), Ok(vec![]));
    }

    #[test]
    fn malformed_xml_is_reported_with_an_offset() {
        for bad in [
            doc("<Say>a</Play>"),
            doc("<Say>a"),
            format!("{DECL}<Response><Say>a</Say>"),
            doc("<Say>&nbsp;</Say>"),
            doc("<Say>&#1;</Say>"),
            doc("<Say>\u{1}</Say>"),
            doc(r#"<Say language="a" language="b"/>"#),
            doc(r#"<Say language="a<b"/>"#),
            format!("{DECL}<Response><Say"),
            format!("{DECL}<!DOCTYPE Response><Response/>"),
        ] {
            match parse(&bad) {
                Err(ParseError::Malformed { .. }) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert!(parse(&doc("<Say>&nbsp;</Say>")).unwrap_err().to_string().contains("&nbsp;"));
    }
}
