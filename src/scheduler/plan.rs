//! The plan of a day's check-in: which patients are called and when. Pure: the roster, the
//! reports, the calling hours and the current time come in; a list of due times goes out.
//!
//! A day has one check-in or more (`scheduler.checks`, one at `00:00` by default): each is
//! planned by itself, with its own jobs. Rules, in the order they are applied to each patient
//! (in roster order), for check-in `k`:
//! 1. a patient whose care period does not cover the day is skipped (`out_of_care`);
//! 2. one who finished a report in the check-in's window (see
//!    [`CallingHours::checkin_window`]) is skipped: `reported_web` for a report on the web,
//!    `reported` for one by phone;
//! 3. on a blocked day nobody is called (`blocked_day`);
//! 4. the patient's slot, cut to the check-in (from the check-in to the next one), is used if
//!    it is not over at `now`, else the next slot of the check-in that is not, else an earlier
//!    one still open; when none remains, `slot_over`;
//! 5. an area with a capacity takes its first patients up to that number, in each check-in
//!    (`over_capacity`).
//!
//! A patient with a live personal link (and `web_grace` set) who would be called gets the web
//! request first, at the check-in's start (or `now`, if later; after the quiet hours while the
//! check-in lasts); their call is planned as if it were `web_grace` later (`web_first`), and the
//! dialer settles it without a call if they report in the meantime.
//!
//! The jobs of each slot are spread evenly over what remains of its window, in roster order,
//! so the dialer is not flooded at the slot's start. `start_now` puts every job at `now` (or
//! the end of the quiet hours), slots aside.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};

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
    /// Whether the patient has a live personal link (`/r/{token}`): they get the web request
    /// first.
    pub link: bool,
}

impl PlanPatient<'_> {
    /// Whether the care period covers `day`.
    pub fn in_care(&self, day: NaiveDate) -> bool {
        self.care_start.is_none_or(|s| s <= day) && self.care_end.is_none_or(|e| day <= e)
    }
}

/// How a report came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A call, placed or received, whose flow reached its end.
    Call,
    /// The web form of the personal link.
    Web,
}

/// Why a patient is or is not called for a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Called: a job is planned.
    Called,
    /// Sent the web request first; called after `web_grace` unless they report meanwhile.
    WebFirst,
    OutOfCare,
    /// Reported by phone in the check-in's window.
    Reported,
    /// Reported on the web in the check-in's window.
    ReportedWeb,
    BlockedDay,
    SlotOver,
    OverCapacity,
}

impl Reason {
    /// The name used in the plan's output and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Called => "called",
            Reason::WebFirst => "web_first",
            Reason::OutOfCare => "out_of_care",
            Reason::Reported => "reported",
            Reason::ReportedWeb => "reported_web",
            Reason::BlockedDay => "blocked_day",
            Reason::SlotOver => "slot_over",
            Reason::OverCapacity => "over_capacity",
        }
    }

    /// Whether a call is planned.
    pub fn called(self) -> bool {
        matches!(self, Reason::Called | Reason::WebFirst)
    }
}

/// One call to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedJob {
    /// The patient, as an index into the slice given to [`plan_checkin`].
    pub patient: usize,
    pub due_at: DateTime<Utc>,
    /// When the patient's web request goes out (`web_first`); the call is due after it.
    pub web_at: Option<DateTime<Utc>>,
}

/// How many patients were not planned, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    pub out_of_care: usize,
    pub reported: usize,
    pub reported_web: usize,
    pub over_capacity: usize,
    pub blocked_day: usize,
    pub slot_over: usize,
}

impl Skipped {
    fn count(&mut self, reason: Reason) {
        match reason {
            Reason::OutOfCare => self.out_of_care += 1,
            Reason::Reported => self.reported += 1,
            Reason::ReportedWeb => self.reported_web += 1,
            Reason::OverCapacity => self.over_capacity += 1,
            Reason::BlockedDay => self.blocked_day += 1,
            Reason::SlotOver => self.slot_over += 1,
            Reason::Called | Reason::WebFirst => {}
        }
    }

    /// Adds another check-in's figures.
    pub fn add(&mut self, o: &Skipped) {
        self.out_of_care += o.out_of_care;
        self.reported += o.reported;
        self.reported_web += o.reported_web;
        self.over_capacity += o.over_capacity;
        self.blocked_day += o.blocked_day;
        self.slot_over += o.slot_over;
    }
}

