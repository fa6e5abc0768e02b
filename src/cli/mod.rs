//! The `ivr` command line: argument types (clap) and one module per command.

pub mod call;
pub mod check;
pub mod dial;
pub mod graph;
pub mod numbers;
pub mod patients;
pub mod users;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An IVR engine for public health centres: daily health-check calls answered on the keypad.
#[derive(Debug, Parser)]
#[command(name = "ivr", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where flows and prompts are read from.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowDirs {
    /// Directory of call-flow files.
    #[arg(long, default_value = "call-flows", env = "IVR_FLOWS__DIR")]
    pub flows: PathBuf,
    /// Directory of prompt catalogues (ja-JP.toml, en-US.toml, …).
    #[arg(long, default_value = "prompts", env = "IVR_FLOWS__PROMPTS_DIR")]
    pub prompts: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Issue a number for a patient who consented (prints it for the staff member).
    Issue {
        #[arg(long)]
        patient: String,
        /// How the patient gets it.
        #[arg(long, value_enum, default_value = "sms")]
        send: crate::issuer::numbers::SendBy,
        /// Who issues it (recorded as the consent): 1 to 100 characters, not only spaces.
        #[arg(long, env = "USER", default_value = "staff")]
        staff: crate::types::StaffName,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a number: valid, used, expired, revoked or unknown.
    Verify {
        number: String,
        /// Use the number up, as the app's server does.
        #[arg(long)]
        consume: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PatientsCommand {
    /// Load or update the roster from a CSV file (upsert by patient_id). The whole file is
    /// checked first: one bad row and nothing is imported.
    Import {
        /// The roster (see docs/roster.md for its columns).
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Check the file and count what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Retention now, as the server does daily (docs/personal-data.md): empty the calls of
    /// patients whose care ended more than `retention.calls_after_care_days` ago of their
    /// personal data; delete staff audit rows older than `retention.staff_audit_days` and the
    /// urgent notices of closed items older than `retention.urgent_notices_days`.
    Purge {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Count what would be emptied, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token with its scopes; it is printed once and stored only as a hash.
    Add {
        /// A name of its own (names are never reused, even once revoked).
        name: String,
        /// What it may do: verify (the contact app's server), issue, import, read, followup, or
        /// staff (issue, import, read and followup). Repeat it or separate with commas; at least one.
        #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',',
              value_parser = clap::builder::PossibleValuesParser::new(["verify", "issue", "import", "read", "followup", "staff"]))]
        scopes: Vec<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the tokens: name, scopes, created, last used, revoked (never the token).
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke a token: from now on it is refused like an unknown one.
    Revoke {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `admin`, `nurse` or `viewer`, listed in `--help`.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = crate::types::Role> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["admin", "nurse", "viewer"])
        .map(|s| crate::types::Role::parse(&s).expect("one of the possible values"))
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a staff account for the pages under /ui/; its password is read from the terminal
    /// twice (or from standard input).
    Add {
        name: String,
        #[arg(long, value_parser = role_parser())]
        role: crate::types::Role,
        /// The pages' language (each user can switch it later).
        #[arg(long, default_value = "ja", value_parser = ["ja", "en"])]
        language: String,
        /// Read the password from standard input (one line), as when it is not a terminal.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Set a new password (read as for `add`); the user's sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Disable an account; its sessions end at once.
    Disable {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the accounts: name, role, language, active or disabled.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the carrier's webhooks, the JSON API and the outbox dispatcher.
    Serve {
        /// Settings file (default: ivr.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A demonstration: a fresh SQLite file (ivr-demo.db), the carrier simulator, the
        /// patients of examples/patients.csv, and a campaign that starts at once, with live
        /// progress in the terminal.
        #[arg(long)]
        demo: bool,
    },
    /// Plan today's campaign now (the server also does it daily by itself, at scheduler.plan_at);
    /// a running `ivr serve` dials the planned calls.
    Dial {
        /// The flow the calls run (default: flows.inbound).
        #[arg(long)]
        flow: Option<String>,
        /// Call everyone as soon as calling hours allow, not in their slots (for the check-in
        /// under way).
        #[arg(long)]
        now: bool,
        /// Also print, per patient and check-in, whether and why they are called.
        #[arg(long)]
        patients: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply database migrations.
    Migrate {
        /// Database URL (default: database.url from the settings).
        #[arg(long)]
        db: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate call-flow files, prompts and settings; prints file:line:col: error: …, exits 1 on errors.
    Check {
        /// Files or directories (default: call-flows/ and prompts/).
        paths: Vec<PathBuf>,
        /// The settings to check (default: ivr.toml if present, and IVR_ variables).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Walk a flow as a phone would: type keys, or give them with --digits.
    Call(call::Args),
    /// Processing numbers: the health centre's manual path.
    #[command(subcommand)]
    Numbers(NumbersCommand),
    /// The patient roster.
    #[command(subcommand)]
    Patients(PatientsCommand),
    /// API tokens for the contact app's server and staff tools.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Staff accounts for the pages under /ui/.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Print a flow as a Mermaid diagram.
    Graph {
        /// The flow's name (its file name without .toml).
        flow: String,
        #[command(flatten)]
        dirs: FlowDirs,
    },
}
