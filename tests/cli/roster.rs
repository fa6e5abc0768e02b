//! The roster: CSV files read with every mistake at its FILE:ROW:COL, and `ivr patients import`
//! through the real binary on a SQLite file.

use std::path::Path;
use std::process::Command;

use ivr::roster::{DEFAULT_SLOTS, parse_roster};

const LANGS: &[&str] = &["en-US", "ja-JP"];
const HEADER: &str = "patient_id,name,phone,birth_date,language,care_start,care_end,call_slot,email,area\n";

fn good() -> String {
    format!(
        "{HEADER}\
         P001,山田 花子,090-1234-5670,1950-04-12,ja-JP,2026-11-01,2027-01-31,morning,,north\n\
         P002,Emily Carter,+818012345671,1962-12-01,en-US,,,afternoon,e.carter@example.jp,south\n\
         P003,佐藤 太郎,03-1234-5678,1941-01-31,,2026-11-01,,,,\n"
    )
}

#[test]
fn a_good_file_becomes_patients_with_phones_in_e164_and_birth_month_and_day() {
    let patients = parse_roster("r.csv", good().as_bytes(), DEFAULT_SLOTS, LANGS).unwrap();
    let ids: Vec<_> = patients.iter().map(|p| p.patient_id.as_str()).collect();
    assert_eq!(ids, ["P001", "P002", "P003"]);
    let phones: Vec<_> = patients.iter().map(|p| p.phone.as_str()).collect();
    assert_eq!(phones, ["+819012345670", "+818012345671", "+81312345678"]);
    assert_eq!(patients[0].birth_md.as_deref(), Some("0412"));
    assert_eq!(patients[1].email.as_deref(), Some("e.carter@example.jp"));
    assert_eq!(patients[2].language, "ja-JP", "the default language");
    assert_eq!(patients[2].call_slot, None, "the first slot");
    let care = (patients[2].care_start.map(|d| d.to_string()), patients[2].care_end);
    assert_eq!(care, (Some("2026-11-01".into()), None));
}

#[test]
fn columns_may_come_in_any_order_with_a_byte_order_mark_and_crlf_lines() {
    let text = "\u{feff}phone , birth_date,name,patient_id\r\n 090-1234-5670 ,1950-04-12,山田 花子,P001\r\n";
    let patients = parse_roster("r.csv", text.as_bytes(), DEFAULT_SLOTS, LANGS).unwrap();
    assert_eq!(patients.len(), 1);
    assert_eq!((patients[0].patient_id.as_str(), patients[0].phone.as_str()), ("P001", "+819012345670"));
}

#[test]
fn every_bad_row_is_reported_at_its_line_and_column_and_nothing_is_returned() {
    let text = format!(
        "{HEADER}\
         P001,山田 花子,090-1234-5670,1950-04-12,ja-JP,2026-11-01,2027-01-31,morning,,north\n\
         P002,鈴木 一郎,0120-12,1950-02-30,ko-KR,,,,,\n\
         P003,佐藤 太郎,03-1234-5678,1941-01-31,,2026-12-01,2026-11-01,evening,taro@,\n\
         \"P004\",\"高橋, 幸子\",090-1234-5674,1960-06-06,,,,,,\n\
         P001,田中 和子,090-1234-5675,1970-07-07,,,,,,\n"
    );
    let e = parse_roster("r.csv", text.as_bytes(), DEFAULT_SLOTS, LANGS).unwrap_err();
    assert_eq!(
        e.to_string(),
        "r.csv:3:3: error: '0120-12' is not a phone number like 090-1234-5678, 03-1234-5678 or +819012345678\n\
         r.csv:3:4: error: '1950-02-30' is not a date written YYYY-MM-DD\n\
         r.csv:3:5: error: unknown language 'ko-KR' (prompts exist for en-US, ja-JP)\n\
         r.csv:4:7: error: care ends (2026-11-01) before it starts (2026-12-01)\n\
         r.csv:4:8: error: unknown call slot 'evening' (the slots are morning, afternoon)\n\
         r.csv:4:9: error: 'taro@' is not an e-mail address\n\
         r.csv:6:1: error: patient P001 is already on line 2"
    );
    let phone = &e.errors[0];
    assert_eq!((phone.row, phone.col, phone.column.as_str()), (3, 3, "phone"));
}

#[test]
fn an_unknown_column_and_a_missing_one_are_named() {
    let text = "patient_id,name,telephone,birth_date\nP001,山田 花子,090-1234-5670,1950-04-12\n";
    let e = parse_roster("r.csv", text.as_bytes(), DEFAULT_SLOTS, LANGS).unwrap_err();
    let lines: Vec<_> = e.to_string().lines().map(String::from).collect();
    assert_eq!(lines[0], "r.csv:1:1: error: missing required column 'phone'");
    assert!(lines[1].starts_with("r.csv:1:3: error: unknown column 'telephone' (the columns are "), "{e}");
    assert_eq!(lines.len(), 2);
}

#[test]
fn the_example_roster_is_clean_and_covers_every_simulated_persona() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(root.join("examples/patients.csv")).unwrap();
    let langs = ivr::roster::catalogue_languages(&root.join("prompts")).unwrap();
    let langs: Vec<&str> = langs.iter().map(String::as_str).collect();
    let patients =
        parse_roster("examples/patients.csv", &bytes, DEFAULT_SLOTS, &langs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patients.len(), 50);
    for digit in '0'..='9' {
        let n = patients.iter().filter(|p| p.phone.is_mobile() && p.phone.as_str().ends_with(digit)).count();
        assert!(n >= 3, "{n} mobile(s) end in {digit}");
    }
    assert!(patients.iter().filter(|p| !p.phone.is_mobile()).count() >= 3);
    assert!((3..=4).contains(&patients.iter().filter(|p| p.language == "en-US").count()));
    assert_eq!(patients.iter().filter(|p| p.email.is_some()).count(), 5);
}

