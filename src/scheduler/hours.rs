//! When calls may be placed: named slots in local time, quiet hours and blocked days.
//!
//! Times of day are wall-clock times in the health centre's zone. Each edge is turned into an
//! instant for one local day: a time skipped by a clock change (02:30 on the day clocks go
//! forward) becomes the instant the clocks jump; a time that happens twice (on the day clocks go
//! back) is taken as its later instant where a window starts and its earlier one where it ends,
//! so a window never reaches into the quiet hours on either pass.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// A value of the calling hours that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("'{0}' is not a time of day like 09:00")]
    Time(String),
    #[error("'{0}' is not a span like 09:00-11:00")]
    Span(String),
    #[error("'{0}' starts and ends at the same time")]
    EmptySpan(String),
    #[error("'{0}' must end after it starts (a slot cannot cross midnight)")]
    SlotWraps(String),
    #[error("'{0}' is not a date (YYYY-MM-DD), a range (YYYY-MM-DD..YYYY-MM-DD) or a weekday (sun, mon, … sat)")]
    BlockedDay(String),
    #[error("'{0}': the range ends before it starts")]
    BackwardRange(String),
    #[error("at least one slot is needed")]
    NoSlots,
    #[error("slot {slot} lies entirely in the quiet hours {quiet}: no call could be placed in it")]
    SlotQuiet { slot: String, quiet: String },
    #[error("the quiet hours {quiet} split slot {slot} in two: end the slot where the quiet hours begin")]
    QuietSplitsSlot { slot: String, quiet: String },
    #[error("at least one check-in is needed (\"00:00\" for one a day)")]
    NoChecks,
    #[error("check-ins must be in order of time, each once: '{0}' is not after the one before")]
    ChecksOrder(String),
}

/// A time of day as minutes after local midnight, `00:00` to `24:00` (the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DayTime(u16);

impl DayTime {
    /// Midnight at the start of the day.
    pub const MIDNIGHT: DayTime = DayTime(0);
    /// Midnight at the end of the day (`24:00`).
    pub const END_OF_DAY: DayTime = DayTime(24 * 60);

    /// `HH:MM` (or `H:MM`), from `00:00` to `24:00`.
    pub fn parse(s: &str) -> Result<DayTime, HoursError> {
        let bad = || HoursError::Time(s.to_string());
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let digits = |t: &str, n| (1..=n).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
            return Err(bad());
        }
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m > 59 || h > 24 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(DayTime(h * 60 + m))
    }

    /// Minutes after midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// This time on a local day, as a wall-clock date and time (`24:00` is the next midnight).
    pub fn on(self, day: NaiveDate) -> NaiveDateTime {
        day.and_time(chrono::NaiveTime::MIN) + Duration::minutes(self.0.into())
    }
}

impl FromStr for DayTime {
    type Err = HoursError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DayTime::parse(s)
    }
}

impl fmt::Display for DayTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A daily span of local time, `HH:MM-HH:MM`; it wraps midnight when it ends before it starts
/// (`20:00-09:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailySpan {
    pub start: DayTime,
    pub end: DayTime,
}

impl DailySpan {
    /// `HH:MM-HH:MM`, start and end different.
    pub fn parse(s: &str) -> Result<DailySpan, HoursError> {
        let (a, b) = s.split_once('-').ok_or_else(|| HoursError::Span(s.to_string()))?;
        let span = DailySpan { start: DayTime::parse(a)?, end: DayTime::parse(b)? };
        // 00:00-24:00 is the whole day; 00:00-00:00, 24:00-00:00 and 12:00-12:00 could be the
        // whole day or no time at all, so they read as neither.
        let whole_day = span.start.0 == 0 && span.end == DayTime::END_OF_DAY;
        if !whole_day && span.start.0 % (24 * 60) == span.end.0 % (24 * 60) {
            return Err(HoursError::EmptySpan(s.to_string()));
        }
        Ok(span)
    }

