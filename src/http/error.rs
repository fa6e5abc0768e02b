//! The one error type of the JSON face (the API, and the carrier's status callbacks): a 4xx
//! answers `{"error": code, "message": …, "field": …}` naming the part of the request at fault;
//! a 5xx is logged once, when it is answered, and shows the client nothing of its cause.
//!
//! Query strings, paths, JSON and form bodies are read through the extractors here
//! ([`Query`], [`Path`], [`Json`]), whose rejections become this type, so a bad request gets
//! the same shape of answer wherever it fails. Voice routes answer TwiML instead (see
//! [`super::twilio`]).

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error: its status, a stable code for programs, the field at fault, a message for
/// people; for a 5xx, the cause, which goes to the log only.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
    cause: Option<String>,
    /// More members of the body, for a 4xx that lists several mistakes.
    more: serde_json::Map<String, serde_json::Value>,
}

impl Error {
    /// A 4xx.
    pub fn new(status: StatusCode, code: &'static str, field: Option<&str>, message: impl Into<String>) -> Error {
        Error {
            status,
            code,
            field: field.map(str::to_string),
            message: message.into(),
            cause: None,
            more: Default::default(),
        }
    }

    /// The same error with one more member in its body (`errors` of a refused roster).
    pub fn with(mut self, key: &str, value: impl serde::Serialize) -> Error {
        self.more.insert(key.to_string(), serde_json::to_value(value).unwrap_or_default());
        self
    }

    /// A 500: the cause is logged when answered, the client reads only "internal".
    pub fn internal(cause: impl std::fmt::Display) -> Error {
        Error::unavailable(cause).with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A 503, for a caller that retries (a carrier's callback): logged like a 500.
    pub fn unavailable(cause: impl std::fmt::Display) -> Error {
        Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "internal",
            field: None,
            message: "an internal error occurred".into(),
            cause: Some(cause.to_string()),
            more: Default::default(),
        }
    }

    /// A required field of a request is missing or empty.
    pub fn missing(field: &str) -> Error {
        Error::new(StatusCode::BAD_REQUEST, "missing_field", Some(field), format!("missing field {field}"))
    }

    /// A field is present but not what it must be.
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, "invalid_field", Some(field), message)
    }

    fn with_status(mut self, status: StatusCode) -> Error {
        self.status = status;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The part of the request at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What went wrong, for a log line (the cause of a 5xx, else the message).
    pub fn detail(&self) -> &str {
        self.cause.as_deref().unwrap_or(&self.message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.code, self.detail()),
            None => write!(f, "{}: {}", self.code, self.detail()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = self.detail(), "request failed");
        }
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if !self.status.is_server_error() {
            for (k, v) in self.more {
                body[k] = v;
            }
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// The field named by a reader's error, as axum words it (`Failed to …: PATH: what`) with
/// serde's own words for a missing or unknown key.
fn field_in(text: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = text.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    let (_, detail) = text.split_once(": ")?;
    let (path, _) = detail.split_once(": ")?;
    let is_path = !path.is_empty() && path.chars().all(|c| c.is_alphanumeric() || "_.[]".contains(c));
    is_path.then(|| path.to_string())
}

impl From<JsonRejection> for Error {
    fn from(r: JsonRejection) -> Error {
        let text = r.body_text();
        let field = match r {
            JsonRejection::JsonDataError(_) => field_in(&text),
            _ => None,
        };
        Error { field, ..Error::new(r.status(), "invalid_body", None, text) }
    }
}

impl From<FormRejection> for Error {
    fn from(r: FormRejection) -> Error {
        let text = r.body_text();
        let field = match r {
            FormRejection::FailedToDeserializeForm(_) | FormRejection::FailedToDeserializeFormBody(_) => {
                field_in(&text)
            }
            _ => None,
        };
        Error { field, ..Error::new(r.status(), "invalid_body", None, text) }
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Error {
        let text = r.body_text();
        Error { field: field_in(&text), ..Error::new(r.status(), "invalid_query", None, text) }
    }
}

impl From<PathRejection> for Error {
    fn from(r: PathRejection) -> Error {
        use axum::extract::path::ErrorKind;
        let field = match &r {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                _ => None,
            },
            _ => None,
        };
        Error { field, ..Error::new(r.status(), "invalid_path", None, r.body_text()) }
    }
}

/// A query string, read into `T`; a rejection is an [`Error`] naming the parameter.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);

/// A path's parameters, read into `T`; a rejection is an [`Error`] naming the parameter.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

/// A JSON body, read into `T`; a rejection is an [`Error`] naming the key where it can.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct Json<T>(pub T);

#[cfg(test)]
mod tests {
    use super::field_in;

    #[test]
    fn the_field_is_read_from_the_readers_words() {
        let f = |t: &str| field_in(t);
        assert_eq!(f("Failed to deserialize query string: missing field `seq`").as_deref(), Some("seq"));
        assert_eq!(f("Failed to deserialize query string: seq: invalid digit found in string").as_deref(), Some("seq"));
        assert_eq!(
            f("Failed to deserialize the JSON body into the target type: numbr: unknown field `numbr`, expected `number` at line 1 column 8")
                .as_deref(),
            Some("numbr")
        );
        assert_eq!(
            f("Failed to deserialize the JSON body into the target type: send: unknown variant `fax`, expected one of `sms` at line 1 column 31")
                .as_deref(),
            Some("send")
        );
        assert_eq!(f("Failed to deserialize the JSON body into the target type: invalid type: map at line 1"), None);
    }
}