// ---- the command line ----

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli { dir: tempfile::tempdir().unwrap() }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `ivr ARGS` on this directory's database: (exit code, stdout, stderr).
    fn ivr(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("IVR_DATABASE__URL", format!("sqlite://{}", self.dir.path().join("ivr.db").display()))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

#[test]
fn ivr_patients_import_loads_the_file_then_updates_it_in_place() {
    let cli = Cli::new();
    let file = cli.write("roster.csv", &good());
    let (code, stdout, stderr) = cli.ivr(&["patients", "import", &file]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "imported 3 patients (3 new, 0 updated, 0 unchanged)\n");

    let changed =
        good().replace("1950-04-12,ja-JP", "1950-04-12,en-US") + "P004,高橋 幸子,090-1234-5674,1960-06-06,,,,,,\n";
    let file = cli.write("roster.csv", &changed);
    let (_, stdout, _) = cli.ivr(&["patients", "import", &file, "--dry-run"]);
    assert_eq!(stdout, "would import 4 patients (1 new, 1 updated, 2 unchanged); nothing was changed (--dry-run)\n");
    let (code, stdout, stderr) = cli.ivr(&["patients", "import", &file]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "imported 4 patients (1 new, 1 updated, 2 unchanged)\n");
    let (_, stdout, _) = cli.ivr(&["patients", "import", &file]);
    assert_eq!(stdout, "imported 4 patients (0 new, 0 updated, 4 unchanged)\n");
}

#[test]
fn ivr_patients_import_prints_every_error_and_imports_nothing() {
    let cli = Cli::new();
    let text = format!(
        "{HEADER}\
         P001,山田 花子,090-1234-5670,1950-04-12,,,,,,\n\
         P002,鈴木 一郎,12345,1950-01-01,,,,,,\n\
         P003,,090-1234-5673,1950-01-01,,,,night,,\n"
    );
    let file = cli.write("bad.csv", &text);
    let (code, stdout, stderr) = cli.ivr(&["patients", "import", &file]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{file}:3:3: error: '12345' is not a phone number like 090-1234-5678, 03-1234-5678 or +819012345678"
            ),
            format!("{file}:4:2: error: required, but empty"),
            format!("{file}:4:8: error: unknown call slot 'night' (the slots are morning, afternoon)"),
            format!("error: 3 error(s) in {file}; nothing was imported"),
        ]
    );
    // The good row was not imported either: a later good file counts it as new.
    let good = cli.write("good.csv", &format!("{HEADER}P001,山田 花子,090-1234-5670,1950-04-12,,,,,,\n"));
    let (_, stdout, _) = cli.ivr(&["patients", "import", &good]);
    assert_eq!(stdout, "imported 1 patients (1 new, 0 updated, 0 unchanged)\n");
}

#[test]
fn ivr_patients_import_takes_the_example_roster() {
    let cli = Cli::new();
    let (code, stdout, stderr) = cli.ivr(&["patients", "import", "examples/patients.csv"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "imported 50 patients (50 new, 0 updated, 0 unchanged)\n");
}

#[test]
fn a_dry_run_writes_nothing_not_even_a_new_database() {
    let cli = Cli::new();
    let file = cli.write("roster.csv", &good());
    let (code, stdout, stderr) = cli.ivr(&["patients", "import", &file, "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "would import 3 patients (3 new, 0 updated, 0 unchanged); nothing was changed (--dry-run)\n");
    let db = cli.dir.path().join("ivr.db");
    assert!(!db.exists(), "the dry run created {}", db.display());
}

#[test]
fn ivr_patients_purge_empties_what_is_kept_of_care_that_ended_long_ago_once_and_dry_runs_first() {
    let cli = Cli::new();
    let text = format!(
        "{HEADER}\
         P001,山田 花子,090-1234-5670,1950-04-12,,2020-01-01,2020-01-31,,,\n\
         P002,鈴木 一郎,090-1234-5672,1950-01-01,,2026-11-01,,,,\n"
    );
    let file = cli.write("roster.csv", &text);
    assert_eq!(cli.ivr(&["patients", "import", &file]).0, 0);
    for p in ["P001", "P002"] {
        let (code, _, stderr) = cli.ivr(&["numbers", "issue", "--patient", p, "--send", "sms"]);
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, stdout, stderr) = cli.ivr(&["patients", "purge", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("would empty 1 patient(s) whose care ended before "), "{stdout}");
    assert!(lines[0].ends_with(": 0 call(s), 0 answer(s), 0 message(s), 1 number(s)"), "{stdout}");
    assert!(lines[1].starts_with("would delete 0 staff audit row(s) from before "), "{stdout}");
    assert!(
        lines[2].starts_with("would delete 0 urgent notice(s) of closed items and 0 notice message(s)"),
        "{stdout}"
    );
    assert_eq!(lines[3], "nothing was changed (--dry-run)");
    let (_, stdout, _) = cli.ivr(&["patients", "purge"]);
    assert!(stdout.starts_with("emptied 1 patient(s)") && stdout.lines().next().unwrap().ends_with("1 number(s)"));
    assert!(stdout.contains("\ndeleted 0 staff audit row(s) from before "), "{stdout}");
    let (_, stdout, _) = cli.ivr(&["patients", "purge"]);
    assert!(stdout.starts_with("emptied 0 patient(s)") && stdout.lines().next().unwrap().ends_with("0 number(s)"));
}
