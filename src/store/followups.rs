//! The follow-up queue (要フォロー): an item per patient who needs a person, as the store sees it.
//!
//! Every alert the engine writes (a flow's `alert_health_center`, an unreachable patient, a
//! call hung up before its end, a message with no way left to deliver it, a caller asking for
//! a person) opens an item for its patient in the same transaction ([`opening`] says which
//! alerts do and how urgent they are), or joins the patient's item still open: one open item
//! per patient, holding every reason with its time, as urgent as its most urgent reason.
//!
//! A person claims an item (others see who and since when), may release it, and closes it with
//! an outcome and a note. Each action is a compare-and-set on the item's `version`: an action
//! on an item that changed meanwhile (closed, claimed by someone else, or joined by a new alert
//! the person has not seen) is refused with who did what and when ([`decide`]), and changes
//! nothing, on one server or several.

use chrono::{DateTime, Utc};

use crate::types::{Alert, AlertKind, FollowupOutcome, FollowupStatus, PatientId, Severity};

use super::Fut;

/// Who the item's history names for what the engine did (opening, joining).
pub const ENGINE: &str = "ivr";

/// The longest note kept with a closed item, in characters.
pub const NOTE_MAX: usize = 2000;

/// An alert being written, with the item it opens or joins (when it opens one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// What the alerts table keeps (`reason`): the flow's reason, or `kind: detail`.
    pub text: String,
    pub kind: AlertKind,
    /// The flow's reason (`spo2_low`), or what happened (`3 attempt(s) today, the last busy`).
    pub reason: String,
    /// The item's urgency; `None`: the alert opens no item (the health centre is told, no
    /// person needs to act: a number re-issued, an SMS that fell back to another way).
    pub opens: Option<Severity>,
}

impl NewAlert {
    /// A flow's alert (`alert_health_center`), as urgent as the flow says.
    pub fn flow(reason: &str, severity: Severity) -> NewAlert {
        NewAlert { text: reason.to_string(), kind: AlertKind::Flow, reason: reason.to_string(), opens: Some(severity) }
    }

    /// An alert the engine raises by itself, opening an item as [`opening`] says.
    pub fn engine(alert: &Alert) -> NewAlert {
        NewAlert { text: alert.to_string(), kind: alert.kind, reason: alert.detail.clone(), opens: opening(alert.kind) }
    }

    /// The same alert, opening no item (the health centre is told; nothing is left to do).
    pub fn told_only(mut self) -> NewAlert {
        self.opens = None;
        self
    }
}

/// Whether an alert the engine raises by itself opens a follow-up item, and how urgent it is.
/// A flow's alerts always open one, as urgent as the flow's definition says (`normal` when it
/// says nothing).
pub fn opening(kind: AlertKind) -> Option<Severity> {
    match kind {
        AlertKind::Unreachable | AlertKind::AskedForPerson | AlertKind::HungUp => Some(Severity::High),
        AlertKind::MessageFailed | AlertKind::MessageDead | AlertKind::NumberUnread => Some(Severity::Normal),
        AlertKind::MessageReissued => None,
        AlertKind::Flow => Some(Severity::Normal),
    }
}

/// One reason an item is open: an alert, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub alert_id: Option<i64>,
    pub kind: AlertKind,
    pub reason: String,
    pub severity: Severity,
    pub call_id: Option<i64>,
    pub at: DateTime<Utc>,
}

/// What last changed an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Opened,
    /// A new alert joined the open item.
    Joined,
    Claimed,
    Released,
    Closed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Joined => "joined",
            ChangeKind::Claimed => "claimed",
            ChangeKind::Released => "released",
            ChangeKind::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> ChangeKind {
        match s {
            "joined" => ChangeKind::Joined,
            "claimed" => ChangeKind::Claimed,
            "released" => ChangeKind::Released,
            "closed" => ChangeKind::Closed,
            _ => ChangeKind::Opened,
        }
    }
}

/// The last change of an item: what, who, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub what: ChangeKind,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A follow-up item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followup {
    pub followup_id: i64,
    pub patient_id: PatientId,
    pub status: FollowupStatus,
    /// The most urgent of its reasons.
    pub severity: Severity,
    pub opened_at: DateTime<Utc>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub outcome: Option<FollowupOutcome>,
    pub note: Option<String>,
    /// Grows by one at every change (an action, a new alert joining).
    pub version: i64,
    pub last: Change,
    /// Its reasons, oldest first.
    pub reasons: Vec<Reason>,
    /// The patient's name on the roster, read with the item (empty if the roster has none).
    pub patient_name: String,
}