    /// Whether the span crosses midnight.
    pub fn wraps(self) -> bool {
        self.end < self.start
    }

    /// Whether a time of day falls in the span (start included, end excluded).
    pub fn contains(self, t: DayTime) -> bool {
        if self.wraps() { t >= self.start || t < self.end } else { t >= self.start && t < self.end }
    }
}

impl fmt::Display for DailySpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A named call slot that does not cross midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub span: DailySpan,
}

impl Slot {
    /// A slot from its name and `HH:MM-HH:MM`.
    pub fn parse(name: &str, text: &str) -> Result<Slot, HoursError> {
        let span = DailySpan::parse(text)?;
        if span.wraps() {
            return Err(HoursError::SlotWraps(text.to_string()));
        }
        Ok(Slot { name: name.to_string(), span })
    }
}

/// A day on which no call is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedDay {
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
    /// `YYYY-MM-DD..YYYY-MM-DD`, both ends included.
    Range(NaiveDate, NaiveDate),
    /// `sun`, `mon`, … `sat`: every such day.
    Weekday(Weekday),
}

impl BlockedDay {
    /// A date, an inclusive range of dates, or a weekday's short English name.
    pub fn parse(s: &str) -> Result<BlockedDay, HoursError> {
        let t = s.trim();
        let date =
            |d: &str| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").map_err(|_| HoursError::BlockedDay(s.into()));
        let weekday = match t.to_ascii_lowercase().as_str() {
            "sun" => Some(Weekday::Sun),
            "mon" => Some(Weekday::Mon),
            "tue" => Some(Weekday::Tue),
            "wed" => Some(Weekday::Wed),
            "thu" => Some(Weekday::Thu),
            "fri" => Some(Weekday::Fri),
            "sat" => Some(Weekday::Sat),
            _ => None,
        };
        if let Some(w) = weekday {
            return Ok(BlockedDay::Weekday(w));
        }
        match t.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (date(a)?, date(b)?);
                if b < a {
                    return Err(HoursError::BackwardRange(s.into()));
                }
                Ok(BlockedDay::Range(a, b))
            }
            None => Ok(BlockedDay::Date(date(t)?)),
        }
    }

    /// Whether `day` is this blocked day.
    pub fn covers(self, day: NaiveDate) -> bool {
        match self {
            BlockedDay::Date(d) => d == day,
            BlockedDay::Range(a, b) => a <= day && day <= b,
            BlockedDay::Weekday(w) => day.weekday() == w,
        }
    }
}

/// When the health centre answers its phone: a daily span in its zone, except on closed days
/// (weekdays, dates and ranges, as for [`BlockedDay`]).
#[derive(Debug, Clone)]
pub struct OpeningHours {
    pub tz: Tz,
    pub span: DailySpan,
    pub closed: Vec<BlockedDay>,
}

impl OpeningHours {
    /// Whether the centre is open at `t`. A span that crosses midnight belongs to the day it
    /// starts on.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz).naive_local();
        let time = DayTime((local.time().signed_duration_since(chrono::NaiveTime::MIN).num_minutes()) as u16);
        if !self.span.contains(time) {
            return false;
        }
        let day = if self.span.wraps() && time < self.span.end { local.date().pred_opt() } else { Some(local.date()) };
        day.is_some_and(|d| !self.closed.iter().any(|c| c.covers(d)))
    }
}

/// Which way an ambiguous or skipped local time is resolved.
#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

/// A window of instants, start included, end excluded.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// The calling hours: the zone, the slots (in order of start), the quiet hours and the blocked
/// days. Built once from the `[scheduler]` settings.
#[derive(Debug, Clone)]
pub struct CallingHours {
    tz: Tz,
    slots: Vec<Slot>,
    /// `None`: no quiet hours (`quiet_hours = "none"`); slots alone decide.
    quiet: Option<DailySpan>,
    blocked: Vec<BlockedDay>,
    /// The day's check-ins, in order of time; one at `00:00` unless set.
    checks: Vec<DayTime>,
}

