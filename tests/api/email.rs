//! `ivr::notify::email` against a real SMTP server: `scripts/smtp-sink.py` (PyPI `aiosmtpd`),
//! started for each test on a free port of 127.0.0.1. A Japanese message must arrive with its
//! envelope, sender, subject and body intact (read back with `mailparse`, a MIME decoder
//! independent of lettre), and refusals must be sorted as the outbox needs: 550 permanent,
//! 451 transient, nothing listening transient.
//!
//! Without aiosmtpd the server tests print `SKIP: aiosmtpd not installed` and pass, except under
//! `CI=true`, where they fail (`python3 -m pip install -r scripts/requirements.txt`).

use crate::common::peers;

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivr::notify::email::{EmailError, EmailSender, EmailSettings, TlsMode};
use mailparse::{MailAddr, MailHeaderMap};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smtp-sink.py");

const FROM: &str = "保健所 <noreply@example.jp>";
const SUBJECT: &str = "【保健所】陽性登録用の処理番号のお知らせ";
const SENTENCE: &str = "接触確認アプリの陽性登録用の処理番号は 1234 5678 です。";

/// The SMTP server process and the directory it stores messages in; the process is killed when
/// this is dropped, whether the test passed or panicked.
pub(crate) struct Sink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// A running server, or `None` (skipped) when aiosmtpd is missing outside CI.
    pub(crate) fn start() -> Option<Sink> {
        if !aiosmtpd_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).expect("mail directory");
        let log = File::create(dir.path().join("sink.log")).expect("log file");
        let port = free_port();
        let child = Command::new("python3")
            .arg(SCRIPT)
            .arg(&mail)
            .args(["--port", &port.to_string(), "--exit-on-stdin-eof"])
            // Held open by `child`: if this test process dies without dropping the guard, the
            // pipe closes and the server exits by itself.
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("python3 starts");
        let mut sink = Sink { child, port, dir };
        sink.wait_until_listening();
        Some(sink)
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("smtp-sink.py exited ({status}) before listening:\n{}", self.log());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink.py not listening on {} after 15 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    pub(crate) fn settings(&self) -> EmailSettings {
        settings(self.port)
    }

    /// The stored messages, oldest first.
    pub(crate) fn messages(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("mail directory")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        found.sort();
        found
    }
}

fn settings(port: u16) -> EmailSettings {
    EmailSettings {
        host: "127.0.0.1".into(),
        port,
        from: FROM.into(),
        username: None,
        password: None,
        tls: TlsMode::None,
    }
}

fn aiosmtpd_available() -> bool {
    peers::python_module("aiosmtpd", "aiosmtpd not installed")
}

/// A port nothing listens on right now (the kernel's choice, released at once).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("local address").port()
}

fn header(mail: &mailparse::ParsedMail<'_>, name: &str) -> String {
    mail.headers.get_first_value(name).unwrap_or_else(|| panic!("no {name} header"))
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn a_japanese_message_arrives_intact() {
    let Some(sink) = Sink::start() else { return };
    let sender = EmailSender::new(&sink.settings()).expect("sender");
    let body = format!("山田 太郎 様\n\n{SENTENCE}\nこのメールには返信できません。\n");

    let reply = sender.send("yamada.taro@example.jp", SUBJECT, &body).await.expect("sent");
    assert!(reply.starts_with("250 ") && reply.contains("queued as"), "{reply}");

    let stored = sink.messages();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let raw = read(&stored[0]);
    // Encoded for any relay: no 8-bit byte in headers or body.
    assert!(raw.is_ascii(), "not 7-bit clean:\n{}", String::from_utf8_lossy(&raw));
    let mail = mailparse::parse_mail(&raw).expect("a MIME message");

    // The envelope, as the server received it.
    assert_eq!(header(&mail, "Return-Path"), "<noreply@example.jp>");
    assert_eq!(mail.headers.get_all_values("Delivered-To"), ["yamada.taro@example.jp"]);

    // The headers a mail reader shows.
    let from = mailparse::addrparse_header(mail.headers.get_first_header("From").expect("From")).expect("From");
    match &from[..] {
        [MailAddr::Single(from)] => {
            assert_eq!(from.display_name.as_deref(), Some("保健所"));
            assert_eq!(from.addr, "noreply@example.jp");
        }
        other => panic!("From: {other:?}"),
    }
    let to = mailparse::addrparse_header(mail.headers.get_first_header("To").expect("To")).expect("To");
    assert_eq!(to.extract_single_info().map(|to| to.addr).as_deref(), Some("yamada.taro@example.jp"));
    assert_eq!(header(&mail, "Subject"), SUBJECT);
    assert!(header(&mail, "Message-ID").starts_with('<'));
    assert!(mailparse::dateparse(&header(&mail, "Date")).is_ok());

    // The body: plain UTF-8 text, decoded back to exactly what was sent (lines end in CRLF on
    // the wire, as RFC 5322 wants).
    assert_eq!(header(&mail, "MIME-Version"), "1.0");
    assert_eq!(mail.ctype.mimetype, "text/plain");
    assert_eq!(mail.ctype.charset.to_ascii_lowercase(), "utf-8");
    let encoding = header(&mail, "Content-Transfer-Encoding").to_ascii_lowercase();
    assert!(encoding == "base64" || encoding == "quoted-printable", "{encoding}");
    let decoded = mail.get_body().expect("body").replace("\r\n", "\n");
    assert_eq!(decoded, body);
    assert!(decoded.contains(SENTENCE));
}

#[tokio::test]
async fn refusals_are_sorted_into_permanent_and_transient() {
    let Some(sink) = Sink::start() else { return };
    let sender = EmailSender::new(&sink.settings()).expect("sender");

    let rejected = sender.send("yamada@reject.test", SUBJECT, SENTENCE).await.expect_err("550");
    assert!(matches!(rejected, EmailError::Rejected { code: 550, .. }), "{rejected:?}");
    assert!(rejected.is_permanent());
    assert!(rejected.to_string().contains("Mailbox unavailable"), "{rejected}");

    let deferred = sender.send("yamada@defer.test", SUBJECT, SENTENCE).await.expect_err("451");
    assert!(matches!(deferred, EmailError::Deferred { code: 451, .. }), "{deferred:?}");
    assert!(!deferred.is_permanent());

    for error in [&rejected, &deferred] {
        assert!(!format!("{error} {error:?}").contains("yamada@"), "an address in {error:?}");
    }
    // The sender can still deliver after refusals.
    sender.send("sato@example.jp", SUBJECT, SENTENCE).await.expect("sent after refusals");
    assert_eq!(sink.messages().len(), 1, "only the accepted message is stored");
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    // No SMTP server needed: a port that was just free refuses the connection.
    let sender = EmailSender::new(&settings(free_port())).expect("sender");
    let error = sender.send("yamada@example.jp", SUBJECT, SENTENCE).await.expect_err("refused");
    assert!(matches!(error, EmailError::Connection(_)), "{error:?}");
    assert!(!error.is_permanent());
    assert_eq!(error.code(), None);
}

#[tokio::test]
async fn an_invalid_address_is_permanent() {
    let sender = EmailSender::new(&settings(free_port())).expect("sender");
    let error = sender.send("yamada taro@example.jp", SUBJECT, SENTENCE).await.expect_err("invalid");
    assert!(matches!(error, EmailError::InvalidAddress { .. }), "{error:?}");
    assert!(error.is_permanent());
    assert!(!error.to_string().contains("yamada taro"), "{error}");
}
