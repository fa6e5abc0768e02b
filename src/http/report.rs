//! The patient's web self-report, `/r/{token}`: the daily health check as a form, from the same
//! flow file as the call ([`crate::flow::web`]), sent as one turn of a call with direction `web`
//! ([`crate::calls::web`]).
//!
//! - The token in the path is the patient's personal link ([`crate::store::Links`]): a token
//!   that is no link's, or a link revoked or past the care period, gets a page saying so (in the
//!   patient's language when the link is known, in both otherwise) and changes nothing.
//! - Pages carry every answer given so far (hidden fields on later pages): nothing is stored
//!   before the review step's "send". Errors show beside their field, in the patient's language.
//! - Sending twice (a second tab, a replayed request) stores one report and issues one number:
//!   the form carries its report's key (`round`: the local day and how many web reports the
//!   patient had sent that day when the form was shown), the report's call id is made from it,
//!   and a call already stored answers with its stored page.
//! - No script, nothing fetched from elsewhere, large type, every field labelled; the health
//!   centre's number as a tap-to-call link where the phone's flow offers a person.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};

use super::AppState;
use crate::calls::web::{WebReport, report_fn};
use crate::calls::{CENTRE_PHONE, first_turn, patient_vars, personal_vars};
use crate::flow::web::{Control, End, Posted, Problem, mismatched, walk};
use crate::flow::{CallState, Flow, Value, Vars};
use crate::store::{Caller, IDENTITY_CHECK, Link, LinkState, LinkToken, NewAlert, Patient, StoreError};
use crate::types::{CallSid, Severity};

/// The largest form accepted.
const FORM_LIMIT: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/r/style.css", get(style))
        .route("/r/{token}", get(show).post(send))
        .layer(axum::middleware::from_fn(page_headers))
}

/// Nothing from elsewhere, never framed, never cached, no referrer (the URL is the key).
async fn page_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../templates/report/style.css"),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Words

/// The page's language: Japanese, or English for a patient whose calls are in English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    ja: bool,
}

impl Words {
    fn of(patient_language: &str) -> Words {
        Words { ja: !patient_language.starts_with("en") }
    }

    /// The string in the page's language.
    pub fn say<'a>(&self, ja: &'a str, en: &'a str) -> &'a str {
        if self.ja { ja } else { en }
    }

    pub fn lang(&self) -> &'static str {
        if self.ja { "ja" } else { "en" }
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

/// The health centre's number as a tap-to-call link.
struct CallLink {
    href: String,
    shown: String,
    opens: String,
    closes: String,
}

struct OptionView {
    key: String,
    label: String,
    checked: bool,
}

struct FieldView {
    name: String,
    label: String,
    notes: Vec<String>,
    /// `choice`, `number`, `month_day` or `digits`.
    kind: &'static str,
    options: Vec<OptionView>,
    value: String,
    unit: String,
    hint: String,
    inputmode: &'static str,
    error: Option<String>,
}

struct Answered {
    label: String,
    shown: String,
}

#[derive(Template)]
#[template(path = "report/form.html")]
struct FormPage {
    w: Words,
    token: String,
    round: String,
    page: usize,
    /// The review step: every answer listed, sent with "send".
    review: bool,
    intro: bool,
    notice: Option<String>,
    errors: usize,
    fields: Vec<FieldView>,
    hidden: Vec<(String, String)>,
    answered: Vec<Answered>,
    after: Vec<String>,
    call: Option<CallLink>,
}

#[derive(Template)]
#[template(path = "report/done.html")]
struct DonePage {
    w: Words,
    notes: Vec<String>,
    number: Option<String>,
    expires: Option<String>,
    delivery: Option<String>,
    call: Option<CallLink>,
}

#[derive(Template)]
#[template(path = "report/closed.html")]
struct ClosedPage {
    /// `None`: the link is no link's; the page speaks both languages.
    w: Option<Words>,
    /// `unknown`, `expired`, `revoked`, `identity` (revoked after too many birth dates that did
    /// not match) or `error`.
    why: &'static str,
}

fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "report page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
        }
    }
}

fn closed(status: StatusCode, w: Option<Words>, why: &'static str) -> Response {
    (status, html(&ClosedPage { w, why })).into_response()
}

fn failed(w: Option<Words>, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web report failed");
    closed(StatusCode::INTERNAL_SERVER_ERROR, w, "error")
}