impl CallingHours {
    /// Checks that there is a slot, that no slot lies wholly in the quiet hours and that the
    /// quiet hours cut no slot in two (a slot minus the quiet hours is one window).
    pub fn new(
        tz: Tz,
        mut slots: Vec<Slot>,
        quiet: Option<DailySpan>,
        blocked: Vec<BlockedDay>,
    ) -> Result<Self, HoursError> {
        if slots.is_empty() {
            return Err(HoursError::NoSlots);
        }
        slots.sort_by(|a, b| (a.span.start, &a.name).cmp(&(b.span.start, &b.name)));
        let hours = CallingHours { tz, slots, quiet, blocked, checks: vec![DayTime::MIDNIGHT] };
        let Some(quiet) = quiet else { return Ok(hours) };
        for s in &hours.slots {
            let (slot, text) = (s.name.clone(), quiet.to_string());
            if !quiet.wraps() && s.span.start < quiet.start && quiet.end < s.span.end {
                return Err(HoursError::QuietSplitsSlot { slot, quiet: text });
            }
            if hours.allowed(s.span).is_none() {
                return Err(HoursError::SlotQuiet { slot, quiet: text });
            }
        }
        Ok(hours)
    }

    /// The same hours with the day's check-ins (`scheduler.checks`): at least one, in order of
    /// time, each before `24:00`.
    pub fn with_checks(mut self, checks: Vec<DayTime>) -> Result<Self, HoursError> {
        if checks.is_empty() {
            return Err(HoursError::NoChecks);
        }
        for (i, c) in checks.iter().enumerate() {
            if *c == DayTime::END_OF_DAY || (i > 0 && *c <= checks[i - 1]) {
                return Err(HoursError::ChecksOrder(c.to_string()));
            }
        }
        self.checks = checks;
        Ok(self)
    }

    /// The day's check-ins, in order of time.
    pub fn checks(&self) -> &[DayTime] {
        &self.checks
    }

    /// The check-in a time of day belongs to: the last one at or before it, the first before
    /// the first.
    pub fn checkin_at(&self, t: DateTime<Utc>) -> usize {
        let local = t.with_timezone(&self.tz).naive_local();
        let day = local.date();
        self.checks.iter().rposition(|c| c.on(day) <= local).unwrap_or(0)
    }

    /// Check-in `k`'s report window on a local day: from the check-in (the first one: from the
    /// day's start) to the next check-in (the last one: to the day's end). A report finished in
    /// it counts for the check-in.
    pub fn checkin_window(&self, day: NaiveDate, k: usize) -> Window {
        let (day_start, day_end) = self.day_bounds(day);
        let from = if k == 0 { day_start } else { self.instant(day, self.checks[k], Edge::Start) };
        let to = match self.checks.get(k + 1) {
            Some(next) => self.instant(day, *next, Edge::Start),
            None => day_end,
        };
        (from, to.max(from))
    }

    /// When check-in `k`'s calls may start: at the check-in (the first at `00:00`: the day's
    /// start), never before.
    pub fn checkin_start(&self, day: NaiveDate, k: usize) -> DateTime<Utc> {
        let (day_start, _) = self.day_bounds(day);
        self.instant(day, self.checks[k], Edge::Start).max(day_start)
    }

    /// Every slot's window on that day cut to check-in `k` (from the check-in to the next one),
    /// in order of slot start; `None` for a slot with no time in it.
    pub fn checkin_windows(&self, day: NaiveDate, k: usize) -> Vec<Option<Window>> {
        let (_, to) = self.checkin_window(day, k);
        let from = self.checkin_start(day, k);
        let cut = |w: Option<Window>| w.map(|(s, e)| (s.max(from), e.min(to))).filter(|(s, e)| s < e);
        self.day_windows(day).into_iter().map(cut).collect()
    }

