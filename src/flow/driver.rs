//! One turn of a call: steps the engine, carries out its effects through [`Actions`], and
//! feeds action outcomes back until the flow waits for the caller or ends.

use super::engine::{CallState, Input, Wait, step};
use super::{Effect, Flow, Vars};
use crate::flow::response::Response;

/// Action outcomes fed back within one turn before it is cut short (a flow would need that
/// many actions in a row without a question to reach it).
const MAX_ACTIONS: usize = 32;

/// The outcome of an action the flow waits on, and the variables it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub vars: Vars,
}

impl Outcome {
    pub fn named(name: &str) -> Self {
        Outcome { name: name.into(), vars: Vars::new() }
    }
}

/// Carries out the effects of a flow: stores answers, issues numbers, sends messages.
pub trait Actions {
    type Error;
    /// Applies `effect` for the call in `state`; for the effect the flow waits on, returns its
    /// outcome (`None` there counts as `failed`).
    fn perform(&mut self, effect: &Effect, state: &CallState, waited: bool) -> Result<Option<Outcome>, Self::Error>;
}

/// The result of one turn: the call's new state, every effect applied, and the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub state: CallState,
    pub effects: Vec<Effect>,
    pub response: Response,
}

impl Turn {
    pub fn ended(&self) -> bool {
        self.response.gather.is_none() && self.response.dial.is_none()
    }
}

/// Runs one turn from `input` to the next question or the end of the call.
pub fn run_turn<A: Actions>(flow: &Flow, call: &CallState, input: Input, actions: &mut A) -> Result<Turn, A::Error> {
    let mut turn = Turn { state: call.clone(), effects: Vec::new(), response: Response::default() };
    let mut input = input;
    for _ in 0..MAX_ACTIONS {
        let s = step(flow, &turn.state, input);
        for e in &s.effects {
            actions.perform(e, &s.state, false)?;
        }
        turn.effects.extend(s.effects);
        turn.response.speech.extend(s.response.speech);
        turn.state = s.state;
        match s.wait {
            Wait::Keys => {
                turn.response.gather = s.response.gather;
                return Ok(turn);
            }
            Wait::Dial => {
                turn.response.dial = s.response.dial;
                return Ok(turn);
            }
            Wait::End => return Ok(turn),
            Wait::Outcome(effect) => {
                let o = actions.perform(&effect, &turn.state, true)?.unwrap_or_else(|| Outcome::named("failed"));
                turn.effects.push(effect);
                input = Input::Outcome { name: o.name, vars: o.vars };
            }
        }
    }
    turn.response = Response::apology(&flow.catalog(&turn.state.lang).language);
    Ok(turn)
}
