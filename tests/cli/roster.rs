//! `ivr patients import` through the real binary on a SQLite file (reading a file, with every
//! mistake at its FILE:ROW:COL, is tested in `src/roster.rs`).

use std::process::Command;

const HEADER: &str = "patient_id,name,phone,birth_date,language,care_start,care_end,call_slot,email,area\n";

fn good() -> String {
    format!(
        "{HEADER}\
         P001,山田 花子,090-1234-5670,1950-04-12,ja-JP,2026-11-01,2027-01-31,morning,,north\n\
         P002,Emily Carter,+818012345671,1962-12-01,en-US,,,afternoon,e.carter@example.jp,south\n\
         P003,佐藤 太郎,03-1234-5678,1941-01-31,,2026-11-01,,,,\n"
    )
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
