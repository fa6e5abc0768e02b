//! The daily plan: which patients are called on a day and when. Pure: the roster, the day's
//! reports, the calling hours and the current time come in; a list of due times goes out.
//!
//! Rules, in the order they are applied to each patient (in roster order):
//! 1. a patient whose care period does not cover the day is skipped (`out_of_care`);
//! 2. one who already reported that day is skipped (`reported`);
//! 3. on a blocked day nobody is called (`blocked_day`);
//! 4. the patient's slot (the first slot when none is named) is used if it is not over at
//!    `now`, else the next slot of the day that is not; when none remains, `slot_over`;
//! 5. an area with a capacity takes its first patients up to that number (`over_capacity`).
//!
//! The jobs of each slot are spread evenly over what remains of its window, in roster order,
//! so the dialer is not flooded at the slot's start. `start_now` puts every job at `now` (or
//! the end of the quiet hours), slots aside.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

pub use super::hours::{BlockedDay, CallingHours, DailySpan, DayTime, HoursError, Slot, Window};

/// What the plan needs to know of a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPatient<'a> {
    pub id: &'a str,
    pub area: Option<&'a str>,
    /// The patient's `call_slot`; `None` for the first slot of the day.
    pub slot: Option<&'a str>,
    /// First day of care (none: since ever).
    pub care_start: Option<NaiveDate>,
    /// Last day of care, included (none: until further notice).
    pub care_end: Option<NaiveDate>,
}

impl PlanPatient<'_> {
    /// Whether the care period covers `day`.
    pub fn in_care(&self, day: NaiveDate) -> bool {
        self.care_start.is_none_or(|s| s <= day) && self.care_end.is_none_or(|e| day <= e)
    }
}

/// One call to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedJob {
    /// The patient, as an index into the slice given to [`plan_day`].
    pub patient: usize,
    pub due_at: DateTime<Utc>,
}

/// How many patients were not planned, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    pub out_of_care: usize,
    pub reported: usize,
    pub over_capacity: usize,
    pub blocked_day: usize,
    pub slot_over: usize,
}

/// A day's calls, in roster order, and the patients left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub jobs: Vec<PlannedJob>,
    pub skipped: Skipped,
}

/// Plans the calls of local `day` as seen at `now` (see the module doc for the rules).
/// `reported` holds the ids of patients who reported that day; `capacity` the most patients
/// of an area called per day (areas not in it, and patients without an area, are unlimited).
pub fn plan_day(
    day: NaiveDate,
    now: DateTime<Utc>,
    patients: &[PlanPatient],
    reported: &HashSet<&str>,
    hours: &CallingHours,
    capacity: &HashMap<String, u32>,
    start_now: bool,
) -> Plan {
    let windows = open_windows(hours, day, now, start_now);
    // For each slot, the window its patients are called in: its own, else the next still open.
    let target: Vec<Option<usize>> = (0..windows.len()).map(|i| (i..windows.len()).find(|&j| windows[j].is_some())).collect();
    let blocked = hours.is_blocked(day);
    let mut plan = Plan::default();
    let mut slot_of_job = Vec::new();
    let mut per_window = vec![0usize; windows.len()];
    let mut used: HashMap<&str, u32> = HashMap::new();
    for (index, p) in patients.iter().enumerate() {
        let skipped = &mut plan.skipped;
        if !p.in_care(day) {
            skipped.out_of_care += 1;
            continue;
        }
        if reported.contains(p.id) {
            skipped.reported += 1;
            continue;
        }
        if blocked {
            skipped.blocked_day += 1;
            continue;
        }
        let slot = if start_now { Some(0) } else { target[hours.slot_index(p.slot)] };
        let Some(slot) = slot.filter(|&s| windows[s].is_some()) else {
            skipped.slot_over += 1;
            continue;
        };
        if let Some((area, &cap)) = p.area.and_then(|a| capacity.get(a).map(|c| (a, c))) {
            let n = used.entry(area).or_insert(0);
            if *n >= cap {
                skipped.over_capacity += 1;
                continue;
            }
            *n += 1;
        }
        per_window[slot] += 1;
        slot_of_job.push(slot);
        plan.jobs.push(PlannedJob { patient: index, due_at: now });
    }
    spread(&mut plan.jobs, &slot_of_job, &windows, &per_window, start_now);
    plan
}

/// The windows jobs are placed in, cut to start no earlier than `now`: one per slot, or with
/// `start_now` a single instant (the window's start) at the next time outside the quiet hours.
fn open_windows(hours: &CallingHours, day: NaiveDate, now: DateTime<Utc>, start_now: bool) -> Vec<Option<Window>> {
    if start_now {
        return vec![hours.next_allowed_time(day, now).map(|at| (at, at))];
    }
    let open = |w: Option<Window>| w.filter(|(_, end)| *end > now).map(|(start, end)| (start.max(now), end));
    hours.day_windows(day).into_iter().map(open).collect()
}

/// Job k of the n in a window is due k/n of the way through it (to the second).
fn spread(jobs: &mut [PlannedJob], slot_of_job: &[usize], windows: &[Option<Window>], per_window: &[usize], now: bool) {
    let mut placed = vec![0usize; windows.len()];
    for (job, &slot) in jobs.iter_mut().zip(slot_of_job) {
        let (start, end) = windows[slot].expect("jobs are only placed in open windows");
        let offset = if now {
            0
        } else {
            let k = placed[slot] as i64;
            placed[slot] += 1;
            (end - start).num_seconds() * k / per_window[slot] as i64
        };
        job.due_at = start + chrono::Duration::seconds(offset);
    }
}
