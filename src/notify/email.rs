//! Processing numbers by e-mail: one plain-text UTF-8 message per send, over SMTP (plain, STARTTLS
//! or implicit TLS), with failures sorted into permanent (give up on this message, try another
//! channel) and transient (try again later).
//!
//! E-mail addresses are personal data: nothing this module logs or puts in an error carries a
//! whole one. [`mask_email`] keeps the first characters of the local part and the domain, which
//! is enough to tell two recipients apart in a log without identifying either.

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, MIME_VERSION_1_0};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How long one SMTP step (connecting, each command) may take. lettre's default is 60 s; a
/// relay that has not answered in 30 s is better retried later than waited on by the outbox.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `[email]` settings: which SMTP server to hand messages to, and as whom.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailSettings {
    /// The SMTP server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Usually 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: u16,
    /// The sender, as a mailbox: `保健所 <noreply@example.jp>` or a bare address.
    pub from: String,
    /// Login for SMTP AUTH; set together with `password`, or neither.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    /// `none`, `starttls` or `tls`.
    pub tls: TlsMode,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text throughout: only for a relay on the same host or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which is required: a server that does not offer
    /// it gets neither the password nor the message (no silent downgrade).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// Why a message was not accepted by the SMTP server. [`EmailError::is_permanent`] tells the
/// outbox whether to try again. No variant holds a whole e-mail address.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The recipient is not an e-mail address; `address` is masked.
    #[error("invalid e-mail address {address}: {reason}")]
    InvalidAddress { address: String, reason: String },
    /// The settings cannot work (bad sender, half a login, a password over plain text).
    #[error("e-mail settings: {key}: {message}")]
    Settings { key: &'static str, message: String },
    /// The message could not be put together.
    #[error("e-mail message: {0}")]
    Message(String),
    /// A 5xx reply: the server will not take this message, however often it is sent
    /// (550 mailbox unavailable, 553 bad address, 535 login refused, …).
    #[error("SMTP server refused the message: {code} {message}")]
    Rejected { code: u16, message: String },
    /// A 4xx reply: the server cannot take the message now (451 local error, 452 full mailbox,
    /// greylisting, …).
    #[error("SMTP server deferred the message: {code} {message}")]
    Deferred { code: u16, message: String },
    /// The server lacks an extension that the settings or the message need (STARTTLS, an AUTH
    /// mechanism, SMTPUTF8 for a non-ASCII address): sending again will not help.
    #[error("SMTP server cannot take this message: {0}")]
    Unsupported(String),
    /// The server did not answer within the time allowed.
    #[error("SMTP server timed out: {0}")]
    Timeout(String),
    /// No usable connection: refused, reset, name not resolved, TLS handshake failed, a reply
    /// that could not be read.
    #[error("SMTP connection failed: {0}")]
    Connection(String),
}

impl EmailError {
    /// Whether sending the same message again cannot succeed. Invalid addresses, bad settings,
    /// 5xx replies and missing server extensions are permanent; 4xx replies, time-outs and
    /// connection failures are transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            EmailError::InvalidAddress { .. }
            | EmailError::Settings { .. }
            | EmailError::Message(_)
            | EmailError::Rejected { .. }
            | EmailError::Unsupported(_) => true,
            EmailError::Deferred { .. } | EmailError::Timeout(_) | EmailError::Connection(_) => false,
        }
    }

    /// The SMTP reply code, when the server answered with a refusal.
    pub fn code(&self) -> Option<u16> {
        match self {
            EmailError::Rejected { code, .. } | EmailError::Deferred { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Sorts lettre's error. Its texts are copied through [`mask_addresses_in`] because servers
    /// echo addresses in replies (`550 5.1.1 <yamada@example.jp>: Recipient address rejected`),
    /// and lettre's error itself is not kept as a source so that no chain of `Display`s can
    /// reach the unmasked text.
    fn from_smtp(error: &lettre::transport::smtp::Error) -> EmailError {
        // The detail (the server's reply text, the I/O error) is the source; lettre's own
        // `Display` only adds a category this enum already expresses.
        let detail = std::error::Error::source(error).map(|source| mask_addresses_in(&source.to_string()));
        let detail = detail.unwrap_or_else(|| mask_addresses_in(&error.to_string()));
        if let Some(code) = error.status() {
            let code = u16::from(code);
            return if error.is_permanent() {
                EmailError::Rejected { code, message: detail }
            } else {
                EmailError::Deferred { code, message: detail }
            };
        }
        if error.is_timeout() {
            EmailError::Timeout(detail)
        } else if error.is_client() {
            EmailError::Unsupported(detail)
        } else {
            EmailError::Connection(detail)
        }
    }
}

/// Sends e-mail through one SMTP server. Each [`EmailSender::send`] opens its own connection:
/// messages are few and far between, and a fresh connection never trips over one the server
/// closed while idle.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender").field("from", &mask_email(self.from.email.as_ref())).finish_non_exhaustive()
    }
}

