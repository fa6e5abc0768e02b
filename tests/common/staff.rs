//! Staff accounts and a browser-less client for the staff pages: signs in as a browser does
//! (the sign-in page's token and cookie, then the session cookie), keeps the session cookie
//! itself, and reads each form's synchronizer token from the page.

use ivr::store::Store;
use ivr::types::{Role, UiLanguage, UserName};
use secrecy::SecretString;

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Adds an account `name` with [`PASSWORD`].
pub async fn add_user(store: &Store, name: &str, role: Role) {
    let name = UserName::parse(name).unwrap();
    ivr::staff::add_user(store, &name, role, UiLanguage::Ja, &SecretString::from(PASSWORD)).await.unwrap();
}

/// One browser without a script: its cookies, no redirects followed.
pub struct Page {
    pub base: String,
    pub client: reqwest::Client,
    /// The session cookie's value, once signed in.
    pub session: Option<String>,
}

/// An answer: status, `Location`, `Set-Cookie` lines and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub cookies: Vec<String>,
    pub body: String,
}

impl Page {
    pub fn new(base: &str) -> Page {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Page { base: base.into(), client, session: None }
    }

    async fn answer(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let cookies =
            resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
        Answer { status, location, cookies, body: resp.text().await.unwrap() }
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder, extra: Option<String>) -> reqwest::RequestBuilder {
        let mut cookies: Vec<String> = self.session.iter().map(|s| format!("ivr_session={s}")).collect();
        cookies.extend(extra);
        if cookies.is_empty() { req } else { req.header("cookie", cookies.join("; ")) }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Page::answer(self.with_cookie(self.client.get(format!("{}{path}", self.base)), None).send().await.unwrap())
            .await
    }

    /// A form post, as is (the test adds `csrf` itself, or leaves it out).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let req = self.client.post(format!("{}{path}", self.base)).form(form);
        Page::answer(self.with_cookie(req, None).send().await.unwrap()).await
    }

    /// A form post with the synchronizer token read from `page` (a path whose page has a form).
    pub async fn submit(&self, page: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let token = csrf_of(&self.get(page).await.body);
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }

    /// Signs in as a browser does; the answer to the sign-in form's post.
    pub async fn sign_in(&mut self, name: &str, password: &str) -> Answer {
        let form = self.get("/ui/login").await;
        let token = csrf_of(&form.body);
        let login_cookie = form.cookies.iter().find(|c| c.starts_with("ivr_login=")).expect("a form cookie");
        let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
        let req = self.client.post(format!("{}/ui/login", self.base)).form(&[
            ("csrf", token.as_str()),
            ("name", name),
            ("password", password),
        ]);
        let answer = Page::answer(self.with_cookie(req, Some(login_cookie)).send().await.unwrap()).await;
        if let Some(c) = answer.cookies.iter().find(|c| c.starts_with("ivr_session=")) {
            self.session = Some(c["ivr_session=".len()..].split(';').next().unwrap().to_owned());
        }
        answer
    }
}

/// The value of the first `csrf` field of a page.
pub fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no csrf field in {body}"));
    let rest = &body[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}