// ---------------------------------------------------------------------------------------------
// The link, the patient and the flow

/// A live link's patient and what a form for them needs.
struct Opened {
    link: Link,
    patient: Patient,
    flow: std::sync::Arc<Flow>,
    lang: String,
    vars: Vars,
    w: Words,
}

/// The link of `token`, live now, and its patient; or the page saying why not.
async fn open(state: &AppState, token: &str, now: DateTime<Utc>) -> Result<(Opened, LinkToken), Response> {
    let Some(token) = LinkToken::parse(token) else {
        return Err(closed(StatusCode::NOT_FOUND, None, "unknown"));
    };
    let link = match state.store.links().find(&token).await {
        Ok(Some(link)) => link,
        Ok(None) => return Err(closed(StatusCode::NOT_FOUND, None, "unknown")),
        Err(e) => return Err(failed(None, e)),
    };
    let patient = match state.store.patients().get(link.patient_id.as_str()).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(closed(StatusCode::NOT_FOUND, None, "unknown")),
        Err(e) => return Err(failed(None, e)),
    };
    let w = Words::of(&patient.language);
    match link.state(now) {
        LinkState::Live => {}
        LinkState::Expired => return Err(closed(StatusCode::GONE, Some(w), "expired")),
        LinkState::Revoked if link.revoked_by.as_deref() == Some(IDENTITY_CHECK) => {
            return Err(closed(StatusCode::GONE, Some(w), "identity"));
        }
        LinkState::Revoked => return Err(closed(StatusCode::GONE, Some(w), "revoked")),
    }
    let Some(flow) = state.flows.current(&state.inbound_flow) else {
        return Err(failed(Some(w), format!("no flow named {}", state.inbound_flow)));
    };
    let number = match state.store.numbers().valid(patient.patient_id.as_str(), now).await {
        Ok(n) => n,
        Err(e) => return Err(failed(Some(w), e)),
    };
    let ctx = &state.turns;
    let mut vars = patient_vars(&patient, number.as_ref(), &ctx.issuer);
    vars.insert(CENTRE_PHONE.into(), Value::text(&*ctx.centre_phone));
    vars.extend(ctx.desk.vars());
    let call = CallState::new(&flow, &patient.language, vars);
    let mut vars = call.vars;
    vars.extend(personal_vars(&patient));
    let lang = call.lang;
    Ok((Opened { link, patient, flow, lang, vars, w }, token))
}

fn call_link(state: &AppState, flow: &Flow) -> Option<CallLink> {
    flow.transfer.as_ref()?;
    let desk = &state.turns.desk;
    let to = desk.to.as_str();
    let shown = match to.strip_prefix("+81") {
        Some(rest) => format!("0{rest}"),
        None => to.to_string(),
    };
    let v = desk.vars();
    let get = |k: &str| v.get(k).map(ToString::to_string).unwrap_or_default();
    Some(CallLink {
        href: format!("tel:{to}"),
        shown,
        opens: get(crate::calls::CENTRE_OPENS),
        closes: get(crate::calls::CENTRE_CLOSES),
    })
}

// ---------------------------------------------------------------------------------------------
// The report's key

/// The local day and the patient's web reports that day before this one: `20261207-0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Round {
    day: NaiveDate,
    n: i64,
}

impl Round {
    fn parse(s: &str) -> Option<Round> {
        let (day, n) = s.split_once('-')?;
        let day = NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
        let n: i64 = n.parse().ok().filter(|n| (0..1000).contains(n))?;
        Some(Round { day, n })
    }

    fn text(&self) -> String {
        format!("{}-{}", self.day.format("%Y%m%d"), self.n)
    }

    /// The report's call id: the link's and the round's.
    fn call_sid(&self, link: &Link) -> CallSid {
        CallSid::parse(&format!("web-{}-{}", link.link_id, self.text())).expect("digits and dashes")
    }
}

/// The local day of `now` and its bounds in UTC.
fn local_day(state: &AppState, now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>, DateTime<Utc>) {
    use chrono::TimeZone;
    let tz = state.turns.issuer.tz;
    let day = now.with_timezone(&tz).date_naive();
    let bound = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map_or(now, |t| t.with_timezone(&Utc))
    };
    (day, bound(day), bound(day.succ_opt().unwrap_or(day)))
}

