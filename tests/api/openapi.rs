//! docs/openapi.json against the code. The description must list exactly the API and ops
//! routers' routes with their methods; every response status it documents must be one a handler
//! really returns (each is produced here by a request to a running server, and the body checked
//! against the documented schema); every status the two modules name must be documented; and
//! the documented error examples must be the server's answers, word for word. Schemathesis (tests/api/schemathesis.rs) generates requests of its own.

use std::collections::BTreeSet;

use ivr::http::api::token_hash;
use ivr::types::Scopes;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::common::app::{TestApp as App, settings, spawn_app_with, sqlite_url};

const SPEC: &str = include_str!("../../docs/openapi.json");
const API_SOURCE: &str = include_str!("../../src/http/api.rs");
/// The handlers of the staff routes the API router names.
const FOLLOWUPS_SOURCE: &str = include_str!("../../src/http/followups.rs");
const OPS_SOURCE: &str = include_str!("../../src/http/ops.rs");

const VERIFY: &str = "/api/v1/processing-numbers/verify";
const ISSUE: &str = "/api/v1/patients/{id}/processing-number";
const IMPORT: &str = "/api/v1/patients/import";
const FOLLOWUPS: &str = "/api/v1/followups";
const CLAIM: &str = "/api/v1/followups/{id}/claim";
const RELEASE: &str = "/api/v1/followups/{id}/release";
const CLOSE: &str = "/api/v1/followups/{id}/close";
const PATIENTS: &str = "/api/v1/patients";
const PATIENT: &str = "/api/v1/patients/{id}";
const PATIENT_CALLS: &str = "/api/v1/patients/{id}/calls";
const FIGURES: &str = "/api/v1/figures";
const TODAY: &str = "/api/v1/today";
const REPORT_LINK: &str = "/api/v1/patients/{id}/report-link";
const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const METRICS: &str = "/metrics";
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn spec() -> Value {
    serde_json::from_str(SPEC).expect("docs/openapi.json is JSON")
}

/// Follows a local `$ref` (`#/components/...`), however many times it takes.
fn resolve<'a>(spec: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("only local $refs: {r}"));
        v = spec.pointer(pointer).unwrap_or_else(|| panic!("{r} points at nothing"));
    }
    v
}

/// (path, method) of every operation documented.
fn documented_operations(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for (key, _) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&key.as_str()) || key == "parameters", "{path}: unexpected key {key}");
            if key != "parameters" {
                ops.insert((path.clone(), key.clone()));
            }
        }
    }
    ops
}

/// (path, method) of every `.route("…", method(handler)…)` in the API and ops routers' sources.
fn routed_operations() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for source in [API_SOURCE, OPS_SOURCE] {
        routes_in(source, &mut ops);
    }
    ops
}

fn routes_in(source: &str, ops: &mut BTreeSet<(String, String)>) {
    let before = ops.len();
    let mut rest = source;
    while let Some(i) = rest.find(".route(\"") {
        rest = &rest[i + ".route(\"".len()..];
        let end = rest.find('"').expect("the path's closing quote");
        let path = rest[..end].to_string();
        // `post(verify)`, or chained: `get(a).post(b)`.
        let mut handlers = rest[end + 1..].trim_start().strip_prefix(',').expect("a comma after the path").trim_start();
        loop {
            let open = handlers.find('(').expect("a method router");
            let method = handlers[..open].trim().to_string();
            assert!(METHODS.contains(&method.as_str()), "{path}: '{method}' is not a method router this test knows");
            ops.insert((path.clone(), method));
            let close = handlers[open..].find(')').expect("the handler's closing parenthesis") + open;
            handlers = &handlers[close + 1..];
            match handlers.strip_prefix('.') {
                Some(more) => handlers = more,
                None => break,
            }
        }
    }
    assert!(ops.len() > before, "no routes found in a router's source");
}

#[test]
fn every_route_of_the_api_router_is_documented_with_its_method_and_nothing_else_is() {
    let spec = spec();
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "an OpenAPI 3.1 document");
    let routed = routed_operations();
    assert_eq!(
        routed,
        BTreeSet::from([
            (VERIFY.to_string(), "post".to_string()),
            (ISSUE.to_string(), "post".to_string()),
            (IMPORT.to_string(), "post".to_string()),
            (FOLLOWUPS.to_string(), "get".to_string()),
            (CLAIM.to_string(), "post".to_string()),
            (RELEASE.to_string(), "post".to_string()),
            (CLOSE.to_string(), "post".to_string()),
            (PATIENTS.to_string(), "get".to_string()),
            (PATIENT.to_string(), "get".to_string()),
            (PATIENT_CALLS.to_string(), "get".to_string()),
            (FIGURES.to_string(), "get".to_string()),
            (TODAY.to_string(), "get".to_string()),
            (REPORT_LINK.to_string(), "post".to_string()),
            (REPORT_LINK.to_string(), "delete".to_string()),
            (HEALTHZ.to_string(), "get".to_string()),
            (READYZ.to_string(), "get".to_string()),
            (METRICS.to_string(), "get".to_string()),
        ]),
        "the routes this test drives below"
    );
    assert_eq!(documented_operations(&spec), routed, "docs/openapi.json documents exactly the router's routes");
    // Path parameters: axum's `{id}` is OpenAPI's `{id}`, and each one is described.
    for (path, method) in &routed {
        let op = &spec["paths"][path][method];
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().map(|p| resolve(&spec, p)).filter(|p| p["in"] == "path").collect::<Vec<_>>())
            .unwrap_or_default()
            .iter()
            .map(|p| p["name"].as_str().expect("a parameter name"))
            .collect();
        let in_path: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        // The API is behind a bearer token, so its operations document 401 (and 403, for a token
        // without the scope); the operations routes say they need none.
        if path.starts_with("/api/") {
            let security = op.get("security").unwrap_or(&spec["security"]);
            let bearer = security.as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            assert!(bearer, "{method} {path}: a bearer token");
            for status in ["401", "403"] {
                assert!(op["responses"].get(status).is_some(), "{method} {path} documents {status}");
            }
        } else {
            assert_eq!(op["security"], json!([]), "{method} {path}: no token");
        }
    }
    // Links (which Schemathesis follows: an issued number, then its verification) name
    // operations that exist, and keys of the answer they come from.
    let ids: BTreeSet<&str> = routed.iter().filter_map(|(p, m)| spec["paths"][p][m]["operationId"].as_str()).collect();
    assert_eq!(ids.len(), routed.len(), "every operation has its own operationId");
    let mut links = 0;
    for (path, method) in &routed {
        for (status, r) in spec["paths"][path][method]["responses"].as_object().unwrap() {
            let r = resolve(&spec, r);
            for (name, link) in r["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap_or_default();
                assert!(ids.contains(target), "{method} {path} {status} link {name}: no operation {target}");
                let schema = resolve(&spec, &r["content"]["application/json"]["schema"]);
                for expr in link["requestBody"].as_object().into_iter().flatten().filter_map(|(_, v)| v.as_str()) {
                    let key = expr.strip_prefix("$response.body#/").expect("a link from the answer's body");
                    assert!(schema["properties"].get(key).is_some(), "{name}: the answer has no {key}");
                }
                links += 1;
            }
        }
    }
    assert!(links >= 1, "the issue-then-verify link");
    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")));
    assert_eq!(spec["security"], json!([{"bearer": []}]));
}

