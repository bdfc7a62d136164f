//! Values parsed once at the edge: past a controller they are known-valid.

use std::fmt;
use std::net::IpAddr;

/// Why a field was refused; the message is shown to clients as `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// 3–64 ASCII letters, digits, `.`, `_`, `-`; stored as given, unique
/// case-insensitively through [`Username::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !(3..=64).contains(&raw.len()) || !valid_chars {
            return Err(FieldError::new(
                "username",
                "must be 3 to 64 characters of ASCII letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(Username(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup key that makes usernames unique case-insensitively.
    pub fn key(&self) -> String {
        username_key(&self.0)
    }
}

/// The case-folded form of any username-like input (ASCII only, as usernames are).
pub fn username_key(raw: &str) -> String {
    raw.to_ascii_lowercase()
}

/// 8–128 characters, checked exactly as sent: no trimming, no composition
/// rules (NIST SP 800-63B). Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        if !(8..=128).contains(&raw.chars().count()) {
            return Err(FieldError::new(
                "password",
                "must be 8 to 128 characters long",
            ));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Free text shown to people: 1–`max` characters, not blank, no control characters.
fn parse_label(raw: &str, field: &'static str, max: usize) -> Result<String, FieldError> {
    if raw.trim().is_empty() {
        return Err(FieldError::new(field, "must not be blank"));
    }
    if raw.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A user's display name: 1–128 characters; defaults to the username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_label(raw, "displayName", 128).map(DisplayName)
    }

    pub fn from_username(username: &Username) -> Self {
        DisplayName(username.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A passkey's nickname: 1–64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    pub const DEFAULT: &'static str = "Passkey";

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_label(raw, "nickname", 64).map(Nickname)
    }

    pub fn default_name() -> Self {
        Nickname(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who is asking, as far as the network tells: the client IP (from the
/// socket, or from `X-Forwarded-For` when the peer is a trusted proxy) and
/// the user agent (at most [`ClientInfo::MAX_USER_AGENT`] characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub const MAX_USER_AGENT: usize = 256;
}

/// How strongly the bearer of a token has authenticated: the token
/// format's own type, shared with the guard crate.
pub use passkey_auth_guard::AuthLevel;

/// How the bearer proved who they are: decides the level a token earns and
/// its RFC 8176 `amr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A password login.
    Password,
    /// A passkey verified on top of a password login.
    PasskeyStepUp,
    /// A recovery code used on top of a password login.
    RecoveryCode,
    /// A user-verified passkey alone (a sign-in without a password).
    PasskeySignIn,
}

impl AuthMethod {
    pub fn level(self) -> AuthLevel {
        match self {
            AuthMethod::Password => AuthLevel::Password,
            AuthMethod::PasskeyStepUp | AuthMethod::RecoveryCode | AuthMethod::PasskeySignIn => {
                AuthLevel::Full
            }
        }
    }

    /// RFC 8176 authentication method references.
    pub fn amr(self) -> Vec<String> {
        let methods: &[&str] = match self {
            AuthMethod::Password => &["pwd"],
            AuthMethod::PasskeyStepUp => &["pwd", "hwk"],
            AuthMethod::RecoveryCode => &["pwd", "otp"],
            AuthMethod::PasskeySignIn => &["hwk"],
        };
        methods.iter().map(|m| (*m).to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for ok in ["abc", "Alice.B_c-9", &"a".repeat(64)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(65),
            "al ice",
            "alice@x",
            "ålice",
            "a'; DROP TABLE users;--",
            "abc\0",
            "",
        ] {
            let err = Username::parse(bad).unwrap_err();
            assert_eq!(err.field, "username", "{bad}");
        }
    }

    #[test]
    fn username_key_folds_case_only() {
        let u = Username::parse("Alice.Smith").unwrap();
        assert_eq!(u.as_str(), "Alice.Smith");
        assert_eq!(u.key(), "alice.smith");
    }

    #[test]
    fn password_length_counts_characters_and_keeps_spaces() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("éééééééé".into()).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        let p = Password::parse("  spaced  ".into()).unwrap();
        assert_eq!(p.expose(), "  spaced  ");
        assert_eq!(format!("{p:?}"), "Password([redacted])");
    }

    #[test]
    fn labels_reject_blank_long_and_control_text() {
        assert!(Nickname::parse("YubiKey 5C").is_ok());
        assert!(Nickname::parse("   ").is_err());
        assert!(Nickname::parse(&"n".repeat(65)).is_err());
        assert!(Nickname::parse("bad\u{7}").is_err());
        assert!(DisplayName::parse(&"d".repeat(128)).is_ok());
        assert!(DisplayName::parse(&"d".repeat(129)).is_err());
        assert_eq!(DisplayName::parse("").unwrap_err().field, "displayName");
    }

    #[test]
    fn auth_methods_carry_their_level_and_amr() {
        assert_eq!(AuthMethod::Password.amr(), vec!["pwd"]);
        assert_eq!(AuthMethod::Password.level(), AuthLevel::Password);
        assert_eq!(AuthMethod::PasskeyStepUp.amr(), vec!["pwd", "hwk"]);
        assert_eq!(AuthMethod::PasskeyStepUp.level(), AuthLevel::Full);
        assert_eq!(AuthMethod::RecoveryCode.amr(), vec!["pwd", "otp"]);
        assert_eq!(AuthMethod::RecoveryCode.level(), AuthLevel::Full);
        assert_eq!(serde_json::to_string(&AuthLevel::Full).unwrap(), "\"full\"");
    }
}