/// A check-in's calls, in roster order, and why each patient is or is not called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub jobs: Vec<PlannedJob>,
    pub skipped: Skipped,
    /// One per patient, in roster order.
    pub reasons: Vec<Reason>,
    /// The web requests: (patient index, when it goes out), one with each `web_first` job.
    pub web: Vec<(usize, DateTime<Utc>)>,
}

/// What the plan follows besides the roster, the reports and the time.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub hours: &'a CallingHours,
    /// Area → the most patients of that area called per check-in (areas not in it, and
    /// patients without an area, are unlimited).
    pub capacity: &'a HashMap<String, u32>,
    /// Everyone as soon as calling hours allow, slots aside (for the check-in `now` is in).
    pub start_now: bool,
    /// How long a patient with a link has to report on the web before the call; `None`: no web
    /// request, everyone is called.
    pub web_grace: Option<Duration>,
}

/// Plans check-in `k` of local `day` as seen at `now` (see the module doc for the rules).
/// `reported` holds the patients who finished a report in the check-in's window, and how.
pub fn plan_checkin(
    day: NaiveDate,
    k: usize,
    now: DateTime<Utc>,
    patients: &[PlanPatient],
    reported: &HashMap<&str, Channel>,
    rules: &Rules,
) -> Plan {
    let hours = rules.hours;
    // `--now` starts the check-in under way (or the first, before it); later ones keep slots.
    let start_now = rules.start_now && k == hours.checkin_at(now);
    let windows = open_windows(hours, day, k, now, start_now);
    // The web request goes out at the check-in, or now if later, after the quiet hours if the
    // check-in still runs then.
    let (_, checkin_end) = hours.checkin_window(day, k);
    let from = hours.checkin_start(day, k).max(now);
    let request_at = hours.next_allowed_time(day, from).filter(|t| *t < checkin_end).unwrap_or(from);
    let web_windows = rules.web_grace.map(|g| open_windows(hours, day, k, request_at + g, start_now));
    let target = |windows: &[Option<Window>], slot: usize| {
        (slot..windows.len()).chain((0..slot).rev()).find(|&j| windows[j].is_some())
    };
    let blocked = hours.is_blocked(day);
    let mut plan = Plan { reasons: Vec::with_capacity(patients.len()), ..Plan::default() };
    // Per job: (which set of windows, slot).
    let mut slot_of_job = Vec::new();
    let mut per_window = [vec![0usize; windows.len()], vec![0usize; windows.len()]];
    // Area → (capacity, patients planned so far): one lookup per patient.
    let mut limits: HashMap<&str, (u32, u32)> = rules.capacity.iter().map(|(a, &cap)| (a.as_str(), (cap, 0))).collect();
    for (index, p) in patients.iter().enumerate() {
        let web = p.link && rules.web_grace.is_some();
        let reason = (|| {
            if !p.in_care(day) {
                return Reason::OutOfCare;
            }
            match reported.get(p.id) {
                Some(Channel::Web) => return Reason::ReportedWeb,
                Some(Channel::Call) => return Reason::Reported,
                None => {}
            }
            if blocked {
                return Reason::BlockedDay;
            }
            let set = match (&web_windows, web) {
                (Some(w), true) => w,
                _ => &windows,
            };
            let slot = if start_now { Some(0) } else { target(set, hours.slot_index(p.slot)) };
            let Some(slot) = slot.filter(|&s| set[s].is_some()) else {
                return Reason::SlotOver;
            };
            if let Some((cap, used)) = p.area.and_then(|a| limits.get_mut(a)) {
                if *used >= *cap {
                    return Reason::OverCapacity;
                }
                *used += 1;
            }
            let which = usize::from(web && web_windows.is_some());
            per_window[which][slot] += 1;
            slot_of_job.push((which, slot));
            let web_at = web.then_some(request_at);
            plan.jobs.push(PlannedJob { patient: index, due_at: now, web_at });
            if let Some(at) = web_at {
                plan.web.push((index, at));
            }
            if web { Reason::WebFirst } else { Reason::Called }
        })();
        plan.skipped.count(reason);
        plan.reasons.push(reason);
    }
    let sets = [windows, web_windows.unwrap_or_default()];
    spread(&mut plan.jobs, &slot_of_job, &sets, &per_window, start_now);
    plan
}

