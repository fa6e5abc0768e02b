//! The health centre's processing-number operations, shared by the command line and the JSON
//! API: issue a number by hand (the traditional path), and verify one (the app's server).
//! The call issues through the same [`Issuer`] and store in its turn ([`crate::calls`]).

use chrono::{DateTime, Utc};

use crate::flow::prompts::Catalog;
use crate::flow::{Value, Vars};
use crate::issuer::{Issuer, NumberError, ProcessingNumber};
use crate::store::{Consent, Issued, NewMessage, NewNumber, Store, StoreError, Verdict};
use crate::types::{Channel, NumberDelivery};

/// How a staff member wants the number delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SendBy {
    Sms,
    Email,
    /// Nobody is sent anything: the staff member tells the patient.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("no patient {0}")]
    UnknownPatient(String),
    #[error("patient {0} has no e-mail address in the roster")]
    NoEmail(String),
    #[error("patient {0}'s phone is not a mobile number, which SMS needs")]
    NotMobile(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A number issued by a staff member; the number itself goes to that staff member only.
#[derive(Debug)]
pub struct ManualIssue {
    pub number: ProcessingNumber,
    pub expires_at: DateTime<Utc>,
    pub expires_local: String,
    pub delivery: SendBy,
    pub issued: Issued,
}

/// Where a number sent `send` goes for this patient: their mobile, their e-mail address, or
/// nowhere (`None`); an error when the patient cannot get it that way.
pub fn recipient(patient: &crate::store::Patient, send: SendBy) -> Result<Option<String>, IssueError> {
    let id = || patient.patient_id.to_string();
    match send {
        SendBy::Sms if !patient.phone.is_mobile() => Err(IssueError::NotMobile(id())),
        SendBy::Sms => Ok(Some(patient.phone.to_string())),
        SendBy::Email => Ok(Some(patient.email.clone().ok_or_else(|| IssueError::NoEmail(id()))?)),
        SendBy::None => Ok(None),
    }
}

/// Issues a number for a patient on a staff member's word that the patient consented.
pub async fn issue_by_staff(
    store: &Store,
    issuer: &Issuer,
    catalog: Option<&Catalog>,
    patient_id: &str,
    send: SendBy,
    staff: &str,
    now: DateTime<Utc>,
) -> Result<ManualIssue, IssueError> {
    let patient =
        store.patients().get(patient_id).await?.ok_or_else(|| IssueError::UnknownPatient(patient_id.into()))?;
    let recipient = recipient(&patient, send)?;
    for _ in 0..5 {
        let drawn = issuer.draw(now);
        let message = match (&recipient, catalog) {
            (Some(to), Some(c)) => {
                let mut vars = Vars::new();
                vars.insert("processing_number".into(), Value::text(drawn.number.expose()));
                vars.insert("processing_number.expires".into(), Value::text(&drawn.expires_local));
                let text = issuer.message(c, &vars, &drawn.number);
                let channel = if send == SendBy::Sms { Channel::Sms } else { Channel::Email };
                Some(NewMessage { channel, recipient: to.clone(), body_sealed: issuer.key.seal(&text) })
            }
            _ => None,
        };
        let n = NewNumber {
            patient_id: patient.patient_id.clone(),
            number_hash: drawn.hash.clone(),
            // Kept while it is being sent: an SMS a landline cannot take is read on the next call.
            sealed: (send != SendBy::None).then(|| drawn.sealed.clone()),
            issued_at: now,
            expires_at: drawn.expires_at,
            consent: Consent::Staff { name: staff.into() },
            delivery: match send {
                SendBy::Sms => NumberDelivery::Sms,
                SendBy::Email => NumberDelivery::Email,
                SendBy::None => NumberDelivery::None,
            },
            message,
        };
        match store.numbers().issue(&n).await {
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
            Ok(issued) => {
                metrics::counter!("ivr_numbers_issued_total", "channel" => "staff").increment(1);
                tracing::info!(patient = %patient.patient_id, number = %drawn.number, staff, "processing number issued by staff");
                return Ok(ManualIssue {
                    number: drawn.number,
                    expires_at: drawn.expires_at,
                    expires_local: drawn.expires_local,
                    delivery: send,
                    issued,
                });
            }
        }
    }
    Err(StoreError::Conflict.into())
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Malformed(#[from] NumberError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a number typed by a person; with `consume`, a valid one is used up.
pub async fn verify(
    store: &Store,
    issuer: &Issuer,
    raw: &str,
    actor: &str,
    consume: bool,
    now: DateTime<Utc>,
) -> Result<Verdict, VerifyError> {
    let number = ProcessingNumber::parse(raw, issuer.digits)?;
    let verdict = store.numbers().verify(&issuer.key.hash(&number), now, actor, consume).await?;
    metrics::counter!("ivr_number_verifications_total", "result" => verdict.reason()).increment(1);
    tracing::info!(number = %number, actor, result = verdict.reason(), consume, "processing number checked");
    Ok(verdict)
}
