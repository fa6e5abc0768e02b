//! `ivr::carrier::signature` against Twilio's official helper library (PyPI `twilio`), run through
//! `scripts/twilio-sign.py`: our signature must be the library's, and `validate` must accept
//! exactly what the library's `RequestValidator.validate()` accepts.
//!
//! Without the library the tests print `SKIP: PyPI twilio not installed` and pass, except under
//! `CI=true`, where a skipped interoperability check would be a silent hole: there they fail.

use crate::common::peers;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use ivr::carrier::signature::{self, AuthToken};
use serde::{Deserialize, Serialize};

type Params = Vec<(String, String)>;

/// One request to sign, as the script reads it.
#[derive(Serialize)]
struct Case {
    token: String,
    url: String,
    params: Params,
    checks: Vec<Check>,
}

/// One request to validate; unset fields default to the case's (see the script).
#[derive(Serialize, Default)]
struct Check {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<Params>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_params: Option<Params>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_token: Option<String>,
}

#[derive(Deserialize)]
struct CaseResult {
    signature: String,
    checks: Vec<CheckResult>,
}

#[derive(Deserialize)]
struct CheckResult {
    signature: String,
    /// `None`: the library raised, which is a rejection.
    valid: Option<bool>,
    error: Option<String>,
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn case(token: &str, url: &str, params: Params, checks: Vec<Check>) -> Case {
    Case { token: token.into(), url: url.into(), params, checks }
}

fn library_available() -> bool {
    peers::python_module("twilio", "PyPI twilio not installed")
}

/// Runs the cases through the library.
fn library(cases: &[Case]) -> Vec<CaseResult> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/twilio-sign.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let input = serde_json::to_vec(cases).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    let results: Vec<CaseResult> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    results
}

/// Runs the cases through the library and through `ivr::carrier::signature`, and asserts they agree on
/// every signature and every verdict. Returns how many verdicts were compared, and how many of
/// them were acceptances.
fn assert_agree(cases: &[Case]) -> (usize, usize) {
    let (mut compared, mut accepted) = (0, 0);
    for (case, result) in cases.iter().zip(library(cases)) {
        let token = AuthToken::new(&case.token);
        assert_eq!(
            signature::sign(&token, &case.url, &case.params),
            result.signature,
            "signature of {} {:?}",
            case.url,
            case.params
        );
        assert_eq!(case.checks.len(), result.checks.len());
        for (check, lib) in case.checks.iter().zip(result.checks) {
            let ours = match &check.signature {
                Some(given) => given.clone(),
                None => signature::sign(
                    &AuthToken::new(check.sign_token.as_deref().unwrap_or(&case.token)),
                    check.sign_url.as_deref().unwrap_or(&case.url),
                    check.sign_params.as_ref().unwrap_or(&case.params),
                ),
            };
            assert_eq!(ours, lib.signature, "signature for a check of {}", case.url);

            let url = check.url.as_deref().unwrap_or(&case.url);
            let verdict = match &check.body {
                Some(body) => signature::validate_body(&token, url, body.as_bytes(), &ours),
                None => {
                    let received = check.params.as_ref().unwrap_or(&case.params);
                    signature::validate(&token, url, received, &ours)
                }
            };
            let expected = lib.valid.unwrap_or(false);
            assert_eq!(
                verdict,
                expected,
                "validate({url:?}) of a signature over {:?} (params {:?}, body {:?}, signature \
                 {:?}): library says {:?}{}",
                check.sign_url.as_deref().unwrap_or(&case.url),
                check.params.as_ref().unwrap_or(&case.params),
                check.body,
                check.signature,
                lib.valid,
                lib.error.map(|e| format!(" ({e})")).unwrap_or_default(),
            );
            compared += 1;
            accepted += usize::from(expected);
        }
    }
    (compared, accepted)
}