/// The windows of check-in `k` jobs are placed in, cut to start no earlier than `now`: one per
/// slot, or with `start_now` a single instant (the window's start) at the next time outside the
/// quiet hours before the check-in ends.
fn open_windows(
    hours: &CallingHours,
    day: NaiveDate,
    k: usize,
    now: DateTime<Utc>,
    start_now: bool,
) -> Vec<Option<Window>> {
    if start_now {
        let (_, end) = hours.checkin_window(day, k);
        let at = hours.next_allowed_time(day, now.max(hours.checkin_start(day, k))).filter(|at| *at < end);
        let mut windows = vec![None; hours.slot_names().len()];
        windows[0] = at.map(|at| (at, at));
        return windows;
    }
    let open = |w: Option<Window>| w.filter(|(_, end)| *end > now).map(|(start, end)| (start.max(now), end));
    hours.checkin_windows(day, k).into_iter().map(open).collect()
}

/// Job k of the n in a window is due k/n of the way through it (to the second).
fn spread(
    jobs: &mut [PlannedJob],
    slot_of_job: &[(usize, usize)],
    sets: &[Vec<Option<Window>>; 2],
    per_window: &[Vec<usize>; 2],
    now: bool,
) {
    let mut placed = [vec![0usize; per_window[0].len()], vec![0usize; per_window[1].len()]];
    for (job, &(set, slot)) in jobs.iter_mut().zip(slot_of_job) {
        let (start, end) = sets[set][slot].expect("jobs are only placed in open windows");
        let offset = if now {
            0
        } else {
            let k = placed[set][slot] as i64;
            placed[set][slot] += 1;
            (end - start).num_seconds() * k / per_window[set][slot] as i64
        };
        job.due_at = start + chrono::Duration::seconds(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
        PlanPatient { id, area: None, slot, care_start: None, care_end: None, link: false }
    }

    /// The day's only check-in (00:00, the default).
    fn plan_day(
        day: NaiveDate,
        now: DateTime<Utc>,
        patients: &[PlanPatient],
        reported: &HashSet<&str>,
        hours: &CallingHours,
        capacity: &HashMap<String, u32>,
        start_now: bool,
    ) -> Plan {
        let reported = reported.iter().map(|&p| (p, Channel::Call)).collect();
        let rules = Rules { hours, capacity, start_now, web_grace: None };
        plan_checkin(day, 0, now, patients, &reported, &rules)
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

    /// Two check-ins, 09:00 and 15:00, on the default hours.
    fn two_checks() -> CallingHours {
        hours(&[]).with_checks(vec![DayTime::parse("09:00").unwrap(), DayTime::parse("15:00").unwrap()]).unwrap()
    }

    fn plan_k(
        k: usize,
        now: &str,
        patients: &[PlanPatient],
        reported: &[(&str, Channel)],
        web_grace: Option<i64>,
    ) -> Plan {
        let hours = two_checks();
        let reported = reported.iter().copied().collect();
        let rules = Rules {
            hours: &hours,
            capacity: &HashMap::new(),
            start_now: false,
            web_grace: web_grace.map(Duration::minutes),
        };
        plan_checkin(day(), k, utc(now), patients, &reported, &rules)
    }

    #[test]
    fn each_check_in_calls_in_the_slots_cut_to_it() {
        let patients = [patient("a", Some("morning")), patient("b", Some("afternoon")), patient("c", None)];
        // 09:00-15:00: the morning, and the afternoon up to 15:00.
        let p = plan_k(0, "2025-06-01T22:00:00Z", &patients, &[], None);
        assert_eq!(due(&p), [(0, "00:00:00".into()), (1, "05:00:00".into()), (2, "01:00:00".into())]);
        assert_eq!(p.reasons, [Reason::Called; 3]);
        // 15:00-24:00: no morning left, so everyone in what remains of the afternoon.
        let p = plan_k(1, "2025-06-01T22:00:00Z", &patients, &[], None);
        assert_eq!(due(&p), [(0, "06:00:00".into()), (1, "06:20:00".into()), (2, "06:40:00".into())]);
        // At 15:30 the first check-in is over; the second has half an hour left.
        let p = plan_k(0, "2025-06-02T06:30:00Z", &patients, &[], None);
        assert_eq!((p.jobs.len(), p.skipped.slot_over), (0, 3));
        let p = plan_k(1, "2025-06-02T06:30:00Z", &patients, &[], None);
        assert_eq!(due(&p), [(0, "06:30:00".into()), (1, "06:40:00".into()), (2, "06:50:00".into())]);
    }

    #[test]
    fn a_slot_outside_a_check_in_falls_back_to_one_in_it() {
        // Check-ins at 09:00 and 12:00: the afternoon slot has no time in the first one, so its
        // patient is called in the morning (the one slot of the check-in still open).
        let hours =
            hours(&[]).with_checks(vec![DayTime::parse("09:00").unwrap(), DayTime::parse("12:00").unwrap()]).unwrap();
        let rules = Rules { hours: &hours, capacity: &HashMap::new(), start_now: false, web_grace: None };
        let patients = [patient("b", Some("afternoon"))];
        let p = plan_checkin(day(), 0, utc("2025-06-01T22:00:00Z"), &patients, &HashMap::new(), &rules);
        assert_eq!(due(&p), [(0, "00:00:00".into())]);
        let p = plan_checkin(day(), 1, utc("2025-06-01T22:00:00Z"), &patients, &HashMap::new(), &rules);
        assert_eq!(due(&p), [(0, "05:00:00".into())]);
    }

    #[test]
    fn a_report_counts_for_its_check_in_and_says_how_it_came() {
        let patients = [patient("phoned", None), patient("web", None), patient("quiet", None)];
        let reported = [("phoned", Channel::Call), ("web", Channel::Web)];
        let p = plan_k(0, "2025-06-01T22:00:00Z", &patients, &reported, None);
        assert_eq!(p.reasons, [Reason::Reported, Reason::ReportedWeb, Reason::Called]);
        assert_eq!(p.skipped, Skipped { reported: 1, reported_web: 1, ..Skipped::default() });
        assert_eq!(p.jobs.len(), 1);
    }

    #[test]
    fn a_patient_with_a_link_gets_the_web_request_then_a_call_after_the_grace() {
        let linked = |id| PlanPatient { link: true, ..patient(id, None) };
        let patients = [linked("w1"), patient("c1", None), linked("w2"), linked("done")];
        let reported = [("done", Channel::Web)];
        // 09:00 check-in, planned at 07:00: the requests go out at 09:00, the calls of those
        // with a link are spread over 10:00-11:00, the others' over 09:00-11:00.
        let p = plan_k(0, "2025-06-01T22:00:00Z", &patients, &reported, Some(60));
        assert_eq!(p.reasons, [Reason::WebFirst, Reason::Called, Reason::WebFirst, Reason::ReportedWeb]);
        assert_eq!(p.web, [(0, utc("2025-06-02T00:00:00Z")), (2, utc("2025-06-02T00:00:00Z"))]);
        assert_eq!(due(&p), [(0, "01:00:00".into()), (1, "00:00:00".into()), (2, "01:30:00".into())]);
        // Planned at 10:30: the request goes now, the call at 11:30 is past the morning; the
        // afternoon's 14:00-15:00 is still in the check-in.
        let p = plan_k(0, "2025-06-02T01:30:00Z", &patients[..1], &[], Some(60));
        assert_eq!(p.web, [(0, utc("2025-06-02T01:30:00Z"))]);
        assert_eq!(due(&p), [(0, "05:00:00".into())]);
        // Without web_grace nobody gets a request: everyone is called.
        let p = plan_k(0, "2025-06-01T22:00:00Z", &patients, &reported, None);
        assert!(p.web.is_empty());
        assert_eq!(p.reasons[0], Reason::Called);
    }

    #[test]
    fn the_default_check_in_is_the_whole_day() {
        let h = hours(&[]);
        assert_eq!(h.checks(), [DayTime::MIDNIGHT]);
        assert_eq!(h.checkin_window(day(), 0), h.day_bounds(day()));
        assert_eq!(h.checkin_windows(day(), 0), h.day_windows(day()));
    }
}