/// What a person does to an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Claim,
    Release,
    Close { outcome: FollowupOutcome, note: String },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Claim => "claim",
            Action::Release => "release",
            Action::Close { .. } => "close",
        }
    }
}

/// An action by someone, on the item as they last saw it (`version`, when they say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    pub action: Action,
    pub by: String,
    /// The version the person acted on; `None`: whatever the item is now, as long as the action
    /// still makes sense (not closed, not claimed by someone else).
    pub version: Option<i64>,
    pub at: DateTime<Utc>,
}

/// Why an action was refused: the item's state and its last change (who did what and when).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: FollowupStatus,
    pub last: Change,
    pub version: i64,
    pub message: String,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted {
    /// Done (or already so: a claim by the person who holds it), the item as it is now.
    Done(Followup),
    /// Refused; nothing changed.
    Refused(Refusal),
    /// No such item.
    Unknown,
}

fn refuse(item: &Followup, message: String) -> Refusal {
    Refusal { status: item.status, last: item.last.clone(), version: item.version, message }
}

fn said(c: &Change) -> String {
    format!("{} by {} at {}", c.what.as_str(), c.by, c.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The item after `act`, or why it is refused. `Ok(None)`: nothing to change (claiming an item
/// one holds already).
pub fn decide(item: &Followup, act: &Act) -> Result<Option<Followup>, Refusal> {
    if item.status == FollowupStatus::Closed {
        return Err(refuse(item, format!("this item was {}", said(&item.last))));
    }
    if let Some(holder) = item.claimed_by.as_deref().filter(|h| *h != act.by) {
        let since = item.claimed_at.unwrap_or(item.last.at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        return Err(refuse(item, format!("this item is claimed by {holder} since {since}")));
    }
    if act.version.is_some_and(|v| v != item.version) {
        return Err(refuse(
            item,
            format!("this item changed since version {}: {}", act.version.unwrap_or(0), said(&item.last)),
        ));
    }
    let mut next = item.clone();
    next.version += 1;
    next.last = Change { what: ChangeKind::Claimed, by: act.by.clone(), at: act.at };
    match &act.action {
        Action::Claim if item.claimed_by.is_some() => return Ok(None),
        Action::Claim => {
            next.status = FollowupStatus::Claimed;
            next.claimed_by = Some(act.by.clone());
            next.claimed_at = Some(act.at);
        }
        Action::Release if item.claimed_by.is_none() => {
            return Err(refuse(item, "this item is not claimed".into()));
        }
        Action::Release => {
            next.status = FollowupStatus::Open;
            next.claimed_by = None;
            next.claimed_at = None;
            next.last.what = ChangeKind::Released;
        }
        Action::Close { outcome, note } => {
            next.status = FollowupStatus::Closed;
            next.closed_by = Some(act.by.clone());
            next.closed_at = Some(act.at);
            next.outcome = Some(*outcome);
            next.note = Some(note.clone());
            next.last.what = ChangeKind::Closed;
        }
    }
    Ok(Some(next))
}

/// Which items a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Open and claimed: the queue.
    Active,
    Only(FollowupStatus),
    All,
}

impl StatusFilter {
    /// `active` (the default), `open`, `claimed`, `closed` or `all`.
    pub fn parse(s: &str) -> Option<StatusFilter> {
        match s {
            "active" => Some(StatusFilter::Active),
            "all" => Some(StatusFilter::All),
            other => FollowupStatus::parse(other).ok().map(StatusFilter::Only),
        }
    }

    /// The stored statuses it takes.
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            StatusFilter::Active => &["open", "claimed"],
            StatusFilter::Only(FollowupStatus::Open) => &["open"],
            StatusFilter::Only(FollowupStatus::Claimed) => &["claimed"],
            StatusFilter::Only(FollowupStatus::Closed) => &["closed"],
            StatusFilter::All => &["open", "claimed", "closed"],
        }
    }
}

/// A page of the queue: most urgent first, then longest waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: StatusFilter,
    /// Only patients of this area (the roster's `area`).
    pub area: Option<String>,
    pub limit: i64,
    pub offset: i64,
    /// Only this patient's items (the patient's page).
    pub patient: Option<String>,
}

impl Default for ListQuery {
    fn default() -> ListQuery {
        ListQuery { status: StatusFilter::Active, area: None, limit: 50, offset: 0, patient: None }
    }
}

