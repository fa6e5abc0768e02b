//! Twilio's REST API (version 2010-04-01), as much as the product uses: send an SMS (the
//! processing number), place a call (the daily health check), read a call back (to reconcile
//! after a crash), list the calls placed to a number (to find a call whose id was lost in a
//! crash), and list the SMS sent to a number (to learn whether a send whose answer was lost went
//! out).
//!
//! ```no_run
//! # async fn f(settings: ivr::config::Settings) -> Result<(), ivr::carrier::twilio::TwilioError> {
//! use ivr::carrier::twilio::{CallRequest, MachineDetection, TwilioClient};
//! let twilio = TwilioClient::from_settings(&settings.carrier)?;
//! let mut call = CallRequest::new("+819012345678", "+815012345678", "https://ivr.example.jp/twilio/voice")
//!     .with_status_callback("https://ivr.example.jp/twilio/status");
//! call.machine_detection = Some(MachineDetection::Enable);
//! let created = twilio.create_call(&call).await?;
//! println!("{} is {:?}", created.sid, created.status);
//! # Ok(()) }
//! ```
//!
//! # Retries
//! Each method retries by itself, per its [`RetryPolicy`] (exponential backoff, full jitter,
//! bounded tries), but only where a second request cannot do harm:
//! - [`TwilioClient::fetch_call`], [`TwilioClient::list_calls`] and
//!   [`TwilioClient::list_messages`] read, so any retryable
//!   failure is tried again: 429, 5xx, network errors, timeouts.
//! - [`TwilioClient::create_call`] and [`TwilioClient::send_message`] create something, and
//!   Twilio's API takes no idempotency key: a request that timed out may have placed the call
//!   anyway, and sending it again would ring the patient twice (or send a second SMS). They
//!   are retried only when Twilio certainly did not act ([`TwilioError::is_safe_to_resend`]):
//!   the connection was never made, or Twilio answered 429 or 503. After any other failure the
//!   caller must not resend blindly; it learns the outcome from the status callbacks (give each
//!   attempt its own id in the `Url`/`StatusCallback` query so a late callback can be matched).
//!
//! A `Retry-After` from Twilio is waited out when it is within the policy's `max_delay`, and
//! otherwise returned in the error for the caller to schedule.
//!
//! # Privacy
//! The auth token only ever goes into the `Authorization` header. Phone numbers are logged
//! masked (`+8190****5678`), and Twilio's error messages, which quote numbers, are masked too.

mod error;
mod resources;
mod retry;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

pub use error::{DeliveryError, TwilioError, codes};
pub use resources::{
    AnsweredBy, CallEvent, CallPage, CallRequest, CallResource, CallStatus, MachineDetection, MessagePage,
    MessageRequest, MessageResource, MessageStatus, Sender,
};
pub use retry::RetryPolicy;

use crate::telemetry::mask_phone;
use crate::types::{AccountSid, CallSid};
use retry::Replay;

/// Twilio's production API.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// How long to wait for a connection. Failing here is safe to retry: nothing was sent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a whole answer. Twilio answers in well under a second; past this the
/// request's outcome is unknown.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for one Twilio account. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    api_base: String,
    account_sid: AccountSid,
    auth_token: SecretString,
    timeout: Duration,
    retry: RetryPolicy,
}