/// The round a form shown now carries.
async fn current_round(state: &AppState, o: &Opened, now: DateTime<Utc>) -> Result<Round, StoreError> {
    let (day, from, to) = local_day(state, now);
    let n = state.store.links().web_reports(&o.patient.patient_id, from, to).await?;
    Ok(Round { day, n })
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let now = state.campaign.clock.now();
    let (o, _) = match open(&state, &token, now).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let round = match current_round(&state, &o, now).await {
        Ok(r) => r,
        Err(e) => return failed(Some(o.w), e),
    };
    form_page(&state, &o, &token, round, &Posted::new(), Mode::Page { submitted: None }, None)
}

/// What a page shows.
enum Mode {
    /// The page of the first unanswered question; errors on pages up to `submitted`.
    Page { submitted: Option<usize> },
    /// Every question answered so far, to change any of them.
    Edit,
}

async fn send(State(state): State<AppState>, Path(token): Path<String>, body: axum::body::Bytes) -> Response {
    let now = state.campaign.clock.now();
    let (o, _) = match open(&state, &token, now).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    if body.len() > FORM_LIMIT {
        return closed(StatusCode::PAYLOAD_TOO_LARGE, Some(o.w), "error");
    }
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return closed(StatusCode::BAD_REQUEST, Some(o.w), "error");
    };
    let mut posted = Posted::new();
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        match k.strip_prefix("q.") {
            Some(q) if o.flow.state(q).is_some() => drop(posted.insert(q.to_string(), v)),
            Some(_) => {}
            None => drop(meta.insert(k, v)),
        }
    }
    if let Some(page) = identity_check(&state, &o, &posted, now).await {
        return page;
    }
    let fresh = match current_round(&state, &o, now).await {
        Ok(r) => r,
        Err(e) => return failed(Some(o.w), e),
    };
    let round = meta.get("round").and_then(|r| Round::parse(r));
    let submitted = meta.get("page").and_then(|p| p.parse::<usize>().ok());
    match meta.get("step").map(String::as_str) {
        Some("send") => {}
        Some("edit") => return form_page(&state, &o, &token, round.unwrap_or(fresh), &posted, Mode::Edit, None),
        _ => return form_page(&state, &o, &token, round.unwrap_or(fresh), &posted, Mode::Page { submitted }, None),
    }
    // Sending: the same key again is the report already stored.
    let Some(round) = round else {
        return closed(StatusCode::BAD_REQUEST, Some(o.w), "error");
    };
    let sid = round.call_sid(&o.link);
    match state.store.calls().get(sid.as_str()).await {
        Ok(Some(_)) => return stored(&state, &o, &sid).await,
        Ok(None) => {}
        Err(e) => return failed(Some(o.w), e),
    }
    if round != fresh {
        // A form shown on another day, or before a report sent since: shown again, now.
        let notice = o.w.say(
            "この画面は古くなっていました。内容を確かめて、もう一度送信してください。",
            "This page was out of date. Please check your answers and send them again.",
        );
        return form_page(&state, &o, &token, fresh, &posted, Mode::Page { submitted }, Some(notice.to_string()));
    }
    let w = walk(&o.flow, &o.lang, &o.vars, &posted, &BTreeMap::new());
    if w.end != End::Complete {
        return form_page(&state, &o, &token, round, &posted, Mode::Page { submitted }, None);
    }
    let ctx = &state.turns;
    let caller = Caller::Patient(o.patient.patient_id.clone());
    let (first, saved) = first_turn(ctx, &sid, caller, &state.inbound_flow, now);
    let f = report_fn(ctx, posted, now);
    match state.store.calls().turn(sid.as_str(), 0, Some(crate::store::Create::Find(first)), f).await {
        Ok(r) => {
            if let Some(v) = saved.get() {
                state.flows.mark_saved(v);
            }
            if r.queued {
                state.outbox_wake.notify_one();
            }
            metrics::counter!("ivr_web_reports_total").increment(u64::from(!r.replay));
            tracing::info!(patient = %o.patient.patient_id, call_sid = %sid.as_str(), replay = r.replay, "web report stored");
            done(&state, &o, &r.response)
        }
        Err(e) => failed(Some(o.w), e),
    }
}