/// The HTTP status named by a `StatusCode::NAME` in the API module.
fn status_code(name: &str) -> u16 {
    match name {
        "OK" => 200,
        "CREATED" => 201,
        "BAD_REQUEST" => 400,
        "UNAUTHORIZED" => 401,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "CONFLICT" => 409,
        "PAYLOAD_TOO_LARGE" => 413,
        "UNSUPPORTED_MEDIA_TYPE" => 415,
        "UNPROCESSABLE_ENTITY" => 422,
        "TOO_MANY_REQUESTS" => 429,
        "INTERNAL_SERVER_ERROR" => 500,
        "SERVICE_UNAVAILABLE" => 503,
        other => panic!("StatusCode::{other} is new to this test: add it here and document it"),
    }
}

#[test]
fn every_status_the_api_module_names_is_documented() {
    let spec = spec();
    let documented: BTreeSet<u16> = documented_operations(&spec)
        .iter()
        .flat_map(|(p, m)| spec["paths"][p][m]["responses"].as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .map(|s| s.parse().expect("numeric status codes only"))
        .collect();
    let mut named = BTreeSet::new();
    for part in [API_SOURCE, OPS_SOURCE, FOLLOWUPS_SOURCE].iter().flat_map(|s| s.split("StatusCode::").skip(1)) {
        let name: String = part.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        if !name.is_empty() {
            named.insert(status_code(&name));
        }
    }
    assert!(named.len() >= 5, "{named:?}");
    let missing: Vec<_> = named.difference(&documented).collect();
    assert!(missing.is_empty(), "returned by src/http/api.rs but not documented: {missing:?}");
}

#[test]
fn every_example_in_the_description_matches_its_schema() {
    let spec = spec();
    let mut checked = 0;
    for (path, method) in documented_operations(&spec) {
        let op = &spec["paths"][&path][&method];
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = resolve(&spec, p);
            if let Some(ex) = p.get("example") {
                let errors = validate(&spec, &p["schema"], ex, "$");
                assert!(errors.is_empty(), "{method} {path} parameter {}: {errors:?}", p["name"]);
                checked += 1;
            }
        }
        let mut media = vec![];
        if let Some(body) = op.get("requestBody") {
            for (ct, m) in resolve(&spec, body)["content"].as_object().unwrap() {
                media.push((format!("{method} {path} request {ct}"), m));
            }
        }
        for (status, r) in op["responses"].as_object().unwrap() {
            let r = resolve(&spec, r);
            assert!(r["description"].is_string(), "{method} {path} {status}: a description");
            for (ct, m) in r["content"].as_object().expect("every response has content") {
                media.push((format!("{method} {path} {status} {ct}"), m));
            }
        }
        for (what, m) in media {
            let schema = m.get("schema").unwrap_or_else(|| panic!("{what}: a schema"));
            let examples = m["examples"].as_object().unwrap_or_else(|| panic!("{what}: examples"));
            for (name, ex) in examples {
                let errors = validate(&spec, schema, &ex["value"], "$");
                assert!(errors.is_empty(), "{what} example {name}: {errors:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "{checked}");
}

// ---- a small JSON Schema validator, for the keywords this description uses ----

const ANNOTATIONS: [&str; 5] = ["description", "title", "default", "examples", "deprecated"];

/// Errors of `v` against `schema`. A keyword this validator does not implement is an error
/// too, so that nothing in the description goes unchecked.
fn validate(spec: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let schema = resolve(spec, schema);
    let mut errors = vec![];
    let Some(obj) = schema.as_object() else { return vec![format!("{at}: a schema must be an object")] };
    for (k, s) in obj {
        match k.as_str() {
            "$ref" => {}
            k if ANNOTATIONS.contains(&k) => {}
            "allOf" => {
                for sub in s.as_array().expect("allOf is a list") {
                    errors.extend(validate(spec, sub, v, at));
                }
            }
            "oneOf" => {
                let matching = s
                    .as_array()
                    .expect("oneOf is a list")
                    .iter()
                    .filter(|sub| validate(spec, sub, v, at).is_empty())
                    .count();
                if matching != 1 {
                    errors.push(format!("{at}: {v} matches {matching} of oneOf {s}"));
                }
            }
            "not" => {
                if validate(spec, s, v, at).is_empty() {
                    errors.push(format!("{at}: matches {s}, which it must not"));
                }
            }
            "type" => {
                // One type, or a list of them (`["string", "null"]`).
                let types: Vec<&str> = match s {
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().expect("a type name")).collect(),
                    t => vec![t.as_str().expect("a type name")],
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => v.is_object(),
                    "string" => v.is_string(),
                    "boolean" => v.is_boolean(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    "array" => v.is_array(),
                    "null" => v.is_null(),
                    t => panic!("unknown type {t}"),
                });
                if !ok {
                    errors.push(format!("{at}: {v} is not of type {s}"));
                }
            }
            "required" => {
                for name in s.as_array().expect("required is a list") {
                    let name = name.as_str().unwrap();
                    if v.is_object() && v.get(name).is_none() {
                        errors.push(format!("{at}: {name} is required"));
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in s.as_object().expect("properties is an object") {
                        if let Some(pv) = o.get(name) {
                            errors.extend(validate(spec, sub, pv, &format!("{at}.{name}")));
                        }
                    }
                }
            }
            "additionalProperties" => {
                let known: BTreeSet<&String> =
                    obj.get("properties").and_then(Value::as_object).map(|p| p.keys().collect()).unwrap_or_default();
                if let Some(o) = v.as_object() {
                    for (name, pv) in o.iter().filter(|(n, _)| !known.contains(n)) {
                        if s == &json!(false) {
                            errors.push(format!("{at}: {name} is not allowed"));
                        } else {
                            // A schema every other property must match (a map's values).
                            errors.extend(validate(spec, s, pv, &format!("{at}.{name}")));
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = v.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        errors.extend(validate(spec, s, item, &format!("{at}[{i}]")));
                    }
                }
            }
            "enum" => {
                if !s.as_array().expect("enum is a list").contains(v) {
                    errors.push(format!("{at}: {v} is not one of {s}"));
                }
            }
            "const" => {
                if s != v {
                    errors.push(format!("{at}: {v} is not {s}"));
                }
            }
            "format" => {
                assert!(s == "date-time" || s == "date", "{at}: only the date-time and date formats are checked");
                if let Some(t) = v.as_str() {
                    if s == "date-time" && chrono::DateTime::parse_from_rfc3339(t).is_err() {
                        errors.push(format!("{at}: {t} is not an RFC 3339 date-time"));
                    }
                    if s == "date" && chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err() {
                        errors.push(format!("{at}: {t} is not a date"));
                    }
                }
            }
            "pattern" => {
                // ECMA-262 in the description; the patterns used are in the common subset.
                let re = regex::Regex::new(s.as_str().expect("a pattern is a string"))
                    .unwrap_or_else(|e| panic!("{at}: pattern {s}: {e}"));
                if let Some(t) = v.as_str() {
                    if !re.is_match(t) {
                        errors.push(format!("{at}: {t:?} does not match {s}"));
                    }
                }
            }
            "minimum" => {
                let bound = s.as_i64().expect("an integer minimum");
                if v.as_i64().is_some_and(|n| n < bound) {
                    errors.push(format!("{at}: {v} is below {bound}"));
                }
            }
            "maximum" => {
                let bound = s.as_i64().expect("an integer maximum");
                if v.as_i64().is_some_and(|n| n > bound) {
                    errors.push(format!("{at}: {v} is above {bound}"));
                }
            }
            "minLength" | "maxLength" => {
                if let Some(t) = v.as_str() {
                    let n = t.chars().count() as u64;
                    let bound = s.as_u64().expect("a length");
                    if (k == "minLength" && n < bound) || (k == "maxLength" && n > bound) {
                        errors.push(format!("{at}: length {n} breaks {k} {bound}"));
                    }
                }
            }
            other => errors.push(format!("{at}: the schema keyword '{other}' is not checked by tests/openapi.rs")),
        }
    }
    errors
}

// ---- the documented statuses, produced by a running server ----

const MOBILE: &str = "+819012345678";
const LANDLINE: &str = "+81312345678";

async fn spawn() -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.issuer.key = Some(SecretString::from("openapi-test-issuer-key"));
    // One verification a minute per client: each case below has its own token.
    s.api.verify_per_minute = 1;
    // The staff token's cases stay within these; the cases about them are the last.
    s.api.issue_per_minute = 20;
    s.api.issue_per_patient_per_hour = 3;
    let app = spawn_app_with(s, dir).await;
    for (id, phone) in [("P001", MOBILE), ("P003", LANDLINE)] {
        app.add_patient(id, phone).await;
    }
    app
}

/// One request, what it must get, and which documented example (if any) is its answer.
struct Case {
    name: String,
    /// The method, as documented (`post` for most of the API, `get` for the staff reads and the operations routes).
    method: &'static str,
    /// The operation, as documented.
    path: &'static str,
    /// The path requested (the operation's, with parameters filled in).
    url: String,
    token: Option<String>,
    /// The authorization scheme the token is sent with.
    scheme: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    example: Option<&'static str>,
}

impl Case {
    fn new(name: &str, path: &'static str, url: &str, status: u16) -> Case {
        Case {
            name: name.into(),
            method: "post",
            path,
            url: url.into(),
            token: None,
            scheme: "Bearer",
            content_type: Some("application/json"),
            body: vec![],
            status,
            example: None,
        }
    }
    /// A GET without a body (the operations routes).
    fn get(name: &str, path: &'static str, status: u16) -> Case {
        Case { method: "get", content_type: None, ..Case::new(name, path, path, status) }
    }
    /// The same request as a GET, with no body (the staff reads).
    fn read_by_get(mut self) -> Case {
        self.method = "get";
        self.content_type = None;
        self
    }
    fn token(mut self, t: &str) -> Case {
        self.token = Some(t.into());
        self
    }
    fn json(mut self, v: Value) -> Case {
        self.body = v.to_string().into_bytes();
        self
    }
    fn raw(mut self, body: &str) -> Case {
        self.body = body.as_bytes().to_vec();
        self
    }
    fn csv(mut self, body: &str) -> Case {
        self.content_type = Some("text/csv");
        self.body = body.as_bytes().to_vec();
        self
    }
    fn example(mut self, e: &'static str) -> Case {
        self.example = Some(e);
        self
    }
}

/// A token with these scopes (`verify`, `staff`, …).
async fn token(app: &App, name: &str, scopes: &str) -> String {
    let t = format!("ivr_openapi_{name}");
    app.store.numbers().add_token(name, &token_hash(&t), Scopes::parse(scopes).unwrap()).await.unwrap();
    t
}

/// What the requests so far have shown: (path, status) produced, error examples answered.
#[derive(Default)]
struct Seen {
    statuses: BTreeSet<(String, String)>,
    examples: BTreeSet<String>,
}

/// Sends a case and checks the answer against the description: the status is the one
/// expected and documented for the operation, the content type is documented for it, the
/// body matches the documented schema, and equals the named example. Returns the body.
async fn run(spec: &Value, app: &App, c: Case, seen: &mut Seen) -> Value {
    let name = &c.name;
    let method = reqwest::Method::from_bytes(c.method.to_uppercase().as_bytes()).unwrap();
    let mut req = reqwest::Client::new().request(method, format!("{}{}", app.addr, c.url)).body(c.body.clone());
    if let Some(ct) = c.content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = &c.token {
        req = req.header("authorization", format!("{} {t}", c.scheme));
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();

    assert_eq!(status, c.status, "{name}: {body}");
    let response = spec["paths"][c.path][c.method]["responses"]
        .get(status.to_string())
        .map(|r| resolve(spec, r))
        .unwrap_or_else(|| panic!("{name}: status {status} is not documented for {} {}", c.method, c.path));
    // Every header documented for the answer is sent (`Retry-After` with a 429), and is of its
    // schema (an integer read as one).
    for (header, h) in response["headers"].as_object().into_iter().flatten() {
        let h = resolve(spec, h);
        let text = headers
            .get(header.as_str())
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name}: no {header} header, which is documented"));
        let value = if h["schema"]["type"] == "integer" {
            text.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| panic!("{name}: {header}: {text} is not an integer"))
        } else {
            Value::String(text.to_string())
        };
        let errors = validate(spec, &h["schema"], &value, header);
        assert!(errors.is_empty(), "{name}: {header}: {errors:?}");
    }
    let media = response["content"]
        .get(&ct)
        .unwrap_or_else(|| panic!("{name}: {status} answered {ct}, which is not documented: {body}"));
    let value = if ct == "application/json" {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}"))
    } else {
        Value::String(body.clone())
    };
    let errors = validate(spec, &media["schema"], &value, "$");
    assert!(errors.is_empty(), "{name}: {body} does not match the documented schema: {errors:?}");
    if let Some(e) = c.example {
        let documented = &media["examples"][e]["value"];
        assert!(!documented.is_null(), "{name}: no example {e} under {status} {ct}");
        assert_eq!(&value, documented, "{name}: the documented example {e} is not what the server answers");
        seen.examples.insert(format!("{} {status} {ct} {e}", c.path));
    }
    seen.statuses.insert((c.path.to_string(), status.to_string()));
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_status_is_one_the_handlers_return_with_the_documented_body() {
    let spec = spec();
    let app = spawn().await;
    let issue_p = |id: &str| format!("/api/v1/patients/{id}/processing-number");
    let mut seen = Seen::default();

    // The manual issue: a number for P001, which the verification cases then use.
    let staff = token(&app, "staff", "staff").await;
    let app_only = token(&app, "app-only", "verify").await;
    let issued = run(
        &spec,
        &app,
        Case::new("issue by sms", ISSUE, &issue_p("P001"), 201)
            .token(&staff)
            .json(json!({"consent": true, "send": "sms", "staff": "佐藤"})),
        &mut seen,
    )
    .await;
    let number = issued["number"].as_str().expect("the number").to_string();
    assert_eq!(issued["send"], "sms");

    let issue_cases = vec![
        Case::new("issue, nothing sent", ISSUE, &issue_p("P003"), 201)
            .token(&staff)
            .json(json!({"consent": true, "send": "none"})),
        Case::new("issue, no token", ISSUE, &issue_p("P001"), 401)
            .json(json!({"consent": true}))
            .example("unauthorized"),
        Case::new("issue, unknown token", ISSUE, &issue_p("P001"), 401)
            .token("ivr_not_a_token")
            .json(json!({"consent": true}))
            .example("unauthorized"),
        Case::new("issue, a verify token", ISSUE, &issue_p("P001"), 403)
            .token(&app_only)
            .json(json!({"consent": true}))
            .example("forbidden"),
        Case::new("issue, truncated JSON", ISSUE, &issue_p("P001"), 400)
            .token(&staff)
            .raw(r#"{"consent": "#)
            .example("truncated"),
        Case::new("issue, id not UTF-8", ISSUE, &issue_p("P%FF"), 400)
            .token(&staff)
            .json(json!({"consent": true}))
            .example("bad_path"),
        Case::new("issue, id no roster holds", ISSUE, &issue_p("P%201"), 400)
            .token(&staff)
            .json(json!({"consent": true}))
            .example("not_a_patient_id"),
        Case::new("issue, unknown patient", ISSUE, &issue_p("P999"), 404)
            .token(&staff)
            .json(json!({"consent": true}))
            .example("unknown_patient"),
        Case::new("issue, body too large", ISSUE, &issue_p("P001"), 413)
            .token(&staff)
            .json(json!({"consent": true, "staff": "x".repeat(3 << 20)}))
            .example("too_large"),
        Case { content_type: None, ..Case::new("issue, no content type", ISSUE, &issue_p("P001"), 415) }
            .token(&staff)
            .json(json!({"consent": true}))
            .example("no_content_type"),
        Case::new("issue, no consent", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .json(json!({}))
            .example("no_consent"),
        Case::new("issue, consent false", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .json(json!({"consent": false}))
            .example("no_consent"),
        Case::new("issue, sms to a landline", ISSUE, &issue_p("P003"), 422)
            .token(&staff)
            .json(json!({"consent": true, "send": "sms"}))
            .example("not_a_mobile"),
        Case::new("issue, e-mail without an address", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .json(json!({"consent": true, "send": "email"}))
            .example("no_email"),
        Case::new("issue, staff null", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .raw(r#"{"consent": true, "staff": null}"#)
            .example("staff_null"),
        Case::new("issue, staff only spaces", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .json(json!({"consent": true, "staff": "\u{3000} "})),
        Case::new("issue, staff too long", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .json(json!({"consent": true, "staff": "x".repeat(101)})),
        Case::new("issue, send null", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .json(json!({"consent": true, "send": null})),
        Case::new("issue, unknown channel", ISSUE, &issue_p("P001"), 422)
            .token(&staff)
            .raw(r#"{"consent": true, "send": "fax"}"#)
            .example("unknown_channel"),
    ];
    for c in issue_cases {
        run(&spec, &app, c, &mut seen).await;
    }

    // Verification: each case has its own client, so the rate limit (1 a minute) touches none
    // but the one about it.
    let mut clients = Vec::new();
    for i in 0..14 {
        clients.push(token(&app, &format!("app-{i}"), "verify").await);
    }
    let mut clients = clients.into_iter();
    let mut client = || clients.next().expect("enough clients");
    let ok = run(
        &spec,
        &app,
        Case::new("verify, valid", VERIFY, VERIFY, 200).token(&client()).json(json!({"number": number})),
        &mut seen,
    )
    .await;
    assert_eq!(ok["valid"], true);
    let used = run(
        &spec,
        &app,
        Case::new("verify, used", VERIFY, VERIFY, 404)
            .token(&client())
            .json(json!({"number": number}))
            .example("invalid_or_expired"),
        &mut seen,
    )
    .await;
    let other = if number == "00000000" { "00000001" } else { "00000000" };
    let unknown = run(
        &spec,
        &app,
        Case::new("verify, unknown", VERIFY, VERIFY, 404)
            .token(&client())
            .json(json!({"number": other}))
            .example("invalid_or_expired"),
        &mut seen,
    )
    .await;
    assert_eq!(used, unknown, "used and unknown numbers are answered alike");
    let verify_cases = vec![
        Case::new("verify, no token", VERIFY, VERIFY, 401).json(json!({"number": "12345678"})).example("unauthorized"),
        Case::new("verify, a staff token", VERIFY, VERIFY, 403)
            .token(&staff)
            .json(json!({"number": "12345678"}))
            .example("forbidden"),
        Case { scheme: "Basic", ..Case::new("verify, another scheme", VERIFY, VERIFY, 401) }
            .token(&client())
            .json(json!({"number": "12345678"}))
            .example("unauthorized"),
        Case::new("verify, truncated JSON", VERIFY, VERIFY, 400)
            .token(&client())
            .raw(r#"{"number":"1234"#)
            .example("truncated"),
        Case::new("verify, body too large", VERIFY, VERIFY, 413)
            .token(&client())
            .json(json!({"number": "1".repeat(3 << 20)}))
            .example("too_large"),
        Case { content_type: None, ..Case::new("verify, no content type", VERIFY, VERIFY, 415) }
            .token(&client())
            .json(json!({"number": "12345678"}))
            .example("no_content_type"),
        Case::new("verify, 7 digits", VERIFY, VERIFY, 422)
            .token(&client())
            .json(json!({"number": "1234567"}))
            .example("wrong_length"),
        Case::new("verify, full-width digits", VERIFY, VERIFY, 422)
            .token(&client())
            .json(json!({"number": "１２３４５６７８"}))
            .example("not_digits"),
        Case::new("verify, letters", VERIFY, VERIFY, 422)
            .token(&client())
            .json(json!({"number": "1234-567a"}))
            .example("not_digits"),
        Case::new("verify, null", VERIFY, VERIFY, 422).token(&client()).json(json!({"number": null})),
        Case::new("verify, misspelt key", VERIFY, VERIFY, 422)
            .token(&client())
            .raw(r#"{"numbr": "12345678"}"#)
            .example("unknown_key"),
    ];
    for c in verify_cases {
        run(&spec, &app, c, &mut seen).await;
    }
    let limited = client();
    run(
        &spec,
        &app,
        Case::new("verify, within the limit", VERIFY, VERIFY, 404).token(&limited).json(json!({"number": other})),
        &mut seen,
    )
    .await;
    run(
        &spec,
        &app,
        Case::new("verify, over the limit", VERIFY, VERIFY, 429)
            .token(&limited)
            .json(json!({"number": other}))
            .example("rate_limited"),
        &mut seen,
    )
    .await;
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 1, "only P003's number is valid: P001's was used");

    // The issue limits. P003 has had one issue counted (the SMS to a landline, refused, was
    // not): two more are issued, the fourth refused.
    for n in 2..=3 {
        run(
            &spec,
            &app,
            Case::new(&format!("issue, the patient's {n} within the limit"), ISSUE, &issue_p("P003"), 201)
                .token(&staff)
                .json(json!({"consent": true, "send": "none"})),
            &mut seen,
        )
        .await;
    }
    run(
        &spec,
        &app,
        Case::new("issue, over the patient's limit", ISSUE, &issue_p("P003"), 429)
            .token(&staff)
            .json(json!({"consent": true, "send": "none"}))
            .example("patient_rate_limited"),
        &mut seen,
    )
    .await;
    // A client of its own, whose requests (refused for want of consent) use up its minute.
    let busy = token(&app, "busy-staff", "issue").await;
    for i in 0..20 {
        let c = Case::new(&format!("issue, no consent {i}"), ISSUE, &issue_p("P001"), 422).token(&busy);
        run(&spec, &app, c.json(json!({"consent": false})), &mut seen).await;
    }
    run(
        &spec,
        &app,
        Case::new("issue, over the client's limit", ISSUE, &issue_p("P001"), 429)
            .token(&busy)
            .json(json!({"consent": true}))
            .example("client_rate_limited"),
        &mut seen,
    )
    .await;
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 1, "only P003's latest number is valid");

    // The roster: the documented request, then the same with one patient changed.
    let roster = spec["paths"][IMPORT]["post"]["requestBody"]["content"]["text/csv"]["examples"]["roster"]["value"]
        .as_str()
        .expect("the documented roster")
        .to_string();
    let changed = roster.replace("e.carter@example.jp,south", "e.carter@example.jp,north");
    assert_ne!(changed, roster);
    let bad = "patient_id,name,phone,birth_date,call_slot\n\
               P011,山田 花子,090-1234-5670,1950-04-12,morning\n\
               P012,佐藤 太郎,03-1234-5678,1941-01-31,\n\
               P013,鈴木 一郎,12345,1950-01-01,\n\
               P014,高橋 幸子,090-1234-5674,1960-13-01,night\n";
    let import_cases = vec![
        Case::new("import", IMPORT, IMPORT, 200).token(&staff).csv(&roster).example("first"),
        Case::new("import again, one changed", IMPORT, IMPORT, 200).token(&staff).csv(&changed).example("again"),
        Case::new("import, no token", IMPORT, IMPORT, 401).csv(&roster).example("unauthorized"),
        Case::new("import, an issue-only token", IMPORT, IMPORT, 403).token(&busy).csv(&roster).example("forbidden"),
        Case::new("import, JSON", IMPORT, IMPORT, 415).token(&staff).json(json!({"patients": []})).example("not_csv"),
        Case::new("import, too large", IMPORT, IMPORT, 413)
            .token(&staff)
            .csv(&roster.repeat((5 << 20) / roster.len()))
            .example("too_large"),
        Case::new("import, bad rows", IMPORT, IMPORT, 422).token(&staff).csv(bad).example("bad_rows"),
        Case::new("import, unknown column", IMPORT, IMPORT, 422)
            .token(&staff)
            .csv("patient_id,name,telephone,phone,birth_date\n")
            .example("unknown_column"),
    ];
    for c in import_cases {
        run(&spec, &app, c, &mut seen).await;
    }
    assert!(app.store.patients().get("P011").await.unwrap().is_none(), "a refused roster imports nothing");

    staff_cases(&spec, &app, &staff, &app_only, &mut seen).await;
    link_cases(&spec, &app, &staff, &app_only, &mut seen).await;
    // The operations routes, without a token.
    for c in [
        Case::get("healthz", HEALTHZ, 200).example("ok"),
        // Not the example: how many flows call-flows/ holds is not this test's business.
        Case::get("readyz", READYZ, 200),
        Case::get("metrics", METRICS, 200),
    ] {
        run(&spec, &app, c, &mut seen).await;
    }
    // Not ready: a server whose folder of flows is empty.
    let flowless = {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(&sqlite_url(dir.path()));
        s.flows.dir = dir.path().join("flows");
        std::fs::create_dir(&s.flows.dir).unwrap();
        spawn_app_with(s, dir).await
    };
    run(&spec, &flowless, Case::get("readyz, no flows", READYZ, 503).example("no_flows"), &mut seen).await;
    flowless.stop().await;

    // A database that fails: a second server whose audit log has gone.
    let broken = spawn().await;
    let staff = token(&broken, "staff", "staff").await;
    let app_token = token(&broken, "app", "verify").await;
    rusqlite::Connection::open(broken.sqlite_path())
        .unwrap()
        .execute_batch("drop table audit_log; drop table staff_audit")
        .unwrap();
    run(
        &spec,
        &broken,
        Case::new("issue, database fails", ISSUE, &issue_p("P001"), 500)
            .token(&staff)
            .json(json!({"consent": true, "send": "sms"}))
            .example("internal"),
        &mut seen,
    )
    .await;
    run(
        &spec,
        &broken,
        Case::new("verify, database fails", VERIFY, VERIFY, 500)
            .token(&app_token)
            .json(json!({"number": "12345678"}))
            .example("internal"),
        &mut seen,
    )
    .await;
    assert_eq!(broken.store.numbers().valid_count().await.unwrap(), 0, "nothing is issued when the database fails");
    // Every staff read and action writes its audit row first: without the log, each fails.
    for (path, url) in [
        (FOLLOWUPS, FOLLOWUPS.to_string()),
        (PATIENTS, PATIENTS.to_string()),
        (PATIENT, "/api/v1/patients/P001".to_string()),
        (PATIENT_CALLS, "/api/v1/patients/P001/calls".to_string()),
        (FIGURES, "/api/v1/figures?from=2026-12-01&to=2026-12-07".to_string()),
    ] {
        let c = Case::new(&format!("{path}, database fails"), path, &url, 500)
            .read_by_get()
            .token(&staff)
            .example("internal");
        run(&spec, &broken, c, &mut seen).await;
    }
    let c = Case::new("report link, database fails", REPORT_LINK, "/api/v1/patients/P001/report-link", 500)
        .token(&staff)
        .example("internal");
    run(&spec, &broken, c, &mut seen).await;
    assert!(broken.store.links().latest(&"P001".parse().unwrap()).await.unwrap().is_none(), "no link without the log");
    for (path, body) in [(CLAIM, json!({})), (RELEASE, json!({})), (CLOSE, json!({"outcome": "visited", "note": ""}))] {
        let url = path.replace("{id}", "1");
        let c =
            Case::new(&format!("{path}, database fails"), path, &url, 500).token(&staff).json(body).example("internal");
        run(&spec, &broken, c, &mut seen).await;
    }
    rusqlite::Connection::open(broken.sqlite_path())
        .unwrap()
        .execute_batch("create trigger broken before insert on patients begin select raise(abort, 'disk full'); end")
        .unwrap();
    run(
        &spec,
        &broken,
        Case::new("import, database fails", IMPORT, IMPORT, 500)
            .token(&staff)
            .csv("patient_id,name,phone,birth_date\nP100,山田 花子,090-1234-5670,1950-04-12\n")
            .example("internal"),
        &mut seen,
    )
    .await;

    // The Today figures read the open follow-up items.
    rusqlite::Connection::open(broken.sqlite_path())
        .unwrap()
        .execute_batch("alter table followups rename to followups_gone")
        .unwrap();
    let c = Case::new("today, database fails", TODAY, TODAY, 500).read_by_get().token(&staff).example("internal");
    run(&spec, &broken, c, &mut seen).await;

    // Every documented status was produced, and every documented error example was answered.
    let mut documented = BTreeSet::new();
    let mut error_examples = BTreeSet::new();
    for (path, method) in documented_operations(&spec) {
        for (status, r) in spec["paths"][&path][&method]["responses"].as_object().unwrap() {
            documented.insert((path.clone(), status.clone()));
            if status.starts_with('4') || status.starts_with('5') {
                for (ct, m) in resolve(&spec, r)["content"].as_object().unwrap() {
                    for e in m["examples"].as_object().unwrap().keys() {
                        error_examples.insert(format!("{path} {status} {ct} {e}"));
                    }
                }
            }
        }
    }
    let unproduced: Vec<_> = documented.difference(&seen.statuses).collect();
    assert!(unproduced.is_empty(), "documented but not produced by any request here: {unproduced:?}");
    let unmatched: Vec<_> = error_examples.difference(&seen.examples).collect();
    assert!(unmatched.is_empty(), "documented error examples that no request here was answered with: {unmatched:?}");

    app.stop().await;
    broken.stop().await;
}

/// The patients' personal links: sent, refused, revoked; every documented status but 500.
async fn link_cases(spec: &Value, app: &App, staff: &str, app_only: &str, seen: &mut Seen) {
    use crate::common::patients::PatientBuilder;
    app.add(crate::common::patients::patient("P004", "+819011112222").care("2020-01-01", "2020-01-31")).await;
    let url = |id: &str| format!("/api/v1/patients/{id}/report-link");
    let delete = |mut c: Case| {
        c.method = "delete";
        c
    };
    let cases = vec![
        Case::new("link sent", REPORT_LINK, &url("P001"), 201).token(staff),
        Case::new("link, landline without e-mail", REPORT_LINK, &url("P003"), 422).token(staff).example("no_channel"),
        Case::new("link, care ended", REPORT_LINK, &url("P004"), 409).token(staff).example("care_ended"),
        Case::new("link, unknown patient", REPORT_LINK, &url("P999"), 404).token(staff).example("unknown_patient"),
        Case::new("link, no token", REPORT_LINK, &url("P001"), 401).example("unauthorized"),
        Case::new("link, a verify token", REPORT_LINK, &url("P001"), 403).token(app_only).example("forbidden"),
        Case::new("link, id not UTF-8", REPORT_LINK, &url("P%FF"), 400).token(staff).example("bad_path"),
        Case::new("link, id no patient can have", REPORT_LINK, &url("P%201"), 404).token(staff),
        delete(Case::new("revoke, id not UTF-8", REPORT_LINK, &url("P%FF"), 400).token(staff).example("bad_path")),
        delete(Case::new("link revoked", REPORT_LINK, &url("P001"), 200).token(staff)),
        delete(
            Case::new("revoke, unknown patient", REPORT_LINK, &url("P999"), 404)
                .token(staff)
                .example("unknown_patient"),
        ),
        delete(Case::new("revoke, no token", REPORT_LINK, &url("P001"), 401).example("unauthorized")),
        delete(
            Case::new("revoke, a verify token", REPORT_LINK, &url("P001"), 403).token(app_only).example("forbidden"),
        ),
    ];
    for c in cases {
        run(spec, app, c, seen).await;
    }
}

/// The staff routes over the follow-up queue and the roster: every documented status but 500.
async fn staff_cases(spec: &Value, app: &App, staff: &str, app_only: &str, seen: &mut Seen) {
    use chrono::{DateTime, Utc};
    use ivr::store::{Act, Acted, Action, NewAlert};
    use ivr::types::Severity;

    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // Three items: P001's (open), P003's (claimed by 佐藤 at a known time), and one closed.
    let q = app.store.followups();
    q.raise("P001", &NewAlert::flow("health_check", Severity::Urgent), at("2026-12-07T09:00:00Z")).await.unwrap();
    q.raise("P003", &NewAlert::flow("identity_not_confirmed", Severity::Normal), at("2026-12-07T09:01:00Z"))
        .await
        .unwrap();
    let open = q.open_for("P001").await.unwrap().unwrap().followup_id;
    // P001's SMS of the issue cases may have failed first and opened the item: the version seen.
    let open_version = q.get(open).await.unwrap().unwrap().version;
    let held = q.open_for("P003").await.unwrap().unwrap().followup_id;
    let claim = Act { action: Action::Claim, by: "佐藤".into(), version: None, at: at("2026-12-07T09:05:00Z") };
    assert!(matches!(q.act(held, &claim).await.unwrap(), Acted::Done(_)));
    let url = |path: &str, id: i64| path.replace("{id}", &id.to_string());

    let mut cases = vec![
        Case::new("list", FOLLOWUPS, FOLLOWUPS, 200).read_by_get().token(staff),
        Case::new("list, closed", FOLLOWUPS, "/api/v1/followups?status=closed&area=north&limit=10&offset=0", 200)
            .read_by_get()
            .token(staff),
        Case::new("list, unknown parameter", FOLLOWUPS, "/api/v1/followups?sort=x", 400)
            .read_by_get()
            .token(staff)
            .example("unknown_parameter"),
        Case::new("list, no token", FOLLOWUPS, FOLLOWUPS, 401).read_by_get().example("unauthorized"),
        Case::new("list, a verify token", FOLLOWUPS, FOLLOWUPS, 403).read_by_get().token(app_only).example("forbidden"),
        Case::new("list, unknown status", FOLLOWUPS, "/api/v1/followups?status=done", 422)
            .read_by_get()
            .token(staff)
            .example("bad_status"),
        Case::new("list, limit 0", FOLLOWUPS, "/api/v1/followups?limit=0", 422)
            .read_by_get()
            .token(staff)
            .example("bad_limit"),
        Case::new("patients", PATIENTS, "/api/v1/patients?limit=1", 200).read_by_get().token(staff),
        Case::new("patients, limit not a number", PATIENTS, "/api/v1/patients?limit=abc", 400)
            .read_by_get()
            .token(staff)
            .example("not_a_number"),
        Case::new("patients, no token", PATIENTS, PATIENTS, 401).read_by_get().example("unauthorized"),
        Case::new("patients, a verify token", PATIENTS, PATIENTS, 403)
            .read_by_get()
            .token(app_only)
            .example("forbidden"),
        Case::new("patients, limit too large", PATIENTS, "/api/v1/patients?limit=201", 422)
            .read_by_get()
            .token(staff)
            .example("bad_limit"),
        Case::new("today", TODAY, TODAY, 200).read_by_get().token(staff),
        Case::new("today, a parameter", TODAY, "/api/v1/today?day=2026-12-07", 400)
            .read_by_get()
            .token(staff)
            .example("unknown_parameter"),
        Case::new("today, no token", TODAY, TODAY, 401).read_by_get().example("unauthorized"),
        Case::new("today, a verify token", TODAY, TODAY, 403).read_by_get().token(app_only).example("forbidden"),
    ];
    let figures = |q: &str| format!("{FIGURES}?{q}");
    cases.extend([
        Case::new("figures", FIGURES, &figures("from=2026-12-01&to=2026-12-07&by=day"), 200).read_by_get().token(staff),
        Case::new("figures, unknown parameter", FIGURES, &figures("from=2026-12-01&to=2026-12-07&area=x"), 400)
            .read_by_get()
            .token(staff)
            .example("unknown_parameter"),
        Case::new("figures, no token", FIGURES, &figures("from=2026-12-01&to=2026-12-07"), 401)
            .read_by_get()
            .example("unauthorized"),
        Case::new("figures, a verify token", FIGURES, &figures("from=2026-12-01&to=2026-12-07"), 403)
            .read_by_get()
            .token(app_only)
            .example("forbidden"),
        Case::new("figures, the last seven days", FIGURES, FIGURES, 200).read_by_get().token(staff),
        Case::new("figures, an empty first day", FIGURES, &figures("from=&to=2026-12-07"), 422)
            .read_by_get()
            .token(staff)
            .example("empty_from"),
        Case::new("figures, not a date", FIGURES, &figures("from=2026-12-32&to=2026-12-07"), 422)
            .read_by_get()
            .token(staff)
            .example("not_a_date"),
        Case::new("figures, backwards", FIGURES, &figures("from=2026-12-07&to=2026-12-01"), 422)
            .read_by_get()
            .token(staff)
            .example("before_from"),
        Case::new("figures, too long", FIGURES, &figures("from=2025-01-01&to=2026-12-07"), 422)
            .read_by_get()
            .token(staff)
            .example("too_long"),
        Case::new("figures, by month", FIGURES, &figures("from=2026-12-01&to=2026-12-07&by=month"), 422)
            .read_by_get()
            .token(staff)
            .example("bad_by"),
    ]);
    for path in [PATIENT, PATIENT_CALLS] {
        let p = |id: &str| path.replace("{id}", id);
        cases.extend([
            Case::new(path, path, &p("P001"), 200).read_by_get().token(staff),
            Case::new(&format!("{path}, not UTF-8"), path, &p("P%FF"), 400)
                .read_by_get()
                .token(staff)
                .example("bad_path"),
            Case::new(&format!("{path}, no token"), path, &p("P001"), 401).read_by_get().example("unauthorized"),
            Case::new(&format!("{path}, a verify token"), path, &p("P001"), 403)
                .read_by_get()
                .token(app_only)
                .example("forbidden"),
            Case::new(&format!("{path}, unknown"), path, &p("P999"), 404)
                .read_by_get()
                .token(staff)
                .example("unknown_patient"),
        ]);
    }
    for c in cases {
        run(spec, app, c, seen).await;
    }

    // The actions: claim P001's item, release it, claim it again and close it.
    let claimed = run(
        spec,
        app,
        Case::new("claim", CLAIM, &url(CLAIM, open), 200)
            .token(staff)
            .json(json!({"version": open_version, "staff": "鈴木"})),
        seen,
    )
    .await;
    assert_eq!((claimed["status"].as_str(), claimed["claimed_by"].as_str()), (Some("claimed"), Some("鈴木")));
    let released = Case::new("release", RELEASE, &url(RELEASE, open), 200).token(staff).json(json!({"staff": "鈴木"}));
    assert_eq!(run(spec, app, released, seen).await["status"], "open");
    let close_body = json!({"outcome": "reached_by_phone", "note": "電話で確認", "staff": "鈴木"});
    let closed =
        run(spec, app, Case::new("close", CLOSE, &url(CLOSE, open), 200).token(staff).json(close_body), seen).await;
    assert_eq!((closed["status"].as_str(), closed["outcome"].as_str()), (Some("closed"), Some("reached_by_phone")));

    for path in [CLAIM, RELEASE, CLOSE] {
        let body = if path == CLOSE {
            json!({"outcome": "visited", "note": "", "staff": "鈴木"})
        } else {
            json!({"staff": "鈴木"})
        };
        let mut cases = vec![
            Case::new(&format!("{path}, truncated"), path, &url(path, held), 400)
                .token(staff)
                .raw("{")
                .example("truncated"),
            Case::new(&format!("{path}, no token"), path, &url(path, held), 401)
                .json(body.clone())
                .example("unauthorized"),
            Case::new(&format!("{path}, a verify token"), path, &url(path, held), 403)
                .token(app_only)
                .json(body.clone())
                .example("forbidden"),
            Case::new(&format!("{path}, unknown item"), path, &url(path, 999), 404)
                .token(staff)
                .json(body.clone())
                .example("unknown_followup"),
            Case::new(&format!("{path}, claimed by another"), path, &url(path, held), 409)
                .token(staff)
                .json(body.clone())
                .example("claimed_by_other"),
            Case::new(&format!("{path}, too large"), path, &url(path, held), 413)
                .token(staff)
                .json(json!({"staff": "x".repeat(3 << 20)}))
                .example("too_large"),
            Case { content_type: None, ..Case::new(&format!("{path}, no content type"), path, &url(path, held), 415) }
                .token(staff)
                .json(body.clone())
                .example("no_content_type"),
            Case::new(&format!("{path}, unknown key"), path, &url(path, held), 422)
                .token(staff)
                .raw(r#"{"by": "x"}"#)
                .example("unknown_key"),
        ];
        if path == CLOSE {
            cases.push(
                Case::new("close, unknown outcome", path, &url(path, held), 422)
                    .token(staff)
                    .raw(r#"{"outcome": "cured", "note": ""}"#)
                    .example("unknown_outcome"),
            );
        }
        for c in cases {
            run(spec, app, c, seen).await;
        }
    }
    let still = q.get(held).await.unwrap().unwrap();
    assert_eq!((still.claimed_by.as_deref(), still.version), (Some("佐藤"), 2), "refused actions changed nothing");
}
