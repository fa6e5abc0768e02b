//! The staff's JSON API over the patients' personal links (routed in [`super::api`]):
//! `POST /api/v1/patients/{id}/report-link` makes a new link (the earlier one revoked) and
//! sends it to the patient by SMS or e-mail; `DELETE` revokes the patient's live link. Both need
//! a `followup` token and leave a row in the staff audit log. The token itself is never in an
//! answer: only the patient's message carries it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use serde_json::json;

use super::AppState;
use super::api::{Client, scope};
use super::error::{Error, Path};
use crate::notify::links::{LinkError, LinkSender};
use crate::store::AuditEntry;
use crate::types::PatientId;

/// The link sender of this server.
pub fn sender(app: &AppState) -> LinkSender {
    LinkSender {
        public_url: app.public_url.to_string(),
        key: Arc::new(app.turns.issuer.key.clone()),
        tz: app.turns.issuer.tz,
    }
}

async fn audit(app: &AppState, client: &Client<scope::Followup>, action: &str, target: &str) -> Result<(), Error> {
    let entry = AuditEntry {
        at: app.campaign.clock.now(),
        actor: format!("api:{}", client.name),
        action: action.into(),
        target: target.into(),
        address: client.address.clone(),
    };
    app.store.users().audit(&entry).await.map_err(Error::internal)
}

/// The patient's id; one no patient can have is a patient not found, as on the other patient
/// routes.
fn patient_id(id: &str) -> Result<PatientId, Error> {
    PatientId::parse(id).map_err(|_| super::followups::unknown_patient(id))
}

pub(super) async fn send(
    State(app): State<AppState>,
    client: Client<scope::Followup>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let id = patient_id(&id)?;
    // The audit row first: without the log, nothing is sent.
    audit(&app, &client, "send_report_link", id.as_str()).await?;
    let now = app.campaign.clock.now();
    let sent = match sender(&app).send(&app.store, &id, now).await {
        Ok(s) => s,
        Err(LinkError::UnknownPatient(_)) | Err(LinkError::Store(crate::store::StoreError::UnknownPatient(_))) => {
            return Err(super::followups::unknown_patient(id.as_str()));
        }
        Err(e @ LinkError::CareEnded) => {
            return Err(Error::new(StatusCode::CONFLICT, "care_ended", Some("id"), e.to_string()));
        }
        Err(e @ LinkError::NoWay) => {
            return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "no_channel", Some("id"), e.to_string()));
        }
        Err(LinkError::Store(e)) => return Err(Error::internal(e)),
    };
    app.outbox_wake.notify_one();
    let body = json!({
        "patient_id": id.as_str(),
        "link_id": sent.link.link_id,
        "channel": sent.channel,
        "created_at": sent.link.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "expires_at": sent.link.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

pub(super) async fn revoke(
    State(app): State<AppState>,
    client: Client<scope::Followup>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let id = patient_id(&id)?;
    audit(&app, &client, "revoke_report_link", id.as_str()).await?;
    if app.store.patients().get(id.as_str()).await.map_err(Error::internal)?.is_none() {
        return Err(super::followups::unknown_patient(id.as_str()));
    }
    let now = app.campaign.clock.now();
    let by = format!("api:{}", client.name);
    let revoked = app.store.links().revoke(&id, &by, now).await.map_err(Error::internal)?;
    Ok(axum::Json(json!({ "patient_id": id.as_str(), "revoked": revoked })).into_response())
}