/// `url` as the carrier might have signed it or a server might rebuild it: as given, with the
/// scheme's default port, without a port, with another port, and with the other scheme.
/// For plain `scheme://host[:port]/...` URLs.
fn port_and_scheme_forms(url: &str) -> Vec<String> {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.split(':').next().unwrap();
    let default = if scheme == "https" { 443 } else { 80 };
    let other = if scheme == "https" { "http" } else { "https" };
    let mut forms = vec![
        url.to_string(),
        format!("{scheme}://{host}:{default}{tail}"),
        format!("{scheme}://{host}{tail}"),
        format!("{scheme}://{host}:8080{tail}"),
        format!("{other}://{authority}{tail}"),
    ];
    forms.dedup();
    forms
}

/// Every pair (signed over one form, validated with another).
fn cross_checks(forms: &[String]) -> Vec<Check> {
    let mut checks = Vec::new();
    for signed in forms {
        for validated in forms {
            checks.push(Check { url: Some(validated.clone()), sign_url: Some(signed.clone()), ..Check::default() });
        }
    }
    checks
}

fn voice_params() -> Params {
    params(&[
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", "CA1"),
        ("CallStatus", "in-progress"),
        ("Digits", "1"),
        ("From", "+81312345678"),
        ("To", "+81501234567"),
    ])
}

#[test]
fn signatures_and_port_variants_match_the_library() {
    if !library_available() {
        return;
    }
    let docs_params = params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]);
    let urls = [
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        "https://example.jp:8443/twilio/voice?call=CA1&seq=3",
        "https://ivr.example.jp/twilio/voice",
        "https://ivr.example.jp:443/twilio/voice?call=CA1",
        "http://ivr.example.jp/twilio/voice?call=CA1",
        "http://ivr.example.jp:80/twilio/voice",
        "http://127.0.0.1:3000/twilio/voice?seq=1",
    ];
    let mut cases = vec![case("12345", urls[0], docs_params.clone(), cross_checks(&port_and_scheme_forms(urls[0])))];
    for url in &urls[1..] {
        let checks = cross_checks(&port_and_scheme_forms(url));
        cases.push(case("a1b2c3d4e5f6", url, voice_params(), checks));
    }
    let results = library(&cases);
    assert_eq!(results[0].signature, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    let (compared, accepted) = assert_agree(&cases);
    assert!(accepted > 0 && accepted < compared, "{accepted}/{compared}");
}

#[test]
fn parameter_contents_match_the_library() {
    if !library_available() {
        return;
    }
    let token = "f00dfeedcafe";
    let url = "https://ivr.example.jp/twilio/gather?call=CA1&lang=ja&name=%E7%94%B0%E4%B8%AD";
    let japanese = params(&[
        ("CallSid", "CA1"),
        ("SpeechResult", "こんにちは 36.5度"),
        ("Body", "こんにちは 36.5度"),
        ("Confidence", "0.92"),
    ]);
    let empty = params(&[("CallSid", "CA1"), ("Digits", ""), ("SpeechResult", ""), ("", "x")]);
    // Names sort by code point: upper case before lower case.
    let mixed_case = params(&[("body", "b"), ("Body", "B"), ("_x", "1"), ("Zed", "z")]);
    let repeated =
        params(&[("CallSid", "CA1"), ("Digits", "2"), ("Digits", "1"), ("Digits", "2"), ("Tag", "b"), ("Tag", "a")]);
    let repeated_checks = vec![
        Check::default(),
        // Pairs sent twice are signed once, so these are the same request to the library.
        Check {
            sign_params: Some(params(&[
                ("Digits", "1"),
                ("Tag", "a"),
                ("CallSid", "CA1"),
                ("Tag", "b"),
                ("Digits", "2"),
            ])),
            ..Check::default()
        },
        // Losing a value is not.
        Check { sign_params: Some(params(&[("CallSid", "CA1"), ("Digits", "1"), ("Tag", "a")])), ..Check::default() },
        // Nor is merging values, though each value follows its name in the signed text.
        Check { params: Some(params(&[("CallSid", "CA1"), ("Digits", "12"), ("Tag", "ab")])), ..Check::default() },
    ];
    let cases = vec![
        case(token, url, japanese.clone(), vec![Check::default()]),
        case(
            token,
            url,
            japanese,
            vec![Check {
                params: Some(params(&[
                    ("CallSid", "CA1"),
                    ("SpeechResult", "こんにちは 37.5度"),
                    ("Body", "こんにちは 36.5度"),
                    ("Confidence", "0.92"),
                ])),
                ..Check::default()
            }],
        ),
        case(token, url, empty, vec![Check::default()]),
        case(token, url, mixed_case, vec![Check::default()]),
        case(token, url, repeated, repeated_checks),
        case(token, url, Params::new(), vec![Check::default()]),
        case("", url, voice_params(), vec![Check::default()]),
        case("トークン", url, voice_params(), vec![Check::default()]),
    ];
    assert_agree(&cases);
}

