//! TwiML, the XML a TwiML carrier (Twilio and compatible providers) executes on a call.
//!
//! One document model, [`Verb`], both ways: [`render`] writes it with quick-xml (always
//! well-formed, text escaped), [`parse`] reads a document back (unknown verbs or attributes are
//! errors). The engine's [`crate::response::Response`] becomes verbs in [`from_response`];
//! [`crate::phone`] plays verbs as a caller would hear them.

mod interpret;
mod render;

pub use interpret::{ParseError, parse};
pub use render::render;

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
