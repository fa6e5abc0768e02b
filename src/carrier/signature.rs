//! Twilio webhook signatures (the `X-Twilio-Signature` header), computed and checked exactly as
//! Twilio's official helper library does it: `twilio.request_validator.RequestValidator` in the
//! PyPI package `twilio` (9.x). `scripts/twilio-sign.py` and `tests/api/signature_interop.rs` check
//! this module against that library.
//!
//! The signature is `base64(HMAC-SHA1(auth token, url + name₁ + value₁ + name₂ + value₂ …))`:
//! the full URL the carrier requested (query string included), then the form parameters sorted by
//! name, each name immediately followed by its value. A repeated name contributes each of its
//! values once, in sorted order; the library puts the values through a `set`, so a
//! name/value pair that is sent twice is signed once.
//!
//! [`validate`] does not check the URL exactly as given. Like the library, it checks two forms
//! of it, because the carrier does not sign ports consistently:
//!
//! - the URL without its port (`https://h:8443/x` → `https://h/x`), and
//! - the URL with a port: the one it has, or else `:443` for `https` and `:80` for any other
//!   scheme (`https://h/x` → `https://h:443/x`).
//!
//! Nothing else is accepted: a different port, the other scheme, or (for a URL with a port
//! other than the default one) the default port. Both forms go through the library's URL
//! round trip (CPython's `urlparse(..).geturl()`), reproduced here: the scheme is
//! lower-cased and an empty `?`, `#` or `;` disappears. A URL whose port is not a number from 0
//! to 65535, or with unbalanced `[`/`]`, makes the library raise; here it is simply rejected.
//! The library removes a port by cutting the host part at its first `:`, so for a URL with user
//! info (`https://u:p@h:8443/x` → `https://u/x`) or an IPv6 literal (`https://[::1]:8443/x` →
//! `https://[/x`) that form is one no carrier signs, and only the form with the port can match.
//!
//! JSON webhooks are signed over the URL alone, which then carries `bodySHA256`, the hex SHA-256
//! of the body; [`validate_body`] checks those.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The HTTP header a carrier puts the signature in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The query parameter that carries the hex SHA-256 of a JSON body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

type HmacSha1 = Hmac<Sha1>;

/// The account's auth token: the HMAC key. It is a secret, so `Debug` never shows it and there
/// is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token as configured (no trimming: the carrier uses the exact bytes).
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Whether `candidate` is this token (an HTTP basic-auth password, say), compared in
    /// constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let mut mac = HmacSha1::new_from_slice(b"compare").expect("any key length");
        mac.update(self.0.as_bytes());
        let ours = mac.finalize().into_bytes();
        let mut theirs = HmacSha1::new_from_slice(b"compare").expect("any key length");
        theirs.update(candidate.as_bytes());
        theirs.verify_slice(&ours).is_ok()
    }

    fn mac(&self) -> HmacSha1 {
        HmacSha1::new_from_slice(self.0.as_bytes()).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(***)")
    }
}

/// Computes the signature the carrier would send for a POST of `params` to `url` (used by the
/// carrier simulator and `ivr call --url`).
///
/// `url` is signed exactly as given, like the library's `compute_signature`.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(token: &AuthToken, url: &str, params: &[(K, V)]) -> String {
    BASE64.encode(mac_over(token, url, params).finalize().into_bytes())
}

/// Checks `signature` (the `X-Twilio-Signature` header) for a form POST of `params` to `url`.
///
/// `url` is the full public URL including the query string (see [`public_url`]); the URL forms
/// accepted are described in the [module docs](self). The comparison is constant-time.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    token: &AuthToken,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    // Decoding is strict (canonical padding, no stray bits, no whitespace), so exactly one
    // string decodes to a given MAC: comparing bytes here is comparing the strings, as the
    // library does, and lets `verify_slice` do it in constant time.
    let Ok(expected) = BASE64.decode(signature) else {
        return false;
    };
    let url = PyUrl::clean(url);
    let Ok(forms) = PyUrl::parse(&url).and_then(|u| u.port_forms()) else {
        return false;
    };
    forms.iter().any(|form| mac_over(token, form, params).verify_slice(&expected).is_ok())
}

