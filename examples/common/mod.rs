//! What the page benchmarks share (`#[path = "common/mod.rs"] mod common;`): the staff account
//! they sign in with, and signing in as a browser does.

/// The back ends a benchmark measures (`#[command(flatten)]` into its arguments).
#[derive(clap::Args)]
pub struct Stores {
    /// The PostgreSQL server (a database is created on it for the run).
    #[arg(long, env = "IVR_TEST_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg: String,
    /// Only this back end: sqlite or postgres.
    #[arg(long)]
    pub only: Option<String>,
}

impl Stores {
    /// Whether back end `b` (`sqlite` or `postgres`) is measured.
    pub fn wanted(&self, b: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == b)
    }
}

/// The staff account each benchmark creates and signs in with.
pub const USER: &str = "bench";
pub const PASSWORD: &str = "correct horse battery staple";

type Error = Box<dyn std::error::Error>;

/// Signs in as a browser does (the form's token and cookie); the session cookie's value.
pub async fn sign_in(client: &reqwest::Client, base: &str) -> Result<String, Error> {
    let form = client.get(format!("{base}/ui/login")).send().await?;
    let login = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ivr_login="))
        .ok_or("no sign-in cookie")?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let body = form.text().await?;
    let at = body.find("name=\"csrf\" value=\"").ok_or("no csrf field")? + "name=\"csrf\" value=\"".len();
    let token = &body[at..at + body[at..].find('"').ok_or("no csrf value")?];
    let resp = client
        .post(format!("{base}/ui/login"))
        .header("cookie", login)
        .form(&[("csrf", token), ("name", USER), ("password", PASSWORD)])
        .send()
        .await?;
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ivr_session="))
        .ok_or_else(|| format!("not signed in: {}", resp.status()))?;
    Ok(session["ivr_session=".len()..].split(';').next().unwrap_or_default().to_string())
}

/// Creates a database of its own for a run on the PostgreSQL server at `base`; its name (to
/// drop it after) and its URL.
pub async fn create_database(admin: &mut sqlx::PgConnection, base: &str) -> Result<(String, url::Url), Error> {
    let name = format!("ivr_bench_{:016x}", rand::random::<u64>());
    sqlx::raw_sql(&format!("create database {name}")).execute(admin).await?;
    let mut url = url::Url::parse(base)?;
    url.set_path(&format!("/{name}"));
    Ok((name, url))
}
