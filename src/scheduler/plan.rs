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
    let target: Vec<Option<usize>> =
        (0..windows.len()).map(|i| (i..windows.len()).find(|&j| windows[j].is_some())).collect();
    let blocked = hours.is_blocked(day);
    let mut plan = Plan::default();
    let mut slot_of_job = Vec::new();
    let mut per_window = vec![0usize; windows.len()];
    // Area → (capacity, patients planned so far): one lookup per patient.
    let mut limits: HashMap<&str, (u32, u32)> = capacity.iter().map(|(a, &cap)| (a.as_str(), (cap, 0))).collect();
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
        if let Some((cap, used)) = p.area.and_then(|a| limits.get_mut(a)) {
            if *used >= *cap {
                skipped.over_capacity += 1;
                continue;
            }
            *used += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const DAY: &str = "2025-06-02";

    fn day() -> NaiveDate {
        DAY.parse().unwrap()
    }

    /// Tokyo (UTC+9): morning 09:00-11:00 is 00:00-02:00Z, afternoon 14:00-16:00 is 05:00-07:00Z.
    fn hours(blocked: &[&str]) -> CallingHours {
        let slots =
            vec![Slot::parse("morning", "09:00-11:00").unwrap(), Slot::parse("afternoon", "14:00-16:00").unwrap()];
        let blocked = blocked.iter().map(|b| BlockedDay::parse(b).unwrap()).collect();
        CallingHours::new(chrono_tz::Asia::Tokyo, slots, Some(DailySpan::parse("20:00-09:00").unwrap()), blocked)
            .unwrap()
    }

    fn patient<'a>(id: &'a str, slot: Option<&'a str>) -> PlanPatient<'a> {
        PlanPatient { id, area: None, slot, care_start: None, care_end: None }
    }

    fn plan(now: &str, patients: &[PlanPatient], start_now: bool) -> Plan {
        plan_day(day(), utc(now), patients, &HashSet::new(), &hours(&[]), &HashMap::new(), start_now)
    }

    fn due(plan: &Plan) -> Vec<(usize, String)> {
        plan.jobs.iter().map(|j| (j.patient, j.due_at.format("%H:%M:%S").to_string())).collect()
    }

    #[test]
    fn patients_in_care_who_have_not_reported_get_one_call_each() {
        let d = |s: &str| Some(s.parse::<NaiveDate>().unwrap());
        let patients = [
            patient("a", Some("morning")),
            PlanPatient { care_end: d("2025-06-01"), ..patient("ended", None) },
            PlanPatient { care_start: d("2025-06-03"), ..patient("later", None) },
            patient("reported", None),
            PlanPatient { care_start: d(DAY), care_end: d(DAY), ..patient("one day", Some("afternoon")) },
        ];
        let reported = HashSet::from(["reported"]);
        let p = plan_day(day(), utc("2025-06-01T22:00:00Z"), &patients, &reported, &hours(&[]), &HashMap::new(), false);
        assert_eq!(due(&p), [(0, "00:00:00".into()), (4, "05:00:00".into())]);
        assert_eq!(p.skipped, Skipped { out_of_care: 2, reported: 1, ..Skipped::default() });
    }

    #[test]
    fn jobs_are_spread_evenly_over_their_slot_in_roster_order() {
        let patients = [
            patient("a", None),
            patient("b", Some("afternoon")),
            patient("c", Some("morning")),
            patient("d", Some("no such slot")),
            patient("e", None),
        ];
        let p = plan("2025-06-01T22:00:00Z", &patients, false);
        let expected = [(0, "00:00:00"), (1, "05:00:00"), (2, "00:30:00"), (3, "01:00:00"), (4, "01:30:00")];
        assert_eq!(due(&p), expected.map(|(i, t)| (i, t.to_string())));
        assert_eq!(p.skipped, Skipped::default());
    }

    #[test]
    fn the_plan_is_the_same_every_time() {
        let ids: Vec<String> = (0..500).map(|i| format!("p{i}")).collect();
        let slots = [None, Some("morning"), Some("afternoon")];
        let areas = [None, Some("north"), Some("south")];
        let patients: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| PlanPatient { area: areas[i % 3], ..patient(id, slots[i % 3 / 2 + i % 2]) })
            .collect();
        let capacity = HashMap::from([("north".to_string(), 100), ("south".to_string(), 50)]);
        let run =
            || plan_day(day(), utc("2025-06-01T23:00:00Z"), &patients, &HashSet::new(), &hours(&[]), &capacity, false);
        let first = run();
        assert_eq!(first.jobs.len(), 500 - first.skipped.over_capacity);
        assert_eq!(first, run());
    }

    #[test]
    fn a_slot_already_over_moves_to_the_next_slot_of_the_day_then_is_skipped() {
        let patients = [patient("a", Some("morning")), patient("b", Some("afternoon")), patient("c", None)];
        // 11:30: the morning's patients join the afternoon's, spread over 14:00-16:00.
        let p = plan("2025-06-02T02:30:00Z", &patients, false);
        assert_eq!(due(&p), [(0, "05:00:00".into()), (1, "05:40:00".into()), (2, "06:20:00".into())]);
        // 15:00: what is left of the afternoon, 15:00-16:00.
        let p = plan("2025-06-02T06:00:00Z", &patients, false);
        assert_eq!(due(&p), [(0, "06:00:00".into()), (1, "06:20:00".into()), (2, "06:40:00".into())]);
        // 16:00: nothing remains.
        let p = plan("2025-06-02T07:00:00Z", &patients, false);
        assert!(p.jobs.is_empty());
        assert_eq!(p.skipped, Skipped { slot_over: 3, ..Skipped::default() });
        // 10:00: the morning slot is cut to 10:00-11:00.
        let p = plan("2025-06-02T01:00:00Z", &patients[..1], false);
        assert_eq!(due(&p), [(0, "01:00:00".into())]);
    }

    #[test]
    fn an_area_takes_its_first_patients_up_to_its_capacity() {
        let mut patients: Vec<_> =
            ["n1", "n2", "n3", "n4"].map(|id| PlanPatient { area: Some("north"), ..patient(id, None) }).into();
        patients.insert(1, PlanPatient { area: Some("south"), ..patient("s1", None) });
        patients.push(patient("x", None));
        patients[2].slot = Some("afternoon");
        let capacity = HashMap::from([("north".to_string(), 2)]);
        let now = utc("2025-06-02T00:30:00Z");
        let p = plan_day(day(), now, &patients, &HashSet::new(), &hours(&[]), &capacity, false);
        let called: Vec<_> = p.jobs.iter().map(|j| patients[j.patient].id).collect();
        assert_eq!(called, ["n1", "s1", "n2", "x"]);
        assert_eq!(p.skipped, Skipped { over_capacity: 2, ..Skipped::default() });
        let zero = HashMap::from([("south".to_string(), 0)]);
        let p = plan_day(day(), now, &patients, &HashSet::new(), &hours(&[]), &zero, false);
        assert_eq!(p.skipped.over_capacity, 1);
    }

    #[test]
    fn nobody_is_called_on_a_blocked_day() {
        let d = |s: &str| Some(s.parse::<NaiveDate>().unwrap());
        let patients = [patient("a", None), PlanPatient { care_end: d("2025-05-31"), ..patient("b", None) }];
        for blocked in ["2025-06-02", "mon", "2025-05-30..2025-06-03"] {
            let p = plan_day(
                day(),
                utc("2025-06-01T22:00:00Z"),
                &patients,
                &HashSet::new(),
                &hours(&[blocked]),
                &HashMap::new(),
                true,
            );
            assert!(p.jobs.is_empty(), "{blocked}");
            assert_eq!(p.skipped, Skipped { blocked_day: 1, out_of_care: 1, ..Skipped::default() });
        }
    }

    #[test]
    fn start_now_ignores_slots_but_never_quiet_hours() {
        let patients = [patient("a", Some("afternoon")), patient("b", None)];
        // 10:30: everyone at once; the dialer's rate limit spaces them.
        let p = plan("2025-06-02T01:30:00Z", &patients, true);
        assert_eq!(due(&p), [(0, "01:30:00".into()), (1, "01:30:00".into())]);
        // 17:00, after every slot but before the quiet hours.
        let p = plan("2025-06-02T08:00:00Z", &patients, true);
        assert_eq!(due(&p), [(0, "08:00:00".into()), (1, "08:00:00".into())]);
        // 07:00: at 09:00, when the quiet hours end.
        let p = plan("2025-06-01T22:00:00Z", &patients, true);
        assert_eq!(due(&p), [(0, "00:00:00".into()), (1, "00:00:00".into())]);
        // 21:00: quiet until the end of the day.
        let p = plan("2025-06-02T12:00:00Z", &patients, true);
        assert_eq!(p.skipped, Skipped { slot_over: 2, ..Skipped::default() });
    }
}