#[test]
fn tampered_requests_are_rejected_like_the_library() {
    if !library_available() {
        return;
    }
    let token = "a1b2c3d4e5f6";
    let url = "https://example.jp:8443/twilio/voice?call=CA1&seq=3";
    let good = signature::sign(&AuthToken::new(token), url, &voice_params());
    let with = |edit: fn(&mut Params)| {
        let mut p = voice_params();
        edit(&mut p);
        Some(p)
    };
    let checks = vec![
        Check::default(),
        Check { params: with(|p| p[3].1 = "2".into()), ..Check::default() },
        Check { params: with(|p| p.push(("Digits".into(), "9".into()))), ..Check::default() },
        Check { params: with(|p| p.push(("Extra".into(), String::new()))), ..Check::default() },
        Check {
            params: with(|p| {
                p.remove(0);
            }),
            ..Check::default()
        },
        // The value moved into the name: the signed text is the same, and so is the verdict.
        Check {
            params: with(|p| {
                p[3] = ("Digits1".into(), String::new());
            }),
            ..Check::default()
        },
        Check { url: Some(url.replace("seq=3", "seq=4")), ..Check::default() },
        Check { url: Some(url.replace("/voice", "/gather")), ..Check::default() },
        Check { url: Some(format!("{url}&extra=1")), ..Check::default() },
        Check { sign_token: Some("a1b2c3d4e5f7".into()), ..Check::default() },
        Check {
            signature: Some(format!("{}{}", if good.starts_with('A') { 'B' } else { 'A' }, &good[1..])),
            ..Check::default()
        },
        Check { signature: Some(good.trim_end_matches('=').to_string()), ..Check::default() },
        Check { signature: Some(format!("{good}\n")), ..Check::default() },
        Check { signature: Some(format!(" {good}")), ..Check::default() },
        Check { signature: Some(String::new()), ..Check::default() },
        Check { signature: Some("not base64!".into()), ..Check::default() },
    ];
    let (compared, accepted) = assert_agree(&[case(token, url, voice_params(), checks)]);
    assert_eq!((compared, accepted), (16, 2));
}