impl EmailSender {
    /// Checks the settings and prepares the transport; nothing is connected until the first
    /// [`send`](EmailSender::send).
    pub fn new(settings: &EmailSettings) -> Result<EmailSender, EmailError> {
        let from: Mailbox = settings.from.parse().map_err(|e: lettre::address::AddressError| EmailError::Settings {
            key: "email.from",
            message: format!("{} is not a mailbox: {e}", mask_email(&settings.from)),
        })?;

        let credentials = match (&settings.username, &settings.password) {
            (Some(username), Some(password)) => {
                Some(Credentials::new(username.clone(), password.expose_secret().to_owned()))
            }
            (None, None) => None,
            _ => {
                return Err(EmailError::Settings {
                    key: "email.username",
                    message: "username and password are set together, or neither".into(),
                });
            }
        };
        // lettre would send AUTH over a plain connection; a password crossing the network in
        // clear is a setting mistake, not something to do quietly.
        if credentials.is_some() && settings.tls == TlsMode::None && !is_loopback(&settings.host) {
            return Err(EmailError::Settings {
                key: "email.tls",
                message: format!(
                    "a password is not sent to {} without TLS: use tls = \"starttls\" or \"tls\"",
                    settings.host
                ),
            });
        }

        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_parameters(&settings.host)?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters(&settings.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(EmailSender { transport: builder.build(), from })
    }

    /// Sends one plain-text message to `to` (a bare address or `Name <address>`). Subject and
    /// body may be any UTF-8: the subject goes out as RFC 2047 encoded words, the body as
    /// `text/plain; charset=utf-8` in base64 or quoted-printable, so the message is 7-bit clean
    /// and needs nothing of the relay.
    ///
    /// Returns the server's final reply, e.g. `250 2.0.0 Ok: queued as 4Xb2`, whose queue id
    /// finds the message in the relay's logs.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<String, EmailError> {
        let masked = mask_email(to);
        let result = self.try_send(to, subject, body).await;
        match &result {
            Ok(reply) => tracing::info!(to = %masked, reply = %reply, "e-mail accepted by the SMTP server"),
            Err(error) => tracing::warn!(
                to = %masked,
                error = %error,
                permanent = error.is_permanent(),
                "e-mail not sent"
            ),
        }
        result
    }

