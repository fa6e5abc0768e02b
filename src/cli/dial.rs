//! `ivr dial [--flow F] [--now]`: plans today's campaign in the database; the running server's
//! dialer places the calls. Planning twice the same day adds only patients not yet planned.

use std::path::Path;

use chrono::Utc;

use super::numbers::{Result, open};

pub async fn dial(flow: Option<&str>, now: bool, per_patient: bool, config: Option<&Path>) -> Result<()> {
    let (settings, store) = open(config).await?;
    let mut planner = crate::server::planner(&settings);
    if let Some(flow) = flow {
        let (library, _) = crate::flow::library::Library::load_dirs(&settings.flows.dir, &settings.flows.prompts_dir)
            .map_err(|d| format!("call flows have errors:\n{d}"))?;
        if library.flow(flow).is_none() {
            return Err(format!("no flow named {flow} in {}", settings.flows.dir.display()).into());
        }
        planner.flow = flow.to_string();
    }
    let p = planner.plan(&store, Utc::now(), now).await?;
    let tz = planner.hours.tz();
    let time = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("-".to_string(), |t| t.with_timezone(&tz).format("%H:%M").to_string())
    };
    println!(
        "{}: {} call(s) planned with {}, {} new, {} brought forward; first at {} ({tz})",
        p.day,
        p.jobs,
        planner.flow,
        p.new,
        p.advanced,
        time(p.first_due)
    );
    for c in &p.checkins {
        let s = &c.skipped;
        println!(
            "check-in {}: {} call(s), {} new, {} after a web request, first at {}; not called: {} out of care, \
             {} already reported, {} reported on the web, {} over area capacity, {} blocked day, {} slot over",
            c.checkin,
            c.jobs,
            c.new,
            c.web_first,
            time(c.first_due),
            s.out_of_care,
            s.reported,
            s.reported_web,
            s.over_capacity,
            s.blocked_day,
            s.slot_over
        );
    }
    if per_patient {
        let header: Vec<String> = p.checkins.iter().map(|c| format!("{:<14}", c.checkin.to_string())).collect();
        println!("{:<16}{}", "patient", header.join("").trim_end());
        for (i, id) in p.patients.iter().enumerate() {
            let reasons: Vec<String> = p.checkins.iter().map(|c| format!("{:<14}", c.reasons[i].as_str())).collect();
            println!("{id:<16}{}", reasons.join("").trim_end());
        }
    }
    println!("`ivr serve` places the calls (calls_per_second {}).", settings.scheduler.calls_per_second);
    Ok(())
}