/// A birth date that does not match counts as a try, as on the phone: the flow's last try of
/// the day revokes the link and alerts the health centre with the flow's own give-up alert (a
/// follow-up item opens, so staff call the patient and send a new link). The page that says so,
/// or `None` to go on (the form shows the error beside the field).
async fn identity_check(state: &AppState, o: &Opened, posted: &Posted, now: DateTime<Utc>) -> Option<Response> {
    let m = mismatched(&o.flow, &walk(&o.flow, &o.lang, &o.vars, posted, &BTreeMap::new()))?;
    let (reason, severity) = m.alert.unwrap_or_else(|| ("identity_not_confirmed".into(), Severity::Normal));
    let alert = NewAlert::flow(&reason, severity);
    let (day, _, _) = local_day(state, now);
    match state.store.links().identity_miss(o.link.link_id, day, m.tries.max(1), &alert, now).await {
        Ok(Some(0)) => {
            metrics::counter!("ivr_report_links_revoked_total", "by" => "identity").increment(1);
            tracing::info!(patient = %o.patient.patient_id, question = %m.state, "web report link revoked: identity not confirmed");
            Some(closed(StatusCode::GONE, Some(o.w), "identity"))
        }
        Ok(Some(_)) => None,
        Ok(None) => Some(closed(StatusCode::GONE, Some(o.w), "revoked")),
        Err(e) => Some(failed(Some(o.w), e)),
    }
}

/// The page of a report already stored (the stored response, opened).
async fn stored(state: &AppState, o: &Opened, sid: &CallSid) -> Response {
    // The turn's replay answers its stored response and runs nothing.
    let f: crate::store::TurnFn = Box::new(|_| Err("a stored report is not run again".into()));
    match state.store.calls().turn(sid.as_str(), 0, None, f).await {
        Ok(r) => done(state, o, &r.response),
        Err(e) => failed(Some(o.w), e),
    }
}

fn done(state: &AppState, o: &Opened, response: &str) -> Response {
    let Some(report) = WebReport::read(&state.turns.issuer, response) else {
        return failed(Some(o.w), "a stored web report could not be read");
    };
    let w = o.w;
    let delivery = report.delivery.as_deref().map(|d| match d {
        "sms" => w.say("ショートメッセージでもお送りしました。", "We have also sent it by text message."),
        "email" => w.say("メールでもお送りしました。", "We have also sent it by e-mail."),
        _ => w.say("次回のお電話でもお伝えします。", "The next call will also read it to you."),
    });
    let number = report.number.as_deref().map(|n| {
        let chars: Vec<char> = n.chars().collect();
        chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
    });
    let expires = report
        .expires
        .as_deref()
        .map(|e| crate::flow::prompts::read_aloud(&Value::text(e), crate::flow::prompts::Format::DateTime, w.ja));
    html(&DonePage {
        w,
        notes: report.notes,
        number,
        expires,
        delivery: delivery.map(str::to_string),
        call: call_link(state, &o.flow),
    })
}