#[test]
fn url_edge_cases_match_the_library() {
    if !library_available() {
        return;
    }
    // Each URL with the forms worth signing for it; every pair is checked.
    let edge: &[&[&str]] = &[
        &[
            "HTTPS://Example.jp/voice?",
            "https://Example.jp/voice",
            "https://Example.jp:443/voice",
            "HTTPS://Example.jp/voice?",
        ],
        &[
            "https://ivr.example.jp/voice;v=1?x=1",
            "https://ivr.example.jp:443/voice;v=1?x=1",
            "https://ivr.example.jp/voice?x=1",
        ],
        &["https://ivr.example.jp/a;?q=1#", "https://ivr.example.jp/a?q=1", "https://ivr.example.jp:443/a?q=1"],
        &["https://ivr.example.jp/a#frag", "https://ivr.example.jp:443/a#frag", "https://ivr.example.jp/a"],
        &["https://ivr.example.jp", "https://ivr.example.jp:443", "https://ivr.example.jp/"],
        &[
            "https://user:pw@example.jp:8443/x",
            "https://user/x",
            "https://user:pw@example.jp/x",
            "https://user:pw@example.jp:8443/x",
        ],
        &["https://user@example.jp/x", "https://user@example.jp:443/x", "https://example.jp/x"],
        &["https://example.jp:0/x", "https://example.jp:0:443/x", "https://example.jp/x"],
        &["https://example.jp:0443/x", "https://example.jp/x", "https://example.jp:443/x"],
        &["https://example.jp:/x", "https://example.jp::443/x", "https://example.jp/x"],
        &["https://[::1]:8443/x", "https://[/x", "https://[::1]/x"],
        &["https://[::1]/x", "https://[::1]:443/x"],
        &["ftp://example.jp/x", "ftp://example.jp:80/x", "ftp://example.jp:21/x"],
        &["/twilio/voice?x=1", "//:80/twilio/voice?x=1"],
        &[" https://example.jp/x", "https://example.jp/x", "https://example.jp:443/x"],
        &["https://example.jp/a\tb\n", "https://example.jp/ab", "https://example.jp:443/ab"],
        &["https://example.jp:99999/x", "https://example.jp/x"],
        &["https://example.jp:8a/x", "https://example.jp/x"],
        &["https://[::1/x", "https://[::1/x"],
    ];
    let cases: Vec<Case> = edge
        .iter()
        .map(|forms| {
            let forms: Vec<String> = forms.iter().map(|f| f.to_string()).collect();
            case("a1b2c3d4e5f6", &forms[0], voice_params(), cross_checks(&forms))
        })
        .collect();
    assert_agree(&cases);
}

#[test]
fn json_bodies_match_the_library() {
    if !library_available() {
        return;
    }
    let token = "a1b2c3d4e5f6";
    let body = r#"{"CallSid":"CA3","SpeechResult":"こんにちは 36.5度"}"#;
    let hash = signature::body_sha256(body.as_bytes());
    assert_eq!(hash.len(), 64);
    let url = format!("https://example.jp:8443/twilio/status?{}={hash}", signature::BODY_SHA256_PARAM);
    let body_check = |url: &str, body: &str| Check {
        url: Some(url.into()),
        sign_url: Some(url.into()),
        body: Some(body.into()),
        ..Check::default()
    };
    let mut checks = vec![
        body_check(&url, body),
        body_check(&url, &body.replace("CA3", "CA4")),
        body_check(&url, ""),
        body_check(&url.replace(&hash, &hash.to_uppercase()), body),
        body_check(&url.replace("bodySHA256", "body%53HA256"), body),
        body_check(&url.replace("bodySHA256", "bodysha256"), body),
        body_check(&format!("{url}&bodySHA256=0"), body),
        body_check(&format!("https://example.jp/x?bodySHA256=&bodySHA256={hash}"), body),
        body_check("https://example.jp/twilio/status?bodySHA256=", ""),
        body_check("https://example.jp/twilio/status", ""),
        // Without a hash the library cannot take a body at all (it raises).
        body_check("https://example.jp/twilio/status", body),
        // A body posted to a URL signed for another one.
        Check {
            url: Some(url.clone()),
            sign_url: Some(url.replace(&hash, &signature::body_sha256(b"{}"))),
            body: Some(body.into()),
            ..Check::default()
        },
    ];
    for form in port_and_scheme_forms(&url) {
        checks.push(Check { sign_url: Some(form), body: Some(body.into()), ..Check::default() });
    }
    let (compared, accepted) = assert_agree(&[case(token, &url, Params::new(), checks)]);
    assert!(accepted >= 5, "{accepted}/{compared}");
}
