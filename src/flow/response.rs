//! What the engine wants the phone to do next, independent of any carrier: speech to play,
//! then either keys to collect or the end of the call. [`crate::twiml`] renders it.

use serde::{Deserialize, Serialize};

/// One piece of speech.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Speech {
    /// Text for the carrier's text-to-speech, in `language` with an optional `voice`.
    Say { text: String, language: String, voice: Option<String> },
    /// A recorded audio file.
    Play { url: String },
    /// Silence, in seconds.
    Pause { seconds: u32 },
}

/// Keys to collect after (and during) the speech.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gather {
    /// Seconds to wait for a key before the question counts as unanswered.
    pub timeout: u32,
    /// Stop after this many keys (1 for a menu, the maximum digits for a number).
    pub num_digits: u32,
    /// The key that ends a number (`#`); empty for a menu, where every key is an answer.
    pub finish_on_key: String,
}

/// The call put through to another number after the speech; how that ended comes back as
/// the outcome of the transfer (`completed`, `no-answer`, `busy`, `failed`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dial {
    /// The number to ring (E.164).
    pub to: String,
    /// The number the dialled phone shows; `None` for the carrier's default.
    pub caller_id: Option<String>,
    /// Seconds to ring before giving up.
    pub timeout: u32,
}

/// The response to one turn of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub speech: Vec<Speech>,
    /// `Some`: wait for keys. `None`: hang up after the speech (unless it dials).
    pub gather: Option<Gather>,
    /// `Some`: put the call through after the speech, and wait for how that ended.
    #[serde(default)]
    pub dial: Option<Dial>,
}

impl Response {
    /// The apology a caller hears when something failed on our side.
    pub fn apology(language: &str) -> Self {
        let text = if language.starts_with("ja") {
            "申し訳ありません。ただいまシステムに問題が発生しています。後ほど保健所からご連絡します。失礼いたします。"
        } else {
            "We are sorry, the system has a problem right now. The health centre will contact you later. Goodbye."
        };
        Response {
            speech: vec![Speech::Say { text: text.into(), language: language.into(), voice: None }],
            gather: None,
            dial: None,
        }
    }

    /// The spoken text, one line per piece (for terminals and tests).
    pub fn transcript(&self) -> Vec<String> {
        self.speech
            .iter()
            .map(|s| match s {
                Speech::Say { text, .. } => text.clone(),
                Speech::Play { url } => format!("[audio {url}]"),
                Speech::Pause { seconds } => format!("[pause {seconds}s]"),
            })
            .collect()
    }
}
