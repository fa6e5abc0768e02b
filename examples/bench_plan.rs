//! Planning one day for a large roster: how long `scheduler::plan::plan_checkin` takes and how much
//! memory it adds, next to two floors: iterating over the same patients and copying them, and
//! reading one byte of each patient's id, area and slot (the strings the plan must look at).
//!
//! ```text
//! cargo run --release --example bench_plan -- [--patients 1000000] [--runs 5]
//! ```
//!
//! The roster is built in memory, as the store would return it: ids and area names as owned
//! strings, three slots (one patient in four names none), 40 areas of which 10 have a
//! capacity, one patient in ten out of care and one in ten already reported. The day is a
//! Monday in Asia/Tokyo planned at 07:00, so every slot is still to come.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use clap::Parser;
use ivr::scheduler::plan::{BlockedDay, CallingHours, Channel, DailySpan, PlanPatient, Rules, Slot, plan_checkin};

#[derive(Parser)]
#[command(about = "Time and peak memory of planning one day")]
struct Args {
    /// Patients on the roster.
    #[arg(long, default_value_t = 1_000_000)]
    patients: usize,
    /// Runs of each measurement; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// A roster row as the store returns it.
struct Row {
    id: String,
    area: Option<String>,
    slot: Option<String>,
    care_start: Option<NaiveDate>,
    care_end: Option<NaiveDate>,
}

const SLOTS: [Option<&str>; 4] = [None, Some("morning"), Some("afternoon"), Some("evening")];

fn main() {
    let args = Args::parse();
    let day = NaiveDate::from_ymd_opt(2025, 6, 2).expect("a date");
    let now = "2025-06-01T22:00:00Z".parse::<chrono::DateTime<Utc>>().expect("a time");
    let rows = roster(args.patients, day);
    let patients: Vec<PlanPatient> = rows
        .iter()
        .map(|r| PlanPatient {
            id: &r.id,
            area: r.area.as_deref(),
            slot: r.slot.as_deref(),
            care_start: r.care_start,
            care_end: r.care_end,
            link: false,
        })
        .collect();
    let reported: HashMap<&str, Channel> = rows.iter().step_by(10).map(|r| (r.id.as_str(), Channel::Call)).collect();
    let capacity: HashMap<String, u32> = (0..10).map(|a| (format!("area-{a:02}"), 10_000)).collect();
    let hours = hours();
    let roster_hwm = peak_kib();

    let mut plan = None;
    let planning = median(args.runs, || {
        drop(plan.take());
        let rules = Rules { hours: &hours, capacity: &capacity, start_now: false, web_grace: None };
        plan = Some(black_box(plan_checkin(day, 0, now, &patients, &reported, &rules)));
    });
    let plan = plan.expect("planned at least once");
    let plan_hwm = peak_kib();
    let copying = median(args.runs, || {
        // One patient at a time, as the plan walks them (a `to_vec` would be one memcpy).
        let mut copy = Vec::with_capacity(patients.len());
        for p in black_box(&patients) {
            copy.push(black_box(*p));
        }
        black_box(copy);
    });

    // The plan reads each patient's id, area and slot: separate heap strings, each a likely
    // cache miss. This floor reads one byte of each and does nothing else.
    let reading = median(args.runs, || {
        let touched = black_box(&patients).iter().fold(0usize, |acc, p| {
            let first = |s: Option<&str>| s.and_then(|s| s.bytes().next()).map_or(0, usize::from);
            acc + first(Some(p.id)) + first(p.area) + first(p.slot)
        });
        black_box(touched);
    });

    println!(
        "planning {day} for {} patients ({} cores, {}), median of {} runs",
        args.patients,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::env::consts::ARCH,
        args.runs
    );
    println!("{:32} {:>9.1} ms", "iterate and copy (floor)", ms(copying));
    println!("{:32} {:>9.1} ms", "read id, area, slot (floor)", ms(reading));
    println!("{:32} {:>9.1} ms", "plan_checkin", ms(planning));
    let s = &plan.skipped;
    println!(
        "  {} jobs; skipped: {} out of care, {} reported, {} over capacity, {} slot over, {} blocked day",
        plan.jobs.len(),
        s.out_of_care,
        s.reported,
        s.over_capacity,
        s.slot_over,
        s.blocked_day
    );
    println!(
        "peak memory (VmHWM): {:.0} MiB with the roster, {:.0} MiB after planning (+{:.0} MiB)",
        roster_hwm as f64 / 1024.0,
        plan_hwm as f64 / 1024.0,
        plan_hwm.saturating_sub(roster_hwm) as f64 / 1024.0
    );
}

/// The default slots plus an evening slot, the default quiet hours, Sundays blocked.
fn hours() -> CallingHours {
    let slots = [("morning", "09:00-11:00"), ("afternoon", "14:00-16:00"), ("evening", "17:00-19:00")];
    let slots = slots.iter().map(|(n, s)| Slot::parse(n, s).expect("a slot")).collect();
    let quiet = DailySpan::parse("20:00-09:00").expect("quiet hours");
    CallingHours::new(chrono_tz::Asia::Tokyo, slots, Some(quiet), vec![BlockedDay::parse("sun").expect("a weekday")])
        .expect("calling hours")
}

/// `n` patients; one in ten out of care on `day` (ended the day before).
fn roster(n: usize, day: NaiveDate) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let started = day - chrono::Duration::days((i % 10) as i64);
            let ends = if i % 10 == 3 { day - chrono::Duration::days(1) } else { started + chrono::Duration::days(10) };
            Row {
                id: format!("p{i:07}"),
                area: (i % 41 != 0).then(|| format!("area-{:02}", i % 40)),
                slot: SLOTS[i % 4].map(str::to_string),
                care_start: Some(started),
                care_end: (i % 7 != 0).then_some(ends),
            }
        })
        .collect()
}

/// The median duration of `runs` calls of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The process's peak resident memory in KiB (`VmHWM` in /proc/self/status; 0 elsewhere).
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