    /// The health centre's time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The local day an instant falls in.
    pub fn day_of(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// A local day's start and end (its midnights; a day may be 23 or 25 hours long).
    pub fn day_bounds(&self, day: NaiveDate) -> Window {
        let midnight = |d: NaiveDate| self.instant(d, DayTime::MIDNIGHT, Edge::Start);
        (midnight(day), midnight(day.succ_opt().unwrap_or(day)))
    }

    /// The slots' names, in order of start.
    pub fn slot_names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }

    /// The slot a patient's `call_slot` names, as an index into the slots in order of start:
    /// the first slot when none is named or the name is not (or no longer) configured, so a
    /// patient is called rather than forgotten.
    pub fn slot_index(&self, name: Option<&str>) -> usize {
        name.and_then(|n| self.slots.iter().position(|s| s.name == n)).unwrap_or(0)
    }

    /// Whether no call is placed on this local day.
    pub fn is_blocked(&self, day: NaiveDate) -> bool {
        self.blocked.iter().any(|b| b.covers(day))
    }

    /// The patient's slot on that local day minus the quiet hours; `None` on a blocked day.
    pub fn slot_window(&self, day: NaiveDate, slot: Option<&str>) -> Option<Window> {
        if self.is_blocked(day) {
            return None;
        }
        self.window(day, self.slots[self.slot_index(slot)].span)
    }

    /// Every slot's window on that day, in order of start (all `None` on a blocked day).
    pub fn day_windows(&self, day: NaiveDate) -> Vec<Option<Window>> {
        let blocked = self.is_blocked(day);
        self.slots.iter().map(|s| if blocked { None } else { self.window(day, s.span) }).collect()
    }

    /// The earliest time `>= after`, on the same local day, at which a call may be placed:
    /// in the patient's slot if it is not over, else in the slot of the day that opens first
    /// among those not over. `None` when no slot remains that day or the day is blocked.
    pub fn next_call_time(&self, after: DateTime<Utc>, slot: Option<&str>) -> Option<DateTime<Utc>> {
        self.next_call_time_before(after, slot, None)
    }

    /// [`CallingHours::next_call_time`], with the slots cut to end by `until` (the end of a
    /// job's check-in): a retry never runs into the next check-in.
    pub fn next_call_time_before(
        &self,
        after: DateTime<Utc>,
        slot: Option<&str>,
        until: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let windows = self.day_windows(after.with_timezone(&self.tz).date_naive());
        let open = |w: &Option<Window>| {
            w.map(|(start, end)| (start, until.map_or(end, |u| end.min(u))))
                .filter(|(_, end)| *end > after)
                .map(|(start, _)| start.max(after))
        };
        open(&windows[self.slot_index(slot)]).or_else(|| windows.iter().filter_map(open).min())
    }

    /// The earliest time `>= after` on that local day outside the quiet hours, slots aside
    /// (for a campaign started by hand); `None` on a blocked day or when none remains.
    pub fn next_allowed_time(&self, day: NaiveDate, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_blocked(day) {
            return None;
        }
        let spans = match self.quiet {
            None => vec![DailySpan { start: DayTime::MIDNIGHT, end: DayTime::END_OF_DAY }],
            Some(q) if q.wraps() => vec![DailySpan { start: q.end, end: q.start }],
            Some(q) => vec![
                DailySpan { start: DayTime::MIDNIGHT, end: q.start },
                DailySpan { start: q.end, end: DayTime::END_OF_DAY },
            ],
        };
        spans
            .into_iter()
            .filter(|s| s.start < s.end)
            .filter_map(|s| self.to_window(day, s.start, s.end))
            .find(|(_, end)| *end > after)
            .map(|(start, _)| start.max(after))
    }

    /// The part of a slot outside the quiet hours, in local time.
    fn allowed(&self, slot: DailySpan) -> Option<(DayTime, DayTime)> {
        let (s, e) = (slot.start, slot.end);
        let Some(q) = self.quiet else { return (s < e).then_some((s, e)) };
        let (start, end) = if q.wraps() {
            (s.max(q.end), e.min(q.start))
        } else if e <= q.start || s >= q.end {
            (s, e)
        } else if s < q.start {
            (s, q.start)
        } else {
            (q.end, e)
        };
        (start < end).then_some((start, end))
    }