/// The follow-up queue's operations (`store.followups()`). Items are opened and joined by the
/// writers of alerts, in their transactions.
pub trait Followups {
    /// A page of items, most urgent first, then longest waiting ([`ListQuery`]).
    fn list<'a>(&'a self, q: &'a ListQuery) -> Fut<'a, Vec<Followup>>;
    fn get(&self, followup_id: i64) -> Fut<'_, Option<Followup>>;
    /// The patient's item not yet closed, if any.
    fn open_for<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Option<Followup>>;
    /// Claims, releases or closes an item, compare-and-set on its version ([`decide`]).
    fn act<'a>(&'a self, followup_id: i64, act: &'a Act) -> Fut<'a, Acted>;
    /// Writes an alert for a patient outside a call, opening or joining the patient's item in
    /// the same transaction.
    fn raise<'a>(&'a self, patient_id: &'a str, alert: &'a NewAlert, at: DateTime<Utc>) -> Fut<'a, ()>;
    /// Urgent items still open (not claimed, not closed), oldest first, each with its reasons
    /// and the last notice sent for it.
    fn urgent_open(&self, limit: i64) -> Fut<'_, Vec<(Followup, Option<Notice>)>>;
    /// Records a notice of an urgent item and writes its messages to the outbox, in one
    /// transaction, once: false (nothing written) when the item is no longer open and urgent,
    /// or this step of it was already recorded (by another instance).
    fn notify_urgent<'a>(&'a self, notice: &'a Notice, messages: &'a [NoticeMessage]) -> Fut<'a, bool>;
    /// Every notice sent for an item, first first.
    fn notices(&self, followup_id: i64) -> Fut<'_, Vec<Notice>>;
    /// Retention of urgent notices, in one transaction: deletes the notices sent before
    /// `before` of items now closed (an item still open keeps its notices, so it is never told
    /// again from the first step), and the notices' outbox messages (no patient, no number)
    /// created before `before` that are no longer in hand. With `dry_run`, counts and changes
    /// nothing.
    fn purge_notices(&self, before: DateTime<Utc>, dry_run: bool) -> Fut<'_, NoticesPurged>;
}

/// What the retention of urgent notices removed (or would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticesPurged {
    pub notices: u64,
    pub messages: u64,
}

/// A notice of an urgent item to one on-duty contact list: step 0 the first, each later one an
/// escalation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub followup_id: i64,
    pub step: i64,
    /// The list's place in `[[alerts.on_duty]]`, from 0.
    pub list_index: i64,
    pub list_name: String,
    pub sent_at: DateTime<Utc>,
}

/// One message of a notice, for the outbox: no patient and no processing number are attached
/// (it goes to staff), its text sealed like every body in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeMessage {
    pub channel: crate::types::Channel,
    pub recipient: String,
    pub body_sealed: String,
    /// When the outbox may send it.
    pub due: DateTime<Utc>,
}

