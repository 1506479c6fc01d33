//! The token file: created private, reused, refused when others can read it.

use std::os::unix::fs::PermissionsExt;

use super::super::{ApiError, TOKEN_FILE, TokenError, load_or_create_token};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn api_token_file_is_created_0600_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = load_or_create_token(&dir).unwrap();
    let path = dir.join(TOKEN_FILE);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), first.reveal());
    assert_eq!(first.reveal().len(), 64);
    assert!(first.reveal().bytes().all(|b| b.is_ascii_hexdigit()));

    let again = load_or_create_token(&dir).unwrap();
    assert_eq!(again.reveal(), first.reveal());
    assert!(again.matches(first.reveal()));
    assert!(!again.matches(&first.reveal()[..63]));

    // A second node directory gets its own token.
    let other = load_or_create_token(&tmp.path().join("other")).unwrap();
    assert_ne!(other.reveal(), first.reveal());
}

#[test]
fn api_token_file_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    load_or_create_token(tmp.path()).unwrap();
    let path = tmp.path().join(TOKEN_FILE);
    for bits in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
        let err = load_or_create_token(tmp.path()).unwrap_err();
        assert!(
            matches!(err, ApiError::Token(TokenError::Permissions { mode, .. }) if mode == bits),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(
        load_or_create_token(tmp.path()).is_ok(),
        "read-only for the owner is fine"
    );
}

#[test]
fn api_token_file_that_is_not_a_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(TOKEN_FILE);
    for text in ["", "not hex", &"ab".repeat(31), &"zz".repeat(32)] {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_token(tmp.path()).unwrap_err();
        assert!(
            matches!(err, ApiError::Token(TokenError::Malformed { .. })),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains("delete it"), "{err}");
    }
    // Surrounding whitespace (an editor's newline) is fine.
    std::fs::write(&path, format!("  {}\n\n", "AB".repeat(32))).unwrap();
    let t = load_or_create_token(tmp.path()).unwrap();
    assert_eq!(t.reveal(), "ab".repeat(32));
}
