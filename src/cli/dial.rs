//! `ivr dial [--flow F] [--now]`: plans today's campaign in the database; the running server's
//! dialer places the calls. Planning twice the same day adds only patients not yet planned.

use std::path::Path;

use chrono::Utc;

use super::numbers::{Result, open};

pub async fn dial(flow: Option<&str>, now: bool, config: Option<&Path>) -> Result<()> {
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
    let first = p.first_due.map(|t| t.with_timezone(&tz).format("%H:%M").to_string());
    println!(
        "{}: {} call(s) planned with {}, {} new, {} brought forward; first at {} ({tz})",
        p.day,
        p.jobs,
        planner.flow,
        p.new,
        p.advanced,
        first.as_deref().unwrap_or("-")
    );
    let s = &p.skipped;
    println!(
        "not called today: {} out of care, {} already reported, {} over area capacity, {} blocked day, {} slot over",
        s.out_of_care, s.reported, s.over_capacity, s.blocked_day, s.slot_over
    );
    println!("`ivr serve` places the calls (calls_per_second {}).", settings.scheduler.calls_per_second);
    Ok(())
}