fn form_page(
    state: &AppState,
    o: &Opened,
    token: &str,
    round: Round,
    posted: &Posted,
    mode: Mode,
    notice: Option<String>,
) -> Response {
    let walked = walk(&o.flow, &o.lang, &o.vars, posted, &BTreeMap::new());
    let w = o.w;
    let open_group = walked.group();
    let review = open_group.is_none() && !matches!(mode, Mode::Edit);
    let (visible, show_errors): (GroupTest, GroupTest) = match (&mode, open_group) {
        (Mode::Edit, _) => (Box::new(|_| true), Box::new(|_| false)),
        (Mode::Page { .. }, None) => (Box::new(|_| false), Box::new(|_| false)),
        (Mode::Page { submitted }, Some(g)) => {
            let submitted = *submitted;
            (Box::new(move |f| f == g), Box::new(move |f| submitted.is_some_and(|s| f <= s)))
        }
    };
    let mut fields = Vec::new();
    let mut hidden = Vec::new();
    let mut answered = Vec::new();
    for f in &walked.fields {
        if visible(f.group) {
            let error = f.problem.as_ref().filter(|_| show_errors(f.group)).map(|p| problem_text(w, p, &f.control));
            fields.push(view(w, f, error));
        } else if !f.value.is_empty() {
            hidden.push((format!("q.{}", f.state), f.value.clone()));
        }
        if let Some(shown) = &f.shown {
            answered.push(Answered { label: f.label.clone(), shown: shown.clone() });
        }
    }
    let errors = fields.iter().filter(|f| f.error.is_some()).count();
    let page = FormPage {
        w,
        token: token.to_string(),
        round: round.text(),
        page: open_group.unwrap_or(0),
        review,
        intro: open_group == Some(0) && !matches!(mode, Mode::Edit),
        notice,
        errors,
        fields,
        hidden,
        answered,
        after: if review { walked.after.clone() } else { vec![] },
        call: call_link(state, &o.flow),
    };
    let status = if errors > 0 { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    (status, html(&page)).into_response()
}

/// Whether something holds for the fields of a page (by its number).
type GroupTest = Box<dyn Fn(usize) -> bool>;

fn view(w: Words, f: &crate::flow::web::Field, error: Option<String>) -> FieldView {
    let mut v = FieldView {
        name: format!("q.{}", f.state),
        label: f.label.clone(),
        notes: f.notes.clone(),
        kind: "choice",
        options: vec![],
        value: f.value.clone(),
        unit: String::new(),
        hint: String::new(),
        inputmode: "numeric",
        error,
    };
    match &f.control {
        Control::Choice { options } => {
            v.options = options
                .iter()
                .map(|(k, l)| OptionView { key: k.clone(), label: l.clone(), checked: *k == f.value })
                .collect();
        }
        Control::Number { min, max, scale, unit } => {
            v.kind = "number";
            v.unit = unit.clone().unwrap_or_default();
            v.inputmode = if *scale > 0 { "decimal" } else { "numeric" };
            v.hint = range_text(w, min.as_deref(), max.as_deref(), unit.as_deref());
        }
        Control::MonthDay => {
            v.kind = "month_day";
            v.hint = w.say("例: 4月12日は 0412", "For example, April 12 is 0412").to_string();
        }
        Control::Digits { min, max } => {
            v.kind = "digits";
            v.inputmode = "tel";
            v.hint = if min == max {
                format!("{}{}", max, w.say("桁の数字", " digits"))
            } else {
                format!("{min}–{max}{}", w.say("桁の数字", " digits"))
            };
        }
    }
    v
}

fn range_text(w: Words, min: Option<&str>, max: Option<&str>, unit: Option<&str>) -> String {
    let unit = unit.unwrap_or("");
    match (min, max) {
        (Some(a), Some(b)) if w.ja => format!("{a}{unit}から{b}{unit}までの数字"),
        (Some(a), Some(b)) => format!("A number from {a} to {b} {unit}").trim_end().to_string(),
        (Some(a), None) if w.ja => format!("{a}{unit}以上の数字"),
        (Some(a), None) => format!("A number of at least {a} {unit}").trim_end().to_string(),
        (None, Some(b)) if w.ja => format!("{b}{unit}以下の数字"),
        (None, Some(b)) => format!("A number of at most {b} {unit}").trim_end().to_string(),
        (None, None) => w.say("数字", "A number").to_string(),
    }
}

fn problem_text(w: Words, p: &Problem, control: &Control) -> String {
    match (p, control) {
        (Problem::Missing, Control::Choice { .. }) => {
            w.say("どれか一つを選んでください。", "Please choose one.").into()
        }
        (Problem::Missing, _) => w.say("入力してください。", "Please fill this in.").into(),
        (Problem::Mismatch(words), _) if !words.is_empty() => words.clone(),
        (Problem::Mismatch(_), _) => {
            w.say("登録されている内容と一致しません。", "This does not match our records.").into()
        }
        (Problem::Invalid, Control::Number { min, max, unit, .. }) => {
            let range = range_text(w, min.as_deref(), max.as_deref(), unit.as_deref());
            if w.ja {
                format!("{range}で入力してください。")
            } else {
                format!("Please enter {}.", lower_first(&range))
            }
        }
        (Problem::Invalid, Control::MonthDay) => w
            .say(
                "月と日を4桁の数字で入力してください（例: 0412）。",
                "Please enter the month and day as four digits (e.g. 0412).",
            )
            .into(),
        (Problem::Invalid, Control::Digits { .. }) => {
            w.say("正しい番号を数字で入力してください。", "Please enter a valid number in digits.").into()
        }
        (Problem::Invalid, Control::Choice { .. }) => {
            w.say("どれか一つを選んでください。", "Please choose one.").into()
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
