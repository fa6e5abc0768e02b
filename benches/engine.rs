//! One turn of the daily health-check call: the pure step, and the step plus TwiML rendering
//! that a webhook answers with. `scripts/bench-engine.sh` prints the figures.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ivr::flow::driver::{Actions, Outcome, run_turn};
use ivr::flow::{CallState, Effect, Input, Library, Value, Vars, step};
use ivr::twiml;
use ivr::types::Digits;

struct NoOp;
impl Actions for NoOp {
    type Error = ();
    fn perform(&mut self, _: &Effect, _: &CallState, waited: bool) -> Result<Option<Outcome>, ()> {
        Ok(waited.then(|| Outcome::named("sms")))
    }
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (lib, _) = Library::load_dirs(&root.join("call-flows"), &root.join("prompts")).unwrap();
    let flow = lib.flow("daily-health-check").unwrap().clone();
    let mut vars = Vars::new();
    vars.insert("patient.birth_md".into(), Value::text("0412"));
    let start = CallState::new(&flow, "ja-JP", vars);
    // The call as it waits for the temperature.
    let mut at_temperature = run_turn(&flow, &start, Input::Start, &mut NoOp).unwrap().state;
    at_temperature =
        run_turn(&flow, &at_temperature, Input::Digits(Digits::parse("0412").unwrap()), &mut NoOp).unwrap().state;
    let action = "https://ivr.example.jp/twilio/voice/step?call=CA0123456789abcdef0123456789abcdef&seq=3";

    c.bench_function("step: temperature answered", |b| {
        b.iter(|| step(black_box(&flow), black_box(&at_temperature), Input::Digits(Digits::parse("365").unwrap())))
    });
    c.bench_function("turn: step + TwiML render", |b| {
        b.iter(|| {
            let turn =
                run_turn(&flow, black_box(&at_temperature), Input::Digits(Digits::parse("365").unwrap()), &mut NoOp)
                    .unwrap();
            twiml::render(&twiml::from_response(&turn.response, action))
        })
    });
    let keys = ["0412", "365", "1", "1", "97", "1", "2", "2", "2", "2", "2", "1", "1"];
    c.bench_function("whole call: 14 turns, step + render each", |b| {
        b.iter(|| {
            let mut turn = run_turn(&flow, &start, Input::Start, &mut NoOp).unwrap();
            let mut bytes = twiml::render(&twiml::from_response(&turn.response, action)).len();
            for k in keys {
                turn = run_turn(&flow, &turn.state, Input::Digits(Digits::parse(k).unwrap()), &mut NoOp).unwrap();
                bytes += twiml::render(&twiml::from_response(&turn.response, action)).len();
            }
            bytes
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