    async fn try_send(&self, to: &str, subject: &str, body: &str) -> Result<String, EmailError> {
        let recipient: Mailbox = to.parse().map_err(|e: lettre::address::AddressError| EmailError::InvalidAddress {
            address: mask_email(to),
            reason: e.to_string(),
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(subject)
            // lettre sets Date itself but not Message-ID, which receiving filters expect.
            .message_id(None)
            // lettre only adds MIME-Version to multipart bodies; a single part needs it too for
            // readers to honour the charset and transfer encoding.
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| EmailError::Message(mask_addresses_in(&e.to_string())))?;

        let response = self.transport.send(message).await.map_err(|e| EmailError::from_smtp(&e))?;
        let code = u16::from(response.code());
        let text = response.message().collect::<Vec<_>>().join(" ");
        Ok(mask_addresses_in(format!("{code} {text}").trim_end()))
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, EmailError> {
    TlsParameters::new(host.to_owned())
        .map_err(|e| EmailError::Settings { key: "email.host", message: format!("TLS for {host}: {e}") })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An e-mail address fit for a log: `yamada@example.jp` becomes `ya***@example.jp`. At most
/// two characters of the local part are kept, and never more than half of it; the domain stays
/// whole (it names the provider, not the person). A mailbox's display name is dropped, and
/// anything without `@` becomes `***`.
pub fn mask_email(address: &str) -> String {
    // `山田 太郎 <yamada@example.jp>`: only what is between the brackets is an address.
    let address = match address.rsplit_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or(rest),
        None => address,
    };
    match address.trim().rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", mask_local_part(local)),
        None => "***".to_owned(),
    }
}

fn mask_local_part(local: &str) -> String {
    let kept = (local.chars().count() / 2).min(2);
    let mut masked: String = local.chars().take(kept).collect();
    masked.push_str("***");
    masked
}

/// Masks every e-mail address found in free text (an SMTP reply, an error message) as
/// [`mask_email`] does.
pub fn mask_addresses_in(text: &str) -> String {
    let is_local = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let (before, after) = (&rest[..at], &rest[at + 1..]);
        let local_len: usize = before.chars().rev().take_while(|&c| is_local(c)).map(char::len_utf8).sum();
        let domain_len: usize = after.chars().take_while(|&c| is_domain(c)).map(char::len_utf8).sum();
        let (prefix, local) = before.split_at(before.len() - local_len);
        out.push_str(prefix);
        if !local.is_empty() && domain_len > 0 {
            out.push_str(&mask_local_part(local));
        } else {
            out.push_str(local);
        }
        out.push('@');
        out.push_str(&after[..domain_len]);
        rest = &after[domain_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_email_keeps_two_characters_and_the_domain() {
        assert_eq!(mask_email("yamada@example.jp"), "ya***@example.jp");
        assert_eq!(mask_email("  yamada.taro+ivr@mail.example.jp "), "ya***@mail.example.jp");
        // Short local parts: never more than half of them.
        assert_eq!(mask_email("abc@example.jp"), "a***@example.jp");
        assert_eq!(mask_email("ab@example.jp"), "a***@example.jp");
        assert_eq!(mask_email("a@example.jp"), "***@example.jp");
        // Characters, not bytes.
        assert_eq!(mask_email("やまだたろう@example.jp"), "やま***@example.jp");
        // The display name is personal data too.
        assert_eq!(mask_email("山田 太郎 <yamada@example.jp>"), "ya***@example.jp");
        assert_eq!(mask_email("no address here"), "***");
        assert_eq!(mask_email(""), "***");
    }

    #[test]
    fn addresses_in_server_replies_are_masked() {
        assert_eq!(
            mask_addresses_in("5.1.1 <yamada@example.jp>: Recipient address rejected"),
            "5.1.1 <ya***@example.jp>: Recipient address rejected"
        );
        assert_eq!(
            mask_addresses_in("from sato@example.jp to suzuki.k@example.com."),
            "from sa***@example.jp to su***@example.com."
        );
        assert_eq!(mask_addresses_in("no @ddress, @ alone, trailing@"), "no @ddress, @ alone, trailing@");
        assert_eq!(mask_addresses_in("250 OK queued"), "250 OK queued");
    }

    fn settings(toml_text: &str) -> EmailSettings {
        toml::from_str(toml_text).expect("settings")
    }

    #[test]
    fn settings_read_from_toml() {
        let s = settings(
            r#"
            host = "smtp.example.jp"
            port = 587
            from = "保健所 <noreply@example.jp>"
            username = "ivr"
            password = "secret"
            tls = "starttls"
            "#,
        );
        assert_eq!(s.tls, TlsMode::Starttls);
        assert_eq!(s.password.as_ref().map(|p| p.expose_secret().to_owned()).as_deref(), Some("secret"));
        assert!(!format!("{s:?}").contains("secret"), "the password stays out of Debug output");
        let sender = EmailSender::new(&s).expect("valid settings");
        assert!(!format!("{sender:?}").contains("noreply@"), "{sender:?}");

        let plain = settings("host = \"127.0.0.1\"\nport = 25\nfrom = \"noreply@example.jp\"\ntls = \"none\"");
        assert!(plain.username.is_none() && plain.password.is_none());
        let unknown_tls = "host = \"h\"\nport = 25\nfrom = \"a@b.jp\"\ntls = \"ssl\"";
        assert!(toml::from_str::<EmailSettings>(unknown_tls).is_err());
    }

    #[test]
    fn unusable_settings_are_refused() {
        let base = r#"host = "smtp.example.jp"
            port = 25
            from = "noreply@example.jp"
            tls = "none""#;
        let err = EmailSender::new(&settings(&format!("{base}\nusername = \"ivr\""))).unwrap_err();
        assert!(matches!(err, EmailError::Settings { key: "email.username", .. }), "{err}");

        let err = EmailSender::new(&settings(&format!("{base}\nusername = \"ivr\"\npassword = \"pw\""))).unwrap_err();
        assert!(matches!(err, EmailError::Settings { key: "email.tls", .. }), "{err}");
        assert!(err.is_permanent());

        // On the same host a plain connection is acceptable.
        let local = base.replace("smtp.example.jp", "localhost");
        EmailSender::new(&settings(&format!("{local}\nusername = \"ivr\"\npassword = \"pw\""))).expect("loopback");

        let err = EmailSender::new(&settings(&base.replace("noreply@example.jp", "保健所"))).unwrap_err();
        assert!(matches!(err, EmailError::Settings { key: "email.from", .. }), "{err}");
    }

    #[tokio::test]
    async fn an_invalid_recipient_is_permanent_and_masked() {
        // Nothing listens on port 9 here, but an invalid address fails before any connection.
        let sender = EmailSender::new(&settings(
            r#"host = "127.0.0.1"
            port = 9
            from = "noreply@example.jp"
            tls = "none""#,
        ))
        .expect("sender");
        let err = sender.send("yamada.example.jp", "件名", "本文").await.unwrap_err();
        assert!(matches!(err, EmailError::InvalidAddress { .. }), "{err}");
        assert!(err.is_permanent());
        assert!(!err.to_string().contains("yamada"), "{err}");
    }
}