/// The lowercase hex SHA-256 of a request body: the value of `bodySHA256` in a JSON webhook's
/// URL.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Checks `signature` for a JSON (or other non-form) POST of `body` to `url`.
///
/// As in the library: when `url`'s query has a non-empty `bodySHA256`, it must equal
/// [`body_sha256`] of `body` (lowercase hex, compared as text) and the signature must be valid
/// for `url` with no parameters. Without `bodySHA256` only an empty body can pass (the library
/// raises for a non-empty one).
pub fn validate_body(token: &AuthToken, url: &str, body: &[u8], signature: &str) -> bool {
    let cleaned = PyUrl::clean(url);
    let Ok(parsed) = PyUrl::parse(&cleaned) else {
        return false;
    };
    let no_params: &[(&str, &str)] = &[];
    match query_value(parsed.query, BODY_SHA256_PARAM) {
        // A plain comparison is enough: the hash of a body is no secret, what protects it is
        // the HMAC over the URL that carries it.
        Some(hash) => hash == body_sha256(body) && validate(token, url, no_params, signature),
        None if body.is_empty() => validate(token, url, no_params, signature),
        None => false,
    }
}

/// Joins the configured public base URL (`https://ivr.example.jp`, or with a prefix such as
/// `https://ivr.example.jp/base/`) with a request's path and query (`/voice?call=CA1`), with
/// exactly one `/` between them.
///
/// The result is what the carrier requested, and so what it signed, when a reverse proxy maps
/// `base` to this server's root (stripping the prefix, if any). Only one slash is trimmed on
/// each side: anything more is part of the URL the carrier signed.
pub fn public_url(base: &str, path_and_query: &str) -> String {
    let base = base.strip_suffix('/').unwrap_or(base);
    let rest = path_and_query.strip_prefix('/').unwrap_or(path_and_query);
    format!("{base}/{rest}")
}

/// The HMAC over `url` and the sorted parameters, ready to finalize or verify.
fn mac_over<K: AsRef<str>, V: AsRef<str>>(token: &AuthToken, url: &str, params: &[(K, V)]) -> HmacSha1 {
    // The library iterates `sorted(set(names))` and, per name, `sorted(set(values))`: that is
    // sorting the pairs by (name, value) and dropping repeated pairs. Byte order of UTF-8 is
    // code point order, which is how Python sorts strings.
    let mut pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    pairs.sort_unstable();
    pairs.dedup();

    let mut mac = token.mac();
    mac.update(url.as_bytes());
    for (name, value) in pairs {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The first non-blank value of `name` in `query`, decoded as CPython's `parse_qs` does
/// (`+` is a space, `%XX` escapes, names decoded too, pairs without `=` or with an empty value
/// ignored).
fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(_, value)| !value.is_empty())
        .find(|(n, _)| unquote_plus(n) == name)
        .map(|(_, value)| unquote_plus(value))
}

/// `urllib.parse.unquote(s.replace('+', ' '))`: malformed escapes stay as they are, invalid
/// UTF-8 becomes U+FFFD.
fn unquote_plus(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits: at most 0xFF.
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Schemes for which CPython writes `//` before an empty host (`urllib.parse.uses_netloc`).
const USES_NETLOC: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp", "snews",
    "prospero", "rtsp", "rtsps", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git", "git+ssh", "ws", "wss",
];

/// Schemes whose last path segment may carry `;params` (`urllib.parse.uses_params`).
const USES_PARAMS: &[&str] = &[
    "", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtsps", "rtspu", "sip", "sips", "mms",
    "sftp", "tel",
];

/// Characters `urlsplit` deletes wherever they are.
const UNSAFE: [char; 3] = ['\t', '\r', '\n'];

/// A URL split as CPython's `urllib.parse.urlparse` splits it. The library signs the URL as
/// `urlparse` + `geturl` give it back, so this reproduces that split and that join rather than
/// parsing by the URL standard (which would normalise hosts, ports and escapes the carrier
/// signed verbatim).
///
/// Not reproduced: CPython's check that a bracketed host is a valid IP literal.
#[derive(Debug)]
struct PyUrl<'a> {
    scheme: String,
    netloc: &'a str,
    path: &'a str,
    params: &'a str,
    query: &'a str,
    fragment: &'a str,
}

