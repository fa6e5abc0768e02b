//! `ivr tokens add|list|revoke` through the real binary on a SQLite file: a token needs a scope,
//! the list shows scopes and never a token, a revoked token is no longer found.

use std::process::Command;

use ivr::http::api::token_hash;
use ivr::store::Store;

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli { dir: tempfile::tempdir().unwrap() }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("ivr.db").display())
    }

    /// `ivr ARGS` on this directory's database: (exit code, stdout, stderr).
    fn ivr(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("IVR_DATABASE__URL", self.url())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    async fn store(&self) -> Store {
        Store::open(&self.url(), false).await.unwrap()
    }
}

#[tokio::test]
async fn a_token_needs_a_scope_and_the_message_lists_them() {
    let cli = Cli::new();
    let (code, out, err) = cli.ivr(&["tokens", "add", "contact-app"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "no token printed: {out}");
    for scope in ["verify", "staff", "issue", "import", "read"] {
        assert!(err.contains(scope), "{scope} named: {err}");
    }
    let (code, _, err) = cli.ivr(&["tokens", "add", "contact-app", "--scope", "admin"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("possible values: verify, issue, import, read, followup, staff"), "{err}");
    let (code, _, err) = cli.ivr(&["tokens", "add", " ", "--scope", "verify"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("non-empty"), "{err}");
    let (code, out, _) = cli.ivr(&["tokens", "list"]);
    assert_eq!((code, out.as_str()), (0, ""), "no token was made");
}

#[tokio::test]
async fn tokens_are_made_with_scopes_listed_without_the_token_and_revoked() {
    let cli = Cli::new();
    let (code, app_token, err) = cli.ivr(&["tokens", "add", "contact-app", "--scope", "verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("scope(s) verify"), "{err}");
    let (code, staff_token, err) = cli.ivr(&["tokens", "add", "hokenjo", "--scope", "staff"]);
    assert_eq!(code, 0, "{err}");
    let (code, both, err) = cli.ivr(&["tokens", "add", "both", "--scope", "verify", "--scope", "issue,import"]);
    assert_eq!(code, 0, "{err}");
    let (app_token, staff_token, both) = (app_token.trim(), staff_token.trim(), both.trim());
    assert!(app_token.starts_with("ivr_") && app_token.len() == 52, "{app_token}");

    let store = cli.store().await;
    let scopes = |t: Option<ivr::store::ApiToken>| t.expect("the token is found").scopes.to_string();
    assert_eq!(scopes(store.numbers().token(&token_hash(app_token)).await.unwrap()), "verify");
    assert_eq!(scopes(store.numbers().token(&token_hash(staff_token)).await.unwrap()), "issue,import,read,followup");
    assert_eq!(scopes(store.numbers().token(&token_hash(both)).await.unwrap()), "verify,issue,import");

    let (code, _, err) = cli.ivr(&["tokens", "add", "contact-app", "--scope", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("token 'contact-app' already exists"), "{err}");

    let (code, list, _) = cli.ivr(&["tokens", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = list.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "SCOPES", "CREATED", "LAST", "USED", "REVOKED"], "{list}");
    let rows: Vec<(&str, &str, &str)> = lines[1..].iter().map(|r| (r[0], r[1], *r.last().unwrap())).collect();
    assert_eq!(
        rows,
        [
            ("both", "verify,issue,import", "-"),
            ("contact-app", "verify", "-"),
            ("hokenjo", "issue,import,read,followup", "-")
        ],
        "{list}"
    );
    for secret in [app_token, staff_token, both] {
        assert!(!list.contains(secret) && !list.contains(&token_hash(secret)), "{list}");
    }

    let (code, out, _) = cli.ivr(&["tokens", "revoke", "contact-app"]);
    assert_eq!(code, 0);
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(store.numbers().token(&token_hash(app_token)).await.unwrap(), None, "no longer found");
    assert!(store.numbers().token(&token_hash(staff_token)).await.unwrap().is_some());
    let (code, out, _) = cli.ivr(&["tokens", "revoke", "contact-app"]);
    assert_eq!(code, 0, "revoking again changes nothing");
    assert!(out.contains("already revoked"), "{out}");
    let (code, _, err) = cli.ivr(&["tokens", "revoke", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("no token 'nobody'"), "{err}");
    let (_, list, _) = cli.ivr(&["tokens", "list"]);
    let revoked = list.lines().find(|l| l.starts_with("contact-app")).unwrap();
    assert!(!revoked.trim_end().ends_with('-'), "the revocation time is shown: {list}");
}
