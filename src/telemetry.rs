//! Logs: `tracing` to stderr (`RUST_LOG` sets the level), and how personal data is masked
//! before it reaches a log line.

use tracing_subscriber::EnvFilter;

/// Installs the log subscriber once; later calls do nothing (tests start many servers).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("IVR_LOG_FORMAT").is_ok_and(|f| f == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour(&std::io::stderr()));
    let _ = if json { b.json().try_init() } else { b.try_init() };
}

/// Whether colour escape codes may be written to `stream`: only to a terminal, and never with
/// `NO_COLOR` set (to anything but the empty string) or `TERM=dumb`.
pub fn colour(stream: &impl std::io::IsTerminal) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    stream.is_terminal() && !no_color && !dumb
}

/// `+819012345678` → `+8190****5678`: enough to tell numbers apart, not enough to call one.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 9))
}

/// Keys typed at a question, for logs and the call's event table: a single key (a menu choice)
/// as it is, longer input (a birthday, a temperature) as one `*` per key.
pub fn mask_digits(digits: &str) -> String {
    if digits.chars().count() <= 1 { digits.to_string() } else { "*".repeat(digits.chars().count()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_keep_only_their_ends() {
        assert_eq!(mask_phone("+819012345678"), "+8190****5678");
        assert_eq!(mask_phone("+81312345678"), "+8131***5678");
        assert_eq!(mask_phone("12345"), "*****");
    }

    #[test]
    fn typed_numbers_are_masked_but_menu_keys_are_not() {
        assert_eq!(mask_digits("0412"), "****");
        assert_eq!(mask_digits("1"), "1");
    }
}