impl TwilioClient {
    /// A client for `account_sid` (`AC…`) authenticating with its auth token (HTTP basic auth),
    /// talking to `api_base` ([`DEFAULT_API_BASE`], or a test server), with the default
    /// [`RetryPolicy`] and a 15 s timeout.
    pub fn new(
        api_base: &str,
        account_sid: &AccountSid,
        auth_token: impl Into<SecretString>,
    ) -> Result<Self, TwilioError> {
        let base = url::Url::parse(api_base).map_err(|e| TwilioError::Config(format!("api_base '{api_base}': {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(TwilioError::Config(format!("api_base '{api_base}' is not an http(s) URL")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| TwilioError::Config(format!("HTTP client: {e}")))?;
        Ok(TwilioClient {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            account_sid: account_sid.clone(),
            auth_token: auth_token.into(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        })
    }

    /// The client for the `[carrier]` settings; an error names the missing setting.
    pub fn from_settings(carrier: &super::CarrierSettings) -> Result<Self, TwilioError> {
        let missing = |key| TwilioError::Config(format!("carrier.{key} is not set"));
        let sid = carrier.account_sid.as_ref().ok_or_else(|| missing("account_sid"))?;
        let token = carrier.auth_token.clone().ok_or_else(|| missing("auth_token"))?;
        TwilioClient::new(&carrier.api_base, sid, token)
    }

    /// Uses `policy` for retries ([`RetryPolicy::never`] leaves them to the caller).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Gives up on a request (and counts it as a timeout) after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends through `http` instead of the client's own (shared pools, proxies, extra headers).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The account this client acts for.
    pub fn account_sid(&self) -> &AccountSid {
        &self.account_sid
    }

    /// Sends an SMS: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`. Success means
    /// Twilio accepted it (`queued`, `accepted`…); delivery is reported later to the status
    /// callback, with a 30xxx code if it fails. Refusals such as 21610 (the patient replied STOP)
    /// or 21614 (a landline) come back as [`TwilioError`]s. Retried only when certainly not sent.
    pub async fn send_message(&self, req: &MessageRequest) -> Result<MessageResource, TwilioError> {
        let url = self.url("Messages.json");
        let form = req.form();
        tracing::debug!(to = %mask_phone(&req.to), "sending SMS through Twilio");
        let sent: MessageResource = retry::run(self.retry, "send_message", Replay::OnlyIfNotReceived, || {
            self.send(self.http.post(&url).form(&form))
        })
        .await?;
        tracing::debug!(to = %mask_phone(&req.to), sid = %sent.sid, status = ?sent.status, "SMS accepted by Twilio");
        Ok(sent)
    }

    /// Places a call: `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`. Retried only when
    /// certainly not placed: a call that may have been placed is never placed again.
    pub async fn create_call(&self, req: &CallRequest) -> Result<CallResource, TwilioError> {
        let url = self.url("Calls.json");
        let form = req.form();
        tracing::debug!(to = %mask_phone(&req.to), "placing a call through Twilio");
        let call: CallResource = retry::run(self.retry, "create_call", Replay::OnlyIfNotReceived, || {
            self.send(self.http.post(&url).form(&form))
        })
        .await?;
        tracing::debug!(to = %mask_phone(&req.to), sid = %call.sid, status = ?call.status, "call placed by Twilio");
        Ok(call)
    }

    /// Reads a call: `GET /2010-04-01/Accounts/{AccountSid}/Calls/{sid}.json`, to learn how a
    /// call ended when its status callback was missed (after a restart, say). A read, so it is
    /// retried on any retryable failure.
    pub async fn fetch_call(&self, sid: &CallSid) -> Result<CallResource, TwilioError> {
        let url = self.url(&format!("Calls/{sid}.json"));
        retry::run(self.retry, "fetch_call", Replay::Idempotent, || self.send(self.http.get(&url))).await
    }

    /// The calls placed to `to` since `since`, newest first: `GET
    /// /2010-04-01/Accounts/{AccountSid}/Calls.json?To=…&PageSize=50`, to find a call whose id
    /// was never recorded (the process died between the request and Twilio's answer). `since` is
    /// applied here, on `date_created`, with a minute's margin for clocks: Twilio's own
    /// `StartTime` filter would leave out a call still queued or ringing (it has no `start_time`
    /// yet), the very one that must be found. Only the newest 50 calls to that number are read.
    /// A read, so it is retried on any retryable failure.
    pub async fn list_calls(
        &self,
        to: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CallResource>, TwilioError> {
        let url = self.url("Calls.json");
        let query = [("To", to), ("PageSize", "50")];
        tracing::debug!(to = %mask_phone(to), "listing the calls placed through Twilio");
        let page: CallPage =
            retry::run(self.retry, "list_calls", Replay::Idempotent, || self.send(self.http.get(&url).query(&query)))
                .await?;
        let margin = chrono::Duration::minutes(1);
        Ok(page.calls.into_iter().filter(|c| c.created().is_none_or(|t| t >= since - margin)).collect())
    }

    /// The messages sent to `to` since `since`, newest first: `GET
    /// /2010-04-01/Accounts/{AccountSid}/Messages.json?To=…&PageSize=50`, to learn whether a send
    /// whose answer was lost (a crash, a time-out) reached Twilio before sending it again.
    /// `since` is applied here, on `date_created`, with a minute's margin for clocks: Twilio's
    /// own `DateSent` filter would leave out a message still queued (it has no `date_sent` yet),
    /// the very one that must not be sent twice. Only the newest 50 messages to that number are
    /// read. A read, so it is retried on any retryable failure.
    pub async fn list_messages(
        &self,
        to: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<MessageResource>, TwilioError> {
        let url = self.url("Messages.json");
        let query = [("To", to), ("PageSize", "50")];
        tracing::debug!(to = %mask_phone(to), "listing the SMS sent through Twilio");
        let page: MessagePage = retry::run(self.retry, "list_messages", Replay::Idempotent, || {
            self.send(self.http.get(&url).query(&query))
        })
        .await?;
        let margin = chrono::Duration::minutes(1);
        Ok(page.messages.into_iter().filter(|m| m.created().is_none_or(|t| t >= since - margin)).collect())
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/2010-04-01/Accounts/{}/{tail}", self.api_base, self.account_sid)
    }

    /// One try: authenticate, send, and read the answer as a resource or an error.
    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, TwilioError> {
        let response = request
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let body = response.text().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            return Err(TwilioError::from_answer(status, retry_after, &body));
        }
        serde_json::from_str(&body)
            .map_err(|e| TwilioError::Decode { status, detail: error::mask_numbers(&e.to_string()) })
    }
}

/// Sorts a transport failure by whether the request may have reached Twilio. A connect timeout
/// is a connect error (nothing sent); any other timeout is not.
fn transport_error(e: reqwest::Error) -> TwilioError {
    if e.is_connect() {
        TwilioError::Connect(e)
    } else if e.is_timeout() {
        TwilioError::Timeout(e)
    } else {
        TwilioError::Network(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "test-auth-token-0123456789abcdef";

    #[test]
    fn settings_without_credentials_name_what_is_missing() {
        let mut carrier = crate::carrier::CarrierSettings {
            kind: None,
            account_sid: None,
            auth_token: None,
            from: None,
            api_base: "https://api.twilio.com".into(),
            simulator_log: None,
            simulator_speed: 1.0,
        };
        let e = TwilioClient::from_settings(&carrier).unwrap_err();
        assert!(e.to_string().contains("carrier.account_sid"), "{e}");
        carrier.account_sid = Some(AccountSid::parse(ACCOUNT).unwrap());
        carrier.auth_token = Some(TOKEN.into());
        assert_eq!(TwilioClient::from_settings(&carrier).unwrap().account_sid(), ACCOUNT);
    }

    #[test]
    fn the_client_never_shows_its_auth_token() {
        let account = AccountSid::parse(ACCOUNT).unwrap();
        let twilio = TwilioClient::new("https://api.twilio.com", &account, TOKEN).unwrap();
        assert!(!format!("{twilio:?}").contains(TOKEN));
        assert!(TwilioClient::new("ftp://api.twilio.com", &account, TOKEN).is_err());
    }
}