/// CPython raised an error for this URL, so the library can validate nothing for it.
#[derive(Debug)]
struct Unparseable;

impl<'a> PyUrl<'a> {
    /// What `urlsplit` does before splitting: leading C0 controls and spaces go, and so do
    /// tabs and newlines anywhere.
    fn clean(url: &str) -> Cow<'_, str> {
        let url = url.trim_start_matches(|c: char| c <= ' ');
        if url.contains(UNSAFE) { Cow::Owned(url.replace(UNSAFE, "")) } else { Cow::Borrowed(url) }
    }

    /// Splits `url`, which must have been through [`PyUrl::clean`].
    fn parse(url: &'a str) -> Result<Self, Unparseable> {
        let mut rest = url;
        let mut scheme = String::new();
        if let Some(colon) = rest.find(':') {
            let candidate = &rest[..colon];
            let is_scheme = candidate.starts_with(|c: char| c.is_ascii_alphabetic())
                && candidate.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if is_scheme {
                scheme = candidate.to_ascii_lowercase();
                rest = &rest[colon + 1..];
            }
        }
        let mut netloc = "";
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (netloc, rest) = after.split_at(end);
            if netloc.contains('[') != netloc.contains(']') {
                return Err(Unparseable); // "Invalid IPv6 URL"
            }
        }
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (mut path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut params = "";
        if USES_PARAMS.contains(&scheme.as_str()) {
            // `;params` is looked for in the last segment only.
            let last_segment = path.rfind('/').unwrap_or(0);
            if let Some(semi) = path[last_segment..].find(';') {
                let semi = last_segment + semi;
                (path, params) = (&path[..semi], &path[semi + 1..]);
            }
        }
        Ok(Self { scheme, netloc, path, params, query, fragment })
    }

    /// The port, read as CPython's `.port` reads it: after the last `@` (and after `]` for an
    /// IP literal), empty meaning none, and an error unless it is ASCII digits up to 65535.
    fn port(&self) -> Result<Option<u16>, Unparseable> {
        let host_port = self.netloc.rsplit_once('@').map_or(self.netloc, |(_, h)| h);
        let port = match host_port.split_once('[') {
            Some((_, bracketed)) => {
                bracketed.split_once(']').map_or("", |(_, after)| after).split_once(':').map_or("", |(_, p)| p)
            }
            None => host_port.split_once(':').map_or("", |(_, p)| p),
        };
        if port.is_empty() {
            return Ok(None);
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Unparseable);
        }
        // Python's int() takes any number of leading zeros.
        let digits = port.trim_start_matches('0');
        if digits.len() > 5 {
            return Err(Unparseable);
        }
        let value: u32 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| Unparseable)? };
        u16::try_from(value).map(Some).map_err(|_| Unparseable)
    }

    /// The two URLs the library signs to check a request: `[remove_port(u), add_port(u)]`.
    fn port_forms(&self) -> Result<[String; 2], Unparseable> {
        // The library tests `if not uri.port`, so port 0 counts as no port.
        let has_port = self.port()?.is_some_and(|p| p != 0);
        let (without, with) = if has_port {
            // `netloc.split(":")[0]`: everything before the first colon, user info included.
            let host = self.netloc.split(':').next().unwrap_or_default();
            (self.with_netloc(host), self.with_netloc(self.netloc))
        } else {
            let default = if self.scheme == "https" { 443 } else { 80 };
            let netloc = format!("{}:{default}", self.netloc);
            (self.with_netloc(self.netloc), self.with_netloc(&netloc))
        };
        Ok([without, with])
    }

    /// CPython's `urlunparse`, with `netloc` in place of this URL's.
    fn with_netloc(&self, netloc: &str) -> String {
        let mut path = self.path.to_owned();
        if !self.params.is_empty() {
            path = format!("{path};{}", self.params);
        }
        if !netloc.is_empty()
            || (!self.scheme.is_empty() && USES_NETLOC.contains(&self.scheme.as_str()) && !path.starts_with("//"))
        {
            if !path.is_empty() && !path.starts_with('/') {
                path.insert(0, '/');
            }
            path = format!("//{netloc}{path}");
        }
        let mut url = if self.scheme.is_empty() { path } else { format!("{}:{path}", self.scheme) };
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(self.query);
        }
        if !self.fragment.is_empty() {
            url.push('#');
            url.push_str(self.fragment);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_matches_only_itself() {
        let token = super::AuthToken::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cret ") && !token.matches("") && !token.matches("S3CRET"));
    }

    use super::*;

    /// The example in Twilio's security documentation (checked with the `twilio` package).
    const DOCS_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const DOCS_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn docs_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn token() -> AuthToken {
        AuthToken::new("12345")
    }

    #[test]
    fn docs_vector_signs_and_validates() {
        assert_eq!(sign(&token(), DOCS_URL, &docs_params()), DOCS_SIGNATURE);
        assert!(validate(&token(), DOCS_URL, &docs_params(), DOCS_SIGNATURE));
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut params = docs_params();
        params.reverse();
        assert_eq!(sign(&token(), DOCS_URL, &params), DOCS_SIGNATURE);
    }

    #[test]
    fn tampering_fails() {
        let mut changed_value = docs_params();
        changed_value[2].1 = "1235".into();
        assert!(!validate(&token(), DOCS_URL, &changed_value, DOCS_SIGNATURE));

        let mut extra = docs_params();
        extra.push(("Extra".into(), String::new()));
        assert!(!validate(&token(), DOCS_URL, &extra, DOCS_SIGNATURE));

        let missing = &docs_params()[1..];
        assert!(!validate(&token(), DOCS_URL, missing, DOCS_SIGNATURE));

        let url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert!(!validate(&token(), url, &docs_params(), DOCS_SIGNATURE));
        let url = "http://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(!validate(&token(), url, &docs_params(), DOCS_SIGNATURE));

        let flipped = DOCS_SIGNATURE.replace('0', "1");
        assert!(!validate(&token(), DOCS_URL, &docs_params(), &flipped));
        assert!(!validate(&token(), DOCS_URL, &docs_params(), ""));
    }

    #[test]
    fn wrong_token_fails() {
        let other = AuthToken::new("12346");
        assert!(!validate(&other, DOCS_URL, &docs_params(), DOCS_SIGNATURE));
        assert_ne!(sign(&other, DOCS_URL, &docs_params()), DOCS_SIGNATURE);
    }

    #[test]
    fn only_the_exact_signature_text_passes() {
        // The library compares strings; strict base64 keeps byte comparison equivalent.
        let params = docs_params();
        let no_padding = DOCS_SIGNATURE.trim_end_matches('=');
        assert!(!validate(&token(), DOCS_URL, &params, no_padding));
        // `Q` and `R` differ only in the two bits past the 160-bit MAC.
        let stray_bits = DOCS_SIGNATURE.replace("gQ=", "gR=");
        assert!(!validate(&token(), DOCS_URL, &params, &stray_bits));
        let spaced = format!(" {DOCS_SIGNATURE}");
        assert!(!validate(&token(), DOCS_URL, &params, &spaced));
    }

    #[test]
    fn port_forms_match_the_library() {
        let params = docs_params();
        let signed = |url: &str| sign(&token(), url, &params);
        let accepts = |url: &str, signed_url: &str| validate(&token(), url, &params, &signed(signed_url));

        // No port in the URL: as given, or with the scheme's default port.
        assert!(accepts("https://h.jp/x?a=1", "https://h.jp/x?a=1"));
        assert!(accepts("https://h.jp/x?a=1", "https://h.jp:443/x?a=1"));
        assert!(accepts("http://h.jp/x", "http://h.jp:80/x"));
        assert!(!accepts("http://h.jp/x", "http://h.jp:443/x"));
        assert!(!accepts("https://h.jp/x", "https://h.jp:8443/x"));
        // A port in the URL: as given, or without it; never another port.
        assert!(accepts("https://h.jp:8443/x", "https://h.jp:8443/x"));
        assert!(accepts("https://h.jp:8443/x", "https://h.jp/x"));
        assert!(!accepts("https://h.jp:8443/x", "https://h.jp:443/x"));
        assert!(accepts("https://h.jp:443/x", "https://h.jp/x"));
        // The scheme is not interchangeable.
        assert!(!accepts("https://h.jp/x", "http://h.jp/x"));
    }

    #[test]
    fn urls_go_through_the_python_round_trip() {
        let try_forms = |url: &str| PyUrl::parse(&PyUrl::clean(url)).and_then(|u| u.port_forms());
        let forms = |url: &str| try_forms(url).unwrap();
        assert_eq!(forms("HTTPS://h.jp/x?"), ["https://h.jp/x", "https://h.jp:443/x"]);
        assert_eq!(forms("https://h.jp/a;?q=1#"), ["https://h.jp/a?q=1", "https://h.jp:443/a?q=1"]);
        assert_eq!(forms("https://h.jp"), ["https://h.jp", "https://h.jp:443"]);
        assert_eq!(forms("https://u:p@h.jp:8443/x"), ["https://u/x", "https://u:p@h.jp:8443/x"]);
        assert_eq!(forms("https://h.jp:0/x"), ["https://h.jp:0/x", "https://h.jp:0:443/x"]);
        assert_eq!(forms("https://h.jp:0443/x"), ["https://h.jp/x", "https://h.jp:0443/x"]);
        assert_eq!(forms(" https://h.jp/\tx\n"), ["https://h.jp/x", "https://h.jp:443/x"]);
        for bad in ["https://h.jp:99999/x", "https://h.jp:8a/x", "https://[::1/x"] {
            assert!(try_forms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_parameters_are_sorted_and_deduplicated() {
        let url = "https://h.jp/x";
        let a: &[(&str, &str)] = &[("Digit", "2"), ("Digit", "1"), ("Digit", "2")];
        let b: &[(&str, &str)] = &[("Digit", "1"), ("Digit", "2")];
        assert_eq!(sign(&token(), url, a), sign(&token(), url, b));
    }

    #[test]
    fn json_body_is_checked_through_its_hash() {
        let body = br#"{"CallSid":"CA1","Digits":"1"}"#;
        let url = format!("https://h.jp/x?{BODY_SHA256_PARAM}={}", body_sha256(body));
        let signature = sign::<&str, &str>(&token(), &url, &[]);
        assert!(validate_body(&token(), &url, body, &signature));
        assert!(!validate_body(&token(), &url, br#"{"CallSid":"CA2","Digits":"1"}"#, &signature));

        let upper = url.replace(&body_sha256(body), &body_sha256(body).to_uppercase());
        let upper_signature = sign::<&str, &str>(&token(), &upper, &[]);
        assert!(!validate_body(&token(), &upper, body, &upper_signature));

        let bare = "https://h.jp/x";
        let bare_signature = sign::<&str, &str>(&token(), bare, &[]);
        assert!(!validate_body(&token(), bare, body, &bare_signature));
        assert!(validate_body(&token(), bare, b"", &bare_signature));
    }

    #[test]
    fn query_values_are_decoded_like_parse_qs() {
        assert_eq!(query_value("a=1&b=&b=x+y%21", "b").as_deref(), Some("x y!"));
        assert_eq!(query_value("b&%62=2", "b").as_deref(), Some("2"));
        assert_eq!(query_value("b=%zz%4", "b").as_deref(), Some("%zz%4"));
        assert_eq!(query_value("a=1", "b"), None);
    }

    #[test]
    fn public_url_joins_with_one_slash() {
        assert_eq!(public_url("https://ivr.example.jp", "/voice?a=1"), "https://ivr.example.jp/voice?a=1");
        assert_eq!(public_url("https://ivr.example.jp/", "/voice"), "https://ivr.example.jp/voice");
        assert_eq!(public_url("https://ivr.example.jp/base/", "/voice/"), "https://ivr.example.jp/base/voice/");
        assert_eq!(public_url("https://ivr.example.jp/base", "voice"), "https://ivr.example.jp/base/voice");
        assert_eq!(public_url("https://ivr.example.jp", "/"), "https://ivr.example.jp/");
        assert_eq!(public_url("https://ivr.example.jp", "?a=1"), "https://ivr.example.jp/?a=1");
    }

    #[test]
    fn debug_hides_the_token() {
        let shown = format!("{:?}", AuthToken::new("s3cr3t-token"));
        assert_eq!(shown, "AuthToken(***)");
    }
}
