//! A phone: plays TwiML as a caller hears it and presses keys as a carrier collects them.
//! `ivr call` walks flows with it, so a terminal hears exactly what a phone would get.

use crate::twiml::{Dial, Gather, Verb};

/// What a caller hears from one TwiML document, and what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// Spoken text, `[audio URL]` and `[pause Ns]`, in order.
    pub speech: Vec<String>,
    pub next: Next,
}

/// What the phone does after the speech.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Waits for keys; `after` is what plays if the gather ends empty and its action is not
    /// called for an empty result.
    Gather { gather: Gather, after: Vec<Verb> },
    /// Fetches the next document from this URL.
    Redirect(String),
    /// Is put through to another number; how that ends is posted to the dial's action.
    Dial(Dial),
    /// The call is over (a `<Hangup/>`, or the end of the document).
    Hangup,
}

/// Plays a document until it waits for keys, redirects or ends.
pub fn listen(verbs: &[Verb]) -> Heard {
    let mut speech = Vec::new();
    for (i, v) in verbs.iter().enumerate() {
        match v {
            Verb::Say { .. } | Verb::Play { .. } | Verb::Pause { .. } => speech.push(spoken(v)),
            Verb::Gather(g) => {
                speech.extend(g.children.iter().map(spoken));
                return Heard { speech, next: Next::Gather { gather: g.clone(), after: verbs[i + 1..].to_vec() } };
            }
            Verb::Redirect { url } => return Heard { speech, next: Next::Redirect(url.clone()) },
            Verb::Dial(d) => return Heard { speech, next: Next::Dial(d.clone()) },
            Verb::Hangup => break,
        }
    }
    Heard { speech, next: Next::Hangup }
}

fn spoken(v: &Verb) -> String {
    match v {
        Verb::Say { text, .. } => text.clone(),
        Verb::Play { url } => format!("[audio {url}]"),
        Verb::Pause { length } => format!("[pause {length}s]"),
        _ => String::new(),
    }
}

/// The `Digits` a carrier posts when the caller types `keys` at `gather`: input stops at the
/// finish key (not included) or after `numDigits` keys; the rest is lost, as on a real line.
pub fn press(gather: &Gather, keys: &str) -> String {
    let mut digits = String::new();
    for k in keys.chars() {
        if gather.finish_on_key.contains(k) && !gather.finish_on_key.is_empty() {
            break;
        }
        digits.push(k);
        if gather.num_digits.is_some_and(|n| digits.chars().count() as u32 >= n) {
            break;
        }
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(num_digits: Option<u32>, finish: &str) -> Gather {
        Gather {
            action: "/a".into(),
            timeout: 5,
            num_digits,
            finish_on_key: finish.into(),
            action_on_empty_result: true,
            children: vec![],
        }
    }

    #[test]
    fn keys_stop_at_the_finish_key_or_the_digit_limit() {
        assert_eq!(press(&gather(Some(3), "#"), "365#"), "365");
        assert_eq!(press(&gather(Some(3), "#"), "97#"), "97");
        assert_eq!(press(&gather(Some(1), ""), "12"), "1");
        assert_eq!(press(&gather(Some(1), ""), "#"), "#");
        assert_eq!(press(&gather(None, "#"), ""), "");
    }

    #[test]
    fn a_dial_is_heard_after_the_speech_before_it() {
        let dial = Dial { number: "+81312345678".into(), action: "/a".into(), timeout: 20, caller_id: None };
        let verbs = vec![Verb::Say { text: "a".into(), language: None, voice: None }, Verb::Dial(dial.clone())];
        let heard = listen(&verbs);
        assert_eq!(heard.speech, vec!["a"]);
        assert_eq!(heard.next, Next::Dial(dial));
    }

    #[test]
    fn a_document_is_heard_up_to_its_gather() {
        let verbs = vec![
            Verb::Say { text: "a".into(), language: None, voice: None },
            Verb::Gather(Gather {
                children: vec![Verb::Say { text: "b".into(), language: None, voice: None }],
                ..gather(Some(1), "")
            }),
            Verb::Redirect { url: "/a".into() },
        ];
        let heard = listen(&verbs);
        assert_eq!(heard.speech, vec!["a", "b"]);
        assert!(matches!(heard.next, Next::Gather { ref after, .. } if after.len() == 1));
    }
}
