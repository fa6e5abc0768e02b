//! A roster and a call history whose figures are known beforehand (the ministry's figures,
//! `/ui/figures`, `GET /api/v1/figures`), for 2026-12-01 (a Tuesday) to 2026-12-07 in
//! Asia/Tokyo, where a day starts at 15:00 UTC the day before.
//!
//! | patient | area | care from | history |
//! | --- | --- | --- | --- |
//! | N1 | north | 12-01 | 12-01 app yes, consent yes; number by the call, verified |
//! | N2 | north | 12-01 | 12-01 00:00 app no; 12-02 app no again (asked: once in the week) |
//! | N3 | north | 12-01 | 12-02 app yes, consent no |
//! | N4 | north | 12-01 | 12-01 app yes, consent yes; number by the call, expired; its replacement (12-03) verified |
//! | N5 | north | 11-20 | number by staff 12-04, verified (not a new patient) |
//! | S1 | south | 12-03 | 12-03 23:30 app yes, consent yes; number by the call 23:31, not verified |
//! | S2 | south | 12-03 | number on the web 12-05, verified |
//! | X1 | (none) | 12-08 | number by staff 12-06, not verified; 12-08 00:30 app yes (after the period) |
//!
//! The week, per area: north 4 new, 4 asked, 3 app users, 2 consents, issued 2 in calls and 1 by
//! staff, 3 verified: issuance 75.0 %, registration 100.0 %. south: 2 new, 1 asked, 1 user, 1
//! consent, 1 in a call and 1 on the web, 1 verified: 100.0 % and 50.0 %. No area: 1 by staff,
//! none verified: — and 0.0 %. Total: 6 new, 5 asked, 4 users, 3 consents, 6 issued (3 calls, 2
//! staff, 1 web), 4 verified: 100.0 % and 66.7 %.

use ivr::store::Patient;

use super::patients::{PatientBuilder, patient};

/// The roster: eight patients in two areas and none.
pub fn roster() -> Vec<Patient> {
    let p = |id: &str, n: u32, area: Option<&str>, from: &str| {
        let p = patient(id, &format!("+8190{n:08}")).care(from, "2026-12-31");
        match area {
            Some(a) => p.area(a),
            None => p,
        }
    };
    vec![
        p("N1", 1, Some("north"), "2026-12-01"),
        p("N2", 2, Some("north"), "2026-12-01"),
        p("N3", 3, Some("north"), "2026-12-01"),
        p("N4", 4, Some("north"), "2026-12-01"),
        p("N5", 5, Some("north"), "2026-11-20"),
        p("S1", 6, Some("south"), "2026-12-03"),
        p("S2", 7, Some("south"), "2026-12-03"),
        p("X1", 8, None, "2026-12-08"),
    ]
}

/// A call of `patient` at `at` (UTC) with these answers, as SQL both back ends run.
fn call(sid: &str, patient: &str, at: &str, answers: &[(&str, &str)]) -> String {
    let mut sql = format!(
        "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, created_at)
         values ('{sid}', '{patient}', 'outbound', 'daily-health-check', 'v1', '{{}}', '{at}');\n"
    );
    for (name, value) in answers {
        sql += &format!(
            "insert into answers (call_id, patient_id, name, kind, value_text, created_at)
             select call_id, '{patient}', '{name}', 'text', '{value}', '{at}' from calls where call_sid = '{sid}';\n"
        );
    }
    sql
}

/// A number issued to `patient` at `issued` (UTC) from `origin`, verified at `used` if given.
fn number(
    hash: &str,
    patient: &str,
    origin: &str,
    issued: &str,
    used: Option<&str>,
    reissue_of: Option<&str>,
) -> String {
    let (status, used_at) = match used {
        Some(u) => ("used", format!("'{u}'")),
        None => ("expired", "null".to_string()),
    };
    let reissue = match reissue_of {
        Some(h) => format!("(select number_id from processing_numbers where number_hash = '{h}')"),
        None => "null".into(),
    };
    format!(
        "insert into processing_numbers (patient_id, number_hash, status, issued_at, expires_at, consent_channel,
           delivery, used_at, reissue_of)
         values ('{patient}', '{hash}', '{status}', '{issued}', '{issued}', '{origin}', 'sms', {used_at}, {reissue});\n"
    )
}

/// The call history and numbers of the table above, as SQL both back ends run.
pub fn history_sql() -> String {
    let mut sql = String::new();
    sql += &call("CA-N1", "N1", "2026-12-01T01:00:00.000Z", &[("app_use", "yes"), ("consent", "yes")]);
    sql += &number("h-n1", "N1", "call", "2026-12-01T01:01:00.000Z", Some("2026-12-01T05:00:00.000Z"), None);
    // 00:00 in Tokyo on 12-01: the first instant of the period.
    sql += &call("CA-N2a", "N2", "2026-11-30T15:00:00.000Z", &[("app_use", "no")]);
    sql += &call("CA-N2b", "N2", "2026-12-02T01:00:00.000Z", &[("app_use", "no")]);
    sql += &call("CA-N3", "N3", "2026-12-02T02:00:00.000Z", &[("app_use", "yes"), ("consent", "no")]);
    sql += &call("CA-N4", "N4", "2026-12-01T03:00:00.000Z", &[("app_use", "yes"), ("consent", "yes")]);
    sql += &number("h-n4", "N4", "call", "2026-12-01T03:01:00.000Z", None, None);
    sql += &number("h-n4b", "N4", "call", "2026-12-03T03:00:00.000Z", Some("2026-12-03T04:00:00.000Z"), Some("h-n4"));
    sql += &number("h-n5", "N5", "staff", "2026-12-04T02:00:00.000Z", Some("2026-12-04T03:00:00.000Z"), None);
    // 23:30 in Tokyo on 12-03.
    sql += &call("CA-S1", "S1", "2026-12-03T14:30:00.000Z", &[("app_use", "yes"), ("consent", "yes")]);
    sql += &number("h-s1", "S1", "call", "2026-12-03T14:31:00.000Z", None, None);
    sql += &number("h-s2", "S2", "web", "2026-12-05T02:00:00.000Z", Some("2026-12-05T02:30:00.000Z"), None);
    sql += &number("h-x1", "X1", "staff", "2026-12-06T02:00:00.000Z", None, None);
    // 00:30 in Tokyo on 12-08: after the period.
    sql += &call("CA-X1", "X1", "2026-12-07T15:30:00.000Z", &[("app_use", "yes")]);
    sql
}
