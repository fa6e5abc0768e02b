//! A web report: the patient's sent form run through the engine in one turn of a call with
//! direction `web`, so its answers, alerts, follow-up items and processing number are a call's.
//! The form's answers are given to [`crate::flow::step`] as the keys a phone would press;
//! a read-back is confirmed (the page's review step did that). What the patient sees after
//! sending ([`WebReport`]) is the turn's stored response, sealed when it holds a number: the
//! same form sent again (a second tab, a replayed request) gets it back and changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{NUMBER, PERSONAL_VARS, TurnContext, TurnEffects, personal_vars, seal_number, unseal_number};
use crate::flow::driver::{Actions, Outcome, run_turn};
use crate::flow::web::{Posted, keys_for, walk};
use crate::flow::{CallState, Effect, Input, Phase};
use crate::issuer::{Issuer, is_sealed};
use crate::store::{CallRecord, TurnFn, TurnWrite};

/// What the page says once the report is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebReport {
    /// What the flow says after the last question (in the web wording).
    pub notes: Vec<String>,
    /// The processing number issued by this report, whole, and when it expires.
    pub number: Option<String>,
    pub expires: Option<String>,
    /// How the number was also sent: `sms`, `email`, or `read_aloud` (a later call reads it).
    pub delivery: Option<String>,
}

impl WebReport {
    /// The stored response read back: opened with the issuer's key when sealed.
    pub fn read(issuer: &Issuer, stored: &str) -> Option<WebReport> {
        let text = if is_sealed(stored) { issuer.key.open(stored)? } else { stored.to_string() };
        serde_json::from_str(&text).ok()
    }
}

/// Turns the engine takes in one report before it gives up (a flow that loops on its own).
const MAX_TURNS: usize = 256;

/// The outcomes of the actions the flow waited on, by state.
struct Recorded<'a, 'b> {
    fx: &'a mut TurnEffects<'b>,
    outcomes: BTreeMap<String, String>,
}

impl Actions for Recorded<'_, '_> {
    type Error = std::convert::Infallible;

    fn perform(&mut self, effect: &Effect, call: &CallState, waited: bool) -> Result<Option<Outcome>, Self::Error> {
        let out = self.fx.perform(effect, call, waited)?;
        if waited {
            let name = out.as_ref().map_or("failed", |o| o.name.as_str());
            self.outcomes.insert(call.state.clone(), name.to_string());
        }
        Ok(out)
    }
}

/// The one turn of a web report with the answers `posted`, to run inside the store's
/// transaction (the call is created with it: [`super::first_turn`] with
/// [`crate::store::Caller::Patient`]).
pub fn report_fn(ctx: &TurnContext, posted: Posted, now: DateTime<Utc>) -> TurnFn {
    let ctx = ctx.clone();
    Box::new(move |call: &CallRecord| {
        let flow = ctx
            .flows
            .version(&call.flow, &call.flow_version)
            .ok_or_else(|| format!("flow {} is not loaded", call.flow))?;
        let mut state = call.state.clone();
        unseal_number(&ctx.issuer, &mut state.vars);
        if let Some(p) = &call.patient {
            state.vars.extend(personal_vars(p));
        }
        let start_vars = state.vars.clone();
        let before = state.answers();
        let catalog = flow.catalog(&state.lang);
        let mut fx = TurnEffects {
            issuer: &ctx.issuer,
            desk: &ctx.desk,
            catalog,
            now,
            seq: 0,
            answers: vec![],
            alerts: vec![],
            issue: None,
            messages: vec![],
        };
        let mut rec = Recorded { fx: &mut fx, outcomes: BTreeMap::new() };
        let mut input = Input::Start;
        for _ in 0..MAX_TURNS {
            let Ok(turn) = run_turn(&flow, &state, input, &mut rec);
            state = turn.state;
            // A question the form has no answer for, or one that refused its answer, ends the
            // report where it is (the page judged every answer before it was sent).
            let next = (state.phase == Phase::Asking && state.tries == 0)
                .then(|| keys_for(&flow, &state.state, &posted))
                .flatten();
            match next {
                Some(keys) => input = Input::Digits(keys),
                None => break,
            }
        }
        let outcomes = std::mem::take(&mut rec.outcomes);
        let delivery = outcomes.values().find(|o| ["sms", "email", "read_aloud"].contains(&o.as_str())).cloned();
        let issued = fx.issue.is_some();
        let report = WebReport {
            notes: walk(&flow, &state.lang, &start_vars, &posted, &outcomes).after,
            number: issued.then(|| state.vars.get(NUMBER).map(ToString::to_string)).flatten(),
            expires: issued.then(|| state.vars.get("processing_number.expires").map(ToString::to_string)).flatten(),
            delivery: issued.then_some(delivery).flatten(),
        };
        let response = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        let mut answers: Vec<_> = state.answers().into_iter().filter(|a| !before.contains(a)).collect();
        for a in fx.answers {
            if !answers.iter().any(|(k, _)| *k == a.0) {
                answers.push(a);
            }
        }
        for k in PERSONAL_VARS {
            state.vars.remove(k);
        }
        let stored_response = report.number.is_some().then(|| ctx.issuer.key.seal(&response));
        seal_number(&ctx.issuer, &mut state.vars);
        // The report is whole once sent: it ends, whatever the flow would ask a phone next.
        state.phase = Phase::Ended;
        Ok(TurnWrite {
            response,
            stored_response,
            event_state: state.state.clone(),
            event_input: "(web form)".into(),
            answers,
            alerts: fx.alerts,
            ended: true,
            issue: fx.issue,
            messages: fx.messages,
            number_read: false,
            state: Some(state),
        })
    })
}