    fn window(&self, day: NaiveDate, slot: DailySpan) -> Option<Window> {
        let (start, end) = self.allowed(slot)?;
        self.to_window(day, start, end)
    }

    fn to_window(&self, day: NaiveDate, start: DayTime, end: DayTime) -> Option<Window> {
        let (start, end) = (self.instant(day, start, Edge::Start), self.instant(day, end, Edge::End));
        (start < end).then_some((start, end))
    }

    /// A wall-clock time on a local day as an instant (see the module doc for clock changes).
    fn instant(&self, day: NaiveDate, t: DayTime, edge: Edge) -> DateTime<Utc> {
        let mut local = t.on(day);
        // A skipped time: the first minute that exists is the instant the clocks jump. Gaps are
        // on whole minutes and at most a day (Pacific/Apia skipped 2011-12-30).
        for _ in 0..=2 * 24 * 60 {
            match self.tz.from_local_datetime(&local) {
                LocalResult::Single(x) => return x.with_timezone(&Utc),
                LocalResult::Ambiguous(a, b) => {
                    let x = match edge {
                        Edge::Start => a.max(b),
                        Edge::End => a.min(b),
                    };
                    return x.with_timezone(&Utc);
                }
                LocalResult::None => local += Duration::minutes(1),
            }
        }
        // Not reached with the tz database; read the wall-clock time as UTC rather than fail.
        Utc.from_utc_datetime(&local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn hours(tz: Tz, slots: &[(&str, &str)], quiet: &str, blocked: &[&str]) -> Result<CallingHours, HoursError> {
        let slots = slots.iter().map(|(n, s)| Slot::parse(n, s).unwrap()).collect();
        let blocked = blocked.iter().map(|b| BlockedDay::parse(b).unwrap()).collect();
        CallingHours::new(tz, slots, Some(DailySpan::parse(quiet).unwrap()), blocked)
    }

    /// The defaults: morning 09:00-11:00, afternoon 14:00-16:00, quiet 20:00-09:00, Tokyo.
    fn tokyo() -> CallingHours {
        hours(chrono_tz::Asia::Tokyo, &[("afternoon", "14:00-16:00"), ("morning", "09:00-11:00")], "20:00-09:00", &[])
            .unwrap()
    }

    #[test]
    fn the_centre_is_open_in_its_hours_on_its_days_in_its_zone() {
        let closed = ["sat", "sun", "2026-12-29..2027-01-03"].iter().map(|b| BlockedDay::parse(b).unwrap()).collect();
        let desk = OpeningHours { tz: chrono_tz::Asia::Tokyo, span: DailySpan::parse("08:30-17:15").unwrap(), closed };
        // Monday 7 December 2026, Tokyo is UTC+9.
        assert!(desk.is_open(utc("2026-12-06T23:30:00Z")), "08:30 Monday");
        assert!(!desk.is_open(utc("2026-12-06T23:29:00Z")), "08:29 Monday");
        assert!(desk.is_open(utc("2026-12-07T08:14:00Z")), "17:14 Monday");
        assert!(!desk.is_open(utc("2026-12-07T08:15:00Z")), "17:15 Monday: the end is excluded");
        assert!(!desk.is_open(utc("2026-12-05T01:00:00Z")), "10:00 Saturday");
        assert!(!desk.is_open(utc("2026-12-29T01:00:00Z")), "10:00 on a closed date");
        let night = OpeningHours {
            tz: chrono_tz::Asia::Tokyo,
            span: DailySpan::parse("20:00-02:00").unwrap(),
            closed: vec![BlockedDay::parse("sat").unwrap()],
        };
        assert!(night.is_open(utc("2026-12-07T16:00:00Z")), "01:00 Tuesday belongs to Monday night");
        assert!(!night.is_open(utc("2026-12-05T16:00:00Z")), "01:00 Sunday belongs to Saturday night, closed");
    }

    #[test]
    fn times_of_day_are_read_as_operators_write_them() {
        assert_eq!(DayTime::parse("09:00").unwrap().minutes(), 540);
        assert_eq!(DayTime::parse("9:05").unwrap().minutes(), 545);
        assert_eq!(DayTime::parse("24:00"), Ok(DayTime::END_OF_DAY));
        for bad in ["24:01", "9", "09:60", "09:5", "9am", "-1:00", "009:00", ""] {
            assert_eq!(DayTime::parse(bad), Err(HoursError::Time(bad.into())), "{bad}");
        }
        assert_eq!(DailySpan::parse("09:00"), Err(HoursError::Span("09:00".into())));
        assert_eq!(DailySpan::parse("09:00-09:00"), Err(HoursError::EmptySpan("09:00-09:00".into())));
        let day = DailySpan::parse("00:00-24:00").unwrap();
        assert!(!day.wraps());
        assert!(day.contains(DayTime::parse("00:00").unwrap()) && day.contains(DayTime::parse("23:59").unwrap()));
        assert_eq!(DailySpan::parse("24:00-00:00"), Err(HoursError::EmptySpan("24:00-00:00".into())));
        assert_eq!(DailySpan::parse("00:00-00:00"), Err(HoursError::EmptySpan("00:00-00:00".into())));
        assert!(DailySpan::parse("20:00-09:00").unwrap().wraps());
        assert_eq!(Slot::parse("night", "22:00-02:00"), Err(HoursError::SlotWraps("22:00-02:00".into())));
    }

    #[test]
    fn quiet_hours_that_wrap_midnight_cover_both_ends_of_the_day() {
        let q = DailySpan::parse("20:00-09:00").unwrap();
        for (t, quiet) in
            [("19:59", false), ("20:00", true), ("23:59", true), ("00:00", true), ("08:59", true), ("09:00", false)]
        {
            assert_eq!(q.contains(DayTime::parse(t).unwrap()), quiet, "{t}");
        }
    }

    #[test]
    fn blocked_days_are_dates_inclusive_ranges_and_weekdays() {
        let year_end = BlockedDay::parse("2025-12-29..2026-01-03").unwrap();
        assert!(!year_end.covers(date("2025-12-28")));
        assert!(year_end.covers(date("2025-12-29")));
        assert!(year_end.covers(date("2026-01-03")));
        assert!(!year_end.covers(date("2026-01-04")));
        assert!(BlockedDay::parse("sun").unwrap().covers(date("2025-06-01")));
        assert!(!BlockedDay::parse("Sun").unwrap().covers(date("2025-06-02")));
        assert!(BlockedDay::parse("2025-06-02").unwrap().covers(date("2025-06-02")));
        for bad in ["sunday", "2025-13-01", "2025-06-01..", "tomorrow"] {
            assert_eq!(BlockedDay::parse(bad), Err(HoursError::BlockedDay(bad.into())), "{bad}");
        }
        assert_eq!(
            BlockedDay::parse("2026-01-03..2025-12-29"),
            Err(HoursError::BackwardRange("2026-01-03..2025-12-29".into()))
        );
        let h =
            hours(chrono_tz::Asia::Tokyo, &[("morning", "09:00-11:00")], "20:00-09:00", &["sat", "sun", "2025-06-04"])
                .unwrap();
        let blocked: Vec<_> = (1..=7).map(|d| h.is_blocked(date(&format!("2025-06-{d:02}")))).collect();
        assert_eq!(blocked, [true, false, false, true, false, false, true]);
        assert_eq!(h.slot_window(date("2025-06-01"), None), None);
        assert_eq!(h.next_call_time(utc("2025-06-04T00:00:00Z"), None), None);
    }

    #[test]
    fn slots_are_ordered_by_start_and_an_unknown_or_missing_slot_is_the_first() {
        let h = tokyo();
        assert_eq!(h.slot_names(), ["morning", "afternoon"]);
        let morning = Some((utc("2025-06-02T00:00:00Z"), utc("2025-06-02T02:00:00Z")));
        assert_eq!(h.slot_window(date("2025-06-02"), Some("morning")), morning);
        assert_eq!(h.slot_window(date("2025-06-02"), None), morning);
        assert_eq!(h.slot_window(date("2025-06-02"), Some("evening")), morning);
        let afternoon = Some((utc("2025-06-02T05:00:00Z"), utc("2025-06-02T07:00:00Z")));
        assert_eq!(h.slot_window(date("2025-06-02"), Some("afternoon")), afternoon);
    }

    #[test]
    fn quiet_hours_are_cut_from_slots_and_may_not_swallow_or_split_one() {
        let tz = chrono_tz::Asia::Tokyo;
        let h = hours(tz, &[("early", "08:00-10:00"), ("late", "19:00-21:00")], "20:00-09:00", &[]).unwrap();
        let day = date("2025-06-02");
        assert_eq!(h.slot_window(day, Some("early")), Some((utc("2025-06-02T00:00:00Z"), utc("2025-06-02T01:00:00Z"))));
        assert_eq!(h.slot_window(day, Some("late")), Some((utc("2025-06-02T10:00:00Z"), utc("2025-06-02T11:00:00Z"))));
        let lunch = hours(tz, &[("morning", "11:00-12:30")], "12:00-13:00", &[]).unwrap();
        assert_eq!(lunch.slot_window(day, None), Some((utc("2025-06-02T02:00:00Z"), utc("2025-06-02T03:00:00Z"))));
        assert_eq!(
            hours(tz, &[("night", "21:00-23:00")], "20:00-09:00", &[]).unwrap_err(),
            HoursError::SlotQuiet { slot: "night".into(), quiet: "20:00-09:00".into() }
        );
        assert_eq!(
            hours(tz, &[("day", "09:00-17:00")], "12:00-13:00", &[]).unwrap_err(),
            HoursError::QuietSplitsSlot { slot: "day".into(), quiet: "12:00-13:00".into() }
        );
        assert_eq!(
            CallingHours::new(tz, vec![], Some(DailySpan::parse("20:00-09:00").unwrap()), vec![]).unwrap_err(),
            HoursError::NoSlots
        );
    }

    #[test]
    fn slot_windows_follow_daylight_saving_time_in_berlin() {
        let h = hours(
            chrono_tz::Europe::Berlin,
            &[("night", "02:00-04:00"), ("morning", "09:00-11:00")],
            "22:00-00:30",
            &[],
        )
        .unwrap();
        let window = |d: &str, s| h.slot_window(date(d), Some(s));
        // Winter (UTC+1) and summer (UTC+2) on either side of 2025-03-30.
        assert_eq!(window("2025-03-29", "morning"), Some((utc("2025-03-29T08:00:00Z"), utc("2025-03-29T10:00:00Z"))));
        assert_eq!(window("2025-03-30", "morning"), Some((utc("2025-03-30T07:00:00Z"), utc("2025-03-30T09:00:00Z"))));
        // 02:00 does not exist on 2025-03-30: the slot opens when the clocks jump to 03:00.
        assert_eq!(window("2025-03-30", "night"), Some((utc("2025-03-30T01:00:00Z"), utc("2025-03-30T02:00:00Z"))));
        // 02:00 happens twice on 2025-10-26: the slot opens on the second pass and lasts 2 hours.
        assert_eq!(window("2025-10-26", "night"), Some((utc("2025-10-26T01:00:00Z"), utc("2025-10-26T03:00:00Z"))));
        assert_eq!(window("2025-10-26", "morning"), Some((utc("2025-10-26T08:00:00Z"), utc("2025-10-26T10:00:00Z"))));
    }

    #[test]
    fn next_call_time_stays_in_the_slot_then_moves_to_a_later_one_then_gives_up() {
        let h = tokyo();
        let next = |after: &str, slot| h.next_call_time(utc(after), slot);
        // 08:00 Tokyo, quiet: the morning slot opens at 09:00.
        assert_eq!(next("2025-06-01T23:00:00Z", None), Some(utc("2025-06-02T00:00:00Z")));
        assert_eq!(next("2025-06-02T00:00:00Z", Some("morning")), Some(utc("2025-06-02T00:00:00Z")));
        assert_eq!(next("2025-06-02T01:59:59Z", Some("morning")), Some(utc("2025-06-02T01:59:59Z")));
        // 11:00 is the end of the morning slot (excluded): the afternoon slot comes next.
        assert_eq!(next("2025-06-02T02:00:00Z", Some("morning")), Some(utc("2025-06-02T05:00:00Z")));
        // A patient of the afternoon waits for it even while the morning slot is open.
        assert_eq!(next("2025-06-02T01:00:00Z", Some("afternoon")), Some(utc("2025-06-02T05:00:00Z")));
        assert_eq!(next("2025-06-02T06:59:00Z", Some("morning")), Some(utc("2025-06-02T06:59:00Z")));
        // 16:00 and later: nothing remains that day (not even the next morning).
        assert_eq!(next("2025-06-02T07:00:00Z", Some("afternoon")), None);
        assert_eq!(next("2025-06-02T14:30:00Z", None), None);
    }

    #[test]
    fn the_next_allowed_time_skips_only_quiet_hours() {
        let h = tokyo();
        let day = date("2025-06-02");
        assert_eq!(h.next_allowed_time(day, utc("2025-06-01T20:00:00Z")), Some(utc("2025-06-02T00:00:00Z")));
        assert_eq!(h.next_allowed_time(day, utc("2025-06-02T03:00:00Z")), Some(utc("2025-06-02T03:00:00Z")));
        assert_eq!(h.next_allowed_time(day, utc("2025-06-02T11:00:00Z")), None);
        let lunch = hours(chrono_tz::Asia::Tokyo, &[("m", "09:00-11:00")], "12:00-13:00", &[]).unwrap();
        assert_eq!(lunch.next_allowed_time(day, utc("2025-06-02T03:30:00Z")), Some(utc("2025-06-02T04:00:00Z")));
        assert_eq!(lunch.next_allowed_time(day, utc("2025-06-02T14:59:00Z")), Some(utc("2025-06-02T14:59:00Z")));
        assert_eq!(lunch.next_allowed_time(day, utc("2025-06-02T15:00:00Z")), None);
    }

    #[test]
    fn a_whole_day_slot_is_cut_by_quiet_hours_at_both_ends() {
        let h = hours(chrono_tz::Asia::Tokyo, &[("any", "00:00-24:00")], "20:00-09:00", &[]).unwrap();
        let day = date("2025-06-02");
        assert_eq!(h.slot_window(day, None), Some((utc("2025-06-02T00:00:00Z"), utc("2025-06-02T11:00:00Z"))));
    }

    #[test]
    fn without_quiet_hours_slots_alone_decide() {
        let slots = [("morning", "00:00-12:00"), ("afternoon", "12:00-24:00")];
        let slots = slots.iter().map(|(n, s)| Slot::parse(n, s).unwrap()).collect();
        let all_day = CallingHours::new(chrono_tz::Asia::Tokyo, slots, None, vec![]).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        // 04:06 in Tokyo.
        let t = utc("2026-11-25T19:06:00Z");
        assert_eq!(all_day.next_call_time(t, Some("morning")), Some(t));
        assert_eq!(all_day.next_call_time(t, Some("afternoon")), Some(utc("2026-11-26T03:00:00Z")));
        assert_eq!(all_day.next_allowed_time(day, t), Some(t));
        assert_eq!(all_day.slot_window(day, None), Some((utc("2026-11-25T15:00:00Z"), utc("2026-11-26T03:00:00Z"))));
    }
}
