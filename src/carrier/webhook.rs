//! A carrier's webhooks, sent to a TwiML server: the call is answered (`/twilio/voice`), each
//! gather posts its keys to its `action`, and a status callback closes the call, every request
//! signed as Twilio signs them.

use std::time::Duration;

use crate::carrier::signature::{self, AuthToken, SIGNATURE_HEADER};
use crate::twiml;
use crate::twiml::phone::{self, Heard, Next};
use crate::types::CallSid;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("request to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} answered TwiML this phone cannot play: {source}")]
    Twiml { url: String, source: twiml::ParseError },
    #[error("the call did not end after {0} turns")]
    TooLong(usize),
}

/// Sends signed form posts.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    token: std::sync::Arc<AuthToken>,
    /// `(public, actual)`: URLs under `public` are signed as they are but sent to `actual`,
    /// as a TLS proxy in front of the server would forward them.
    proxy: Option<(String, String)>,
}

impl WebhookClient {
    pub fn new(token: AuthToken) -> Self {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15)).build().expect("http client");
        WebhookClient { http, token: std::sync::Arc::new(token), proxy: None }
    }

    /// Signs URLs under `public` but sends them to the same path under `actual`.
    pub fn behind_proxy(mut self, public: &str, actual: &str) -> Self {
        self.proxy = Some((public.trim_end_matches('/').into(), actual.trim_end_matches('/').into()));
        self
    }

    /// Posts `params` to `url`, signed; returns the body of a 2xx answer.
    pub async fn post(&self, url: &str, params: &[(String, String)]) -> Result<String, WebhookError> {
        let sig = signature::sign(&self.token, url, params);
        let target = match &self.proxy {
            Some((public, actual)) if url.starts_with(public.as_str()) => format!("{actual}{}", &url[public.len()..]),
            _ => url.to_string(),
        };
        let resp = self
            .http
            .post(&target)
            .header(SIGNATURE_HEADER, sig)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(params).expect("form encoding"))
            .send()
            .await
            .map_err(|source| WebhookError::Http { url: url.into(), source })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|source| WebhookError::Http { url: url.into(), source })?;
        if !status.is_success() {
            return Err(WebhookError::Status { url: url.into(), status: status.as_u16(), body });
        }
        Ok(body)
    }
}

/// Who is calling whom.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub call_sid: CallSid,
    pub from: String,
    pub to: String,
    /// `inbound` or `outbound-api`.
    pub direction: String,
}

impl CallInfo {
    /// The parameters Twilio sends with every request of the call.
    pub fn params(&self) -> Vec<(String, String)> {
        vec![
            ("AccountSid".into(), "AC00000000000000000000000000000000".into()),
            ("CallSid".into(), self.call_sid.to_string()),
            ("From".into(), self.from.clone()),
            ("To".into(), self.to.clone()),
            ("Direction".into(), self.direction.clone()),
            ("CallStatus".into(), "in-progress".into()),
            ("ApiVersion".into(), "2010-04-01".into()),
        ]
    }
}

/// How a played call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The server hung up (the flow ended).
    Completed,
    /// The caller hung up (keys ran out).
    CallerHungUp,
}

/// A new call id in Twilio's shape: `CA` and 32 hex digits.
pub fn new_call_sid() -> CallSid {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    CallSid::parse(&format!("CA{}", hex::encode(bytes))).expect("CA and 32 hex digits is a call id")
}

/// Someone on the line: hears each document the server answers and decides what to press.
/// Any `FnMut(&Heard) -> Option<String>` is a caller that answers at once.
pub trait Caller {
    /// The keys to press at the gather just heard (`Some("")` is silence, `None` hangs up).
    /// Called for every document heard, gathers or not; keys are used only at a gather.
    fn answer(&mut self, heard: &Heard) -> Option<String>;

    /// How long the caller takes at a gather before `keys` reach the carrier (listening,
    /// thinking, pressing, or letting the gather time out). Nothing by default.
    fn delay(&mut self, _heard: &Heard, _keys: Option<&str>) -> Duration {
        Duration::ZERO
    }