/// Turns a stored change name and row into an item (shared by the back ends).
#[allow(clippy::too_many_arguments)]
pub(crate) fn item(
    followup_id: i64,
    patient_id: PatientId,
    status: FollowupStatus,
    urgency: i64,
    opened_at: DateTime<Utc>,
    claimed: (Option<String>, Option<DateTime<Utc>>),
    closed: (Option<String>, Option<DateTime<Utc>>, Option<FollowupOutcome>, Option<String>),
    version: i64,
    last: Change,
    patient_name: String,
) -> Followup {
    Followup {
        followup_id,
        patient_id,
        status,
        severity: Severity::of_rank(urgency),
        opened_at,
        claimed_by: claimed.0,
        claimed_at: claimed.1,
        closed_by: closed.0,
        closed_at: closed.1,
        outcome: closed.2,
        note: closed.3,
        version,
        last,
        reasons: vec![],
        patient_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(m: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-12-07T09:{m:02}:00Z")).unwrap().with_timezone(&Utc)
    }

    fn open_item() -> Followup {
        item(
            1,
            PatientId::parse("P001").unwrap(),
            FollowupStatus::Open,
            Severity::Urgent.rank(),
            at(0),
            (None, None),
            (None, None, None, None),
            1,
            Change { what: ChangeKind::Opened, by: ENGINE.into(), at: at(0) },
            "Sato Hanako".into(),
        )
    }

    fn act(action: Action, by: &str, version: Option<i64>, m: u32) -> Act {
        Act { action, by: by.into(), version, at: at(m) }
    }

    fn close() -> Action {
        Action::Close { outcome: FollowupOutcome::ReachedByPhone, note: "spoke with her".into() }
    }

    #[test]
    fn a_claim_names_who_and_when_and_a_second_claim_by_the_same_person_changes_nothing() {
        let claimed = decide(&open_item(), &act(Action::Claim, "sato", Some(1), 5)).unwrap().unwrap();
        assert_eq!(claimed.status, FollowupStatus::Claimed);
        assert_eq!((claimed.claimed_by.as_deref(), claimed.claimed_at), (Some("sato"), Some(at(5))));
        assert_eq!(claimed.version, 2);
        assert_eq!(decide(&claimed, &act(Action::Claim, "sato", None, 6)), Ok(None));
    }

    #[test]
    fn a_claim_by_someone_else_is_refused_with_who_holds_it_since_when() {
        let claimed = decide(&open_item(), &act(Action::Claim, "sato", None, 5)).unwrap().unwrap();
        for action in [Action::Claim, Action::Release, close()] {
            let r = decide(&claimed, &act(action, "suzuki", None, 7)).unwrap_err();
            assert_eq!(r.message, "this item is claimed by sato since 2026-12-07T09:05:00Z");
            assert_eq!((r.last.what, r.last.by.as_str()), (ChangeKind::Claimed, "sato"));
        }
    }

    #[test]
    fn a_closed_item_refuses_every_action_naming_who_closed_it() {
        let closed = decide(&open_item(), &act(close(), "sato", Some(1), 8)).unwrap().unwrap();
        assert_eq!(closed.status, FollowupStatus::Closed);
        assert_eq!(closed.outcome, Some(FollowupOutcome::ReachedByPhone));
        for action in [Action::Claim, Action::Release, close()] {
            let r = decide(&closed, &act(action, "sato", None, 9)).unwrap_err();
            assert_eq!(r.message, "this item was closed by sato at 2026-12-07T09:08:00Z");
        }
    }

    #[test]
    fn an_action_on_a_version_not_the_items_is_refused_with_its_last_change() {
        let mut joined = open_item();
        joined.version = 2;
        joined.last = Change { what: ChangeKind::Joined, by: ENGINE.into(), at: at(3) };
        let r = decide(&joined, &act(close(), "sato", Some(1), 4)).unwrap_err();
        assert_eq!(r.message, "this item changed since version 1: joined by ivr at 2026-12-07T09:03:00Z");
        assert!(decide(&joined, &act(close(), "sato", Some(2), 4)).is_ok());
    }

    #[test]
    fn release_gives_the_item_back_to_the_queue_and_needs_a_claim() {
        let r = decide(&open_item(), &act(Action::Release, "sato", None, 2)).unwrap_err();
        assert_eq!(r.message, "this item is not claimed");
        let claimed = decide(&open_item(), &act(Action::Claim, "sato", None, 2)).unwrap().unwrap();
        let released = decide(&claimed, &act(Action::Release, "sato", None, 3)).unwrap().unwrap();
        assert_eq!((released.status, released.claimed_by), (FollowupStatus::Open, None));
        assert_eq!(released.last.what, ChangeKind::Released);
    }

    #[test]
    fn the_engines_alerts_open_items_except_those_nobody_must_act_on() {
        assert_eq!(opening(AlertKind::Unreachable), Some(Severity::High));
        assert_eq!(opening(AlertKind::MessageDead), Some(Severity::Normal));
        assert_eq!(opening(AlertKind::MessageReissued), None);
        let a = NewAlert::engine(&Alert::new(AlertKind::Unreachable, "3 attempt(s)"));
        assert_eq!((a.text.as_str(), a.reason.as_str()), ("unreachable: 3 attempt(s)", "3 attempt(s)"));
        assert_eq!(a.clone().told_only().opens, None);
        assert_eq!(NewAlert::flow("spo2_low", Severity::Urgent).opens, Some(Severity::Urgent));
    }

    #[test]
    fn the_status_filter_reads_its_names() {
        assert_eq!(StatusFilter::parse("active"), Some(StatusFilter::Active));
        assert_eq!(StatusFilter::parse("closed"), Some(StatusFilter::Only(FollowupStatus::Closed)));
        assert_eq!(StatusFilter::parse("done"), None);
        assert_eq!(StatusFilter::Active.statuses(), ["open", "claimed"]);
    }
}
