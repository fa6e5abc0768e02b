//! What happens after the API answered: a call rings, is answered (or not) and is played
//! through the TwiML interpreter with a patient pressing keys; an SMS is delivered (or not).
//! Every webhook is signed; status callbacks are retried a few times, so a server that was
//! down for a moment still hears how the call ended.

use std::time::Duration;

use chrono::Utc;

use super::{DEFAULT_BIRTH_MD, Patient, Persona, Reply, SimulatedSms, Simulator};
use crate::carrier::twilio::{AnsweredBy, CallEvent, CallStatus, MachineDetection};
use crate::carrier::webhook::{CallInfo, Caller, converse};
use crate::telemetry::mask_phone;
use crate::twiml::phone::{Heard, Next};
use crate::types::CallSid;

/// Tries of a status callback, the first included; waits double from the first.
const CALLBACK_TRIES: u32 = 5;
const CALLBACK_FIRST_WAIT: Duration = Duration::from_millis(500);
/// Twilio never reports a delivery before it answered the request that sent the message;
/// neither does the simulator, even at speed 0.
const DELIVERY_FLOOR: Duration = Duration::from_millis(300);

/// A call as requested through the API, validated.
pub(super) struct CallPlan {
    pub to: String,
    pub from: String,
    pub url: String,
    pub status_callback: Option<String>,
    pub events: Vec<CallEvent>,
    /// Seconds to ring before `no-answer`.
    pub timeout: u32,
    pub machine_detection: Option<MachineDetection>,
    /// With `AsyncAmd=true`: where the detection result goes instead of the answer webhook.
    pub async_amd: Option<String>,
}

/// The progress of one call, reported to its status callback.
struct Progress<'a> {
    sim: &'a Simulator,
    sid: &'a str,
    plan: &'a CallPlan,
    params: Vec<(String, String)>,
    sequence: u32,
}

impl Progress<'_> {
    /// Posts `event` (with `CallStatus` = `status`) if it was asked for, retrying a few times.
    async fn report(&mut self, event: CallEvent, status: &str, extra: &[(String, String)]) {
        let Some(url) = &self.plan.status_callback else { return };
        if !self.plan.events.contains(&event) {
            return;
        }
        let mut params = self.params.clone();
        params.retain(|(k, _)| k != "CallStatus");
        params.push(("CallStatus".into(), status.into()));
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("Timestamp".into(), Utc::now().to_rfc2822()));
        params.extend_from_slice(extra);
        self.sequence += 1;
        if post_with_retry(self.sim, url, &params).await {
            self.sim.update_call(self.sid, |c| c.reported.push(status.to_string()));
        }
    }
}