    /// How a `<Dial>` to `dial.number` ends, as the carrier's `DialCallStatus`: `completed`
    /// (someone answered and the two spoke), `no-answer`, `busy` or `failed`. Nobody answers
    /// by default.
    fn dial(&mut self, _dial: &twiml::Dial) -> String {
        "no-answer".into()
    }
}

impl<F: FnMut(&Heard) -> Option<String>> Caller for F {
    fn answer(&mut self, heard: &Heard) -> Option<String> {
        self(heard)
    }
}

/// Plays a whole call: answers at `voice_url`, then hands every document heard to `caller`,
/// which returns the keys to press at a gather (`Some("")` is silence, `None` hangs up).
/// Finally posts a `completed` status callback to `status_url`, as the carrier would.
pub async fn play_call(
    client: &WebhookClient,
    voice_url: &str,
    status_url: &str,
    call: &CallInfo,
    mut caller: impl FnMut(&Heard) -> Option<String>,
) -> Result<Ending, WebhookError> {
    let base = call.params();
    let ending = converse(client, voice_url, &base, &[], &mut caller).await?;
    let mut done = base.clone();
    done.retain(|(k, _)| k != "CallStatus");
    done.push(("CallStatus".into(), "completed".into()));
    done.push(("CallDuration".into(), "60".into()));
    client.post(status_url, &done).await?;
    Ok(ending)
}

/// The answered part of a call: posts `params` and `on_answer` (say `AnsweredBy`) to
/// `voice_url`, then follows the TwiML as a phone does, `caller` pressing keys at each gather,
/// every later request carrying `params` (and `Digits`). Returns when either side hangs up;
/// a failed request ends it with the error (the carrier would play its error message and
/// hang up). Posts no status callback: that is the caller's carrier's business.
pub async fn converse(
    client: &WebhookClient,
    voice_url: &str,
    params: &[(String, String)],
    on_answer: &[(String, String)],
    caller: &mut impl Caller,
) -> Result<Ending, WebhookError> {
    const MAX_TURNS: usize = 500;
    let first: Vec<(String, String)> = params.iter().chain(on_answer).cloned().collect();
    let mut doc = client.post(voice_url, &first).await?;
    let mut url = voice_url.to_string();
    let mut turns = 0;
    loop {
        turns += 1;
        if turns > MAX_TURNS {
            return Err(WebhookError::TooLong(MAX_TURNS));
        }
        let verbs = twiml::parse(&doc).map_err(|source| WebhookError::Twiml { url: url.clone(), source })?;
        let heard = phone::listen(&verbs);
        let keys = caller.answer(&heard);
        let (next_url, digits) = match &heard.next {
            Next::Hangup => return Ok(Ending::Completed),
            Next::Redirect(u) => (u.clone(), None),
            Next::Dial(dial) => {
                let status = caller.dial(dial);
                let mut params = params.to_vec();
                params.push(("DialCallStatus".into(), status.clone()));
                if status == "completed" {
                    params.push(("DialCallSid".into(), new_call_sid().to_string()));
                    params.push(("DialCallDuration".into(), "60".into()));
                }
                url = resolve(voice_url, &dial.action);
                doc = client.post(&url, &params).await?;
                continue;
            }
            Next::Gather { gather, after } => {
                let wait = caller.delay(&heard, keys.as_deref());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let Some(keys) = keys else { return Ok(Ending::CallerHungUp) };
                let digits = phone::press(gather, &keys);
                if digits.is_empty() && !gather.action_on_empty_result {
                    match phone::listen(after).next {
                        Next::Redirect(u) => (u, None),
                        _ => return Ok(Ending::Completed),
                    }
                } else {
                    (gather.action.clone(), Some(digits))
                }
            }
        };
        let mut params = params.to_vec();
        if let Some(d) = digits {
            params.push(("Digits".into(), d));
        }
        url = resolve(voice_url, &next_url);
        doc = client.post(&url, &params).await?;
    }
}

/// An action URL as the carrier resolves it against the document's URL.
fn resolve(base: &str, url: &str) -> String {
    match url::Url::parse(base).and_then(|b| b.join(url)) {
        Ok(u) => u.to_string(),
        Err(_) => url.to_string(),
    }
}