/// Posts a signed callback, trying again with a doubling wait; whether it was accepted.
async fn post_with_retry(sim: &Simulator, url: &str, params: &[(String, String)]) -> bool {
    let mut wait = CALLBACK_FIRST_WAIT;
    for attempt in 1..=CALLBACK_TRIES {
        match sim.shared.webhooks.post(url, params).await {
            Ok(_) => return true,
            Err(e) if attempt < CALLBACK_TRIES => {
                tracing::warn!(error = %e, attempt, "simulator: status callback failed; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => tracing::warn!(error = %e, attempt, "simulator: status callback failed; giving up"),
        }
    }
    false
}

/// Plays a placed call to its end, as Twilio would.
pub(super) async fn play(sim: Simulator, sid: CallSid, plan: CallPlan, persona: Persona) {
    let info = CallInfo {
        call_sid: sid.clone(),
        from: plan.from.clone(),
        to: plan.to.clone(),
        direction: "outbound-api".into(),
    };
    let mut progress = Progress { sim: &sim, sid: sid.as_str(), plan: &plan, params: info.params(), sequence: 0 };
    progress.report(CallEvent::Initiated, "initiated", &[]).await;
    if persona == Persona::Busy {
        tokio::time::sleep(sim.pause(0.5, 1.5)).await;
        return finish(&mut progress, CallStatus::Busy, Vec::new()).await;
    }
    sim.update_call(sid.as_str(), |c| c.status = CallStatus::Ringing);
    progress.report(CallEvent::Ringing, "ringing", &[]).await;
    if persona == Persona::NoAnswer {
        tokio::time::sleep(sim.scaled(f64::from(plan.timeout))).await;
        return finish(&mut progress, CallStatus::NoAnswer, Vec::new()).await;
    }
    tokio::time::sleep(sim.pause(1.0, 4.0)).await;

    let answered_by = plan.machine_detection.map(|detection| detect(persona, detection));
    sim.update_call(sid.as_str(), |c| {
        c.status = CallStatus::InProgress;
        c.answered_at = Some(Utc::now());
        c.answered_by = answered_by;
    });
    let amd: Vec<(String, String)> =
        answered_by.map(|a| vec![("AnsweredBy".to_string(), a.as_str().to_string())]).unwrap_or_default();
    progress.report(CallEvent::Answered, "in-progress", &amd).await;
    let on_answer = match &plan.async_amd {
        Some(url) => {
            let mut params = info.params();
            params.extend(amd.iter().cloned());
            post_with_retry(&sim, url, &params).await;
            Vec::new()
        }
        None => amd,
    };

    let birth_md = (sim.shared.people)(plan.to.clone()).await.unwrap_or_else(|| DEFAULT_BIRTH_MD.to_string());
    let mut line = OnTheLine { sim: &sim, patient: Patient::new(persona, birth_md), heard: Vec::new() };
    let status = match converse(&sim.shared.webhooks, &plan.url, &info.params(), &on_answer, &mut line).await {
        Ok(_) => CallStatus::Completed,
        // Never answered at all: the call failed. Mid-call, the carrier apologises and hangs up.
        Err(e) if line.heard.is_empty() => {
            tracing::warn!(call_sid = %sid, error = %e, "simulator: the answer webhook failed");
            CallStatus::Failed
        }
        Err(e) => {
            tracing::warn!(call_sid = %sid, error = %e, "simulator: a webhook failed mid-call");
            CallStatus::Completed
        }
    };
    if let Some(question) = &line.patient.unrecognised {
        let shown: String = question.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(200).collect();
        tracing::warn!(call_sid = %sid, question = %shown, "simulator: a question no persona recognises; hung up");
    }
    let heard = std::mem::take(&mut line.heard);
    finish(&mut progress, status, heard).await;
}

/// What answering machine detection says for `persona`: the slow patient is taken for a
/// machine; a machine is heard to its beep when asked to wait for it.
fn detect(persona: Persona, detection: MachineDetection) -> AnsweredBy {
    match (persona, detection) {
        (Persona::Machine, MachineDetection::DetectMessageEnd) => AnsweredBy::MachineEndBeep,
        (Persona::Machine | Persona::Slow, _) => AnsweredBy::MachineStart,
        _ => AnsweredBy::Human,
    }
}

/// Ends the call: reports `completed` with the final status, then records it (so a call
/// whose record is final has had its last callback delivered, or given up).
async fn finish(progress: &mut Progress<'_>, status: CallStatus, heard: Vec<String>) {
    let sim = progress.sim;
    let call = sim.call(progress.sid);
    let answered_by = call.as_ref().and_then(|c| c.answered_by);
    let duration = match call.and_then(|c| c.answered_at) {
        Some(at) => (Utc::now() - at).num_seconds().max(1) as u32,
        None => 0,
    };
    let mut extra = vec![("CallDuration".to_string(), duration.to_string())];
    if let Some(a) = answered_by {
        extra.push(("AnsweredBy".into(), a.as_str().into()));
    }
    progress.report(CallEvent::Completed, status.as_str(), &extra).await;
    sim.update_call(progress.sid, |c| {
        c.status = status;
        c.duration = Some(duration);
        c.ended_at = Some(Utc::now());
        c.heard = heard;
    });
    tracing::info!(call_sid = %progress.sid, status = status.as_str(), "simulator: call ended");
}

/// The patient on the line, paced at the simulator's speed.
struct OnTheLine<'a> {
    sim: &'a Simulator,
    patient: Patient,
    heard: Vec<String>,
}

impl Caller for OnTheLine<'_> {
    fn answer(&mut self, heard: &Heard) -> Option<String> {
        self.heard.extend(heard.speech.iter().cloned());
        match self.patient.reply(heard) {
            Reply::Keys(keys) => Some(keys),
            Reply::Silence => Some(String::new()),
            Reply::HangUp => None,
        }
    }

    /// The simulated centre: answers or not as the persona says; the line is noted in what
    /// the patient heard.
    fn dial(&mut self, dial: &crate::twiml::Dial) -> String {
        let status = self.patient.persona.centre_answer();
        self.heard.push(format!("[dial {} → {status}]", mask_phone(&dial.number)));
        status.to_string()
    }

    fn delay(&mut self, heard: &Heard, keys: Option<&str>) -> Duration {
        match (keys, &heard.next) {
            // Silence lasts as long as the gather waits.
            (Some(""), Next::Gather { gather, .. }) => self.sim.scaled(f64::from(gather.timeout)),
            (Some(_), _) => self.sim.pause(0.3, 1.5),
            (None, _) => Duration::ZERO,
        }
    }
}

/// Reports an accepted SMS's delivery: `sent`, then `delivered`, or `undelivered` (30005) for
/// the persona whose messages never arrive.
pub(super) async fn deliver(sim: Simulator, sms: SimulatedSms, status_callback: Option<String>, persona: Persona) {
    let last = if persona == Persona::UndeliverableSms { "undelivered" } else { "delivered" };
    for status in ["sent", last] {
        tokio::time::sleep(DELIVERY_FLOOR + sim.pause(0.5, 2.0)).await;
        sim.update_message(sms.sid.as_str(), status);
        let Some(url) = &status_callback else { continue };
        let mut params: Vec<(String, String)> = [
            ("AccountSid", super::ACCOUNT_SID),
            ("MessageSid", sms.sid.as_str()),
            ("SmsSid", sms.sid.as_str()),
            ("From", &sms.from),
            ("To", &sms.to),
            ("MessageStatus", status),
            ("SmsStatus", status),
            ("ApiVersion", "2010-04-01"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if status == "undelivered" {
            params.push(("ErrorCode".into(), crate::carrier::twilio::codes::UNKNOWN_DESTINATION.to_string()));
        }
        if !post_with_retry(&sim, url, &params).await {
            tracing::warn!(sid = %sms.sid, to = %mask_phone(&sms.to), status, "simulator: SMS status not reported");
        }
    }
}
