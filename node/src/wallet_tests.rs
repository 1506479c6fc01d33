use std::process::Command;

use super::*;

/// The pinned Foundry `cast`, if `make tools` has installed it.
fn cast() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/bin/cast");
    p.exists().then_some(p)
}

#[test]
fn keystore_round_trip_and_the_key_never_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = Password::new("correct horse");
    let (wallet, path) = HostWallet::create_keystore(tmp.path(), "host.json", &pw).unwrap();
    assert_eq!(path, tmp.path().join("host.json"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Only the keystore is left in the directory (the scratch directory is gone).
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    let opened = HostWallet::decrypt_keystore(&path, &pw).unwrap();
    assert_eq!(opened.address(), wallet.address());
    assert_eq!(opened.signer().to_bytes(), wallet.signer().to_bytes());

    let key_hex = alloy::hex::encode(wallet.signer().to_bytes());
    for shown in [
        format!("{wallet:?}"),
        format!("{wallet}"),
        format!("{pw:?}"),
    ] {
        assert!(!shown.contains(&key_hex), "{shown}");
        assert!(!shown.contains("correct horse"), "{shown}");
    }
    assert_eq!(format!("{wallet}"), wallet.address().to_string());

    // A keystore is never overwritten.
    assert!(matches!(
        HostWallet::create_keystore(tmp.path(), "host.json", &pw),
        Err(WalletError::Write { .. })
    ));
}

#[test]
fn wrong_password_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, path) =
        HostWallet::create_keystore(tmp.path(), "k.json", &Password::new("right")).unwrap();
    let err = HostWallet::decrypt_keystore(&path, &Password::new("wrong")).unwrap_err();
    assert!(matches!(err, WalletError::WrongPassword { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("wrong password for keystore"), "{msg}");
    assert!(msg.contains("k.json"), "{msg}");

    // Not a keystore at all.
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let err = HostWallet::decrypt_keystore(&junk, &Password::new("x")).unwrap_err();
    assert!(matches!(err, WalletError::Keystore { .. }), "{err:?}");
    assert!(err.to_string().contains("v3"));
}

#[test]
fn cast_reads_our_keystore_and_we_read_casts() {
    // Like the anvil-based tests, this needs the pinned Foundry tools: a missing binary is a
    // failure, not a skip, so the interop check can never pass unnoticed without running.
    let cast = cast().expect("contracts/bin/cast missing: run `make tools` (make test does)");
    let tmp = tempfile::tempdir().unwrap();
    let pw = Password::new("p4ss word");
    let (wallet, path) = HostWallet::create_keystore(tmp.path(), "ours.json", &pw).unwrap();
    let out = Command::new(&cast)
        .args(["wallet", "address", "--keystore"])
        .arg(&path)
        .args(["--password", "p4ss word"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        shown.trim().parse::<Address>().unwrap(),
        wallet.address(),
        "{shown}"
    );

    // And the other way: a keystore written by `cast wallet import`.
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let out = Command::new(&cast)
        .args(["wallet", "import", "theirs", "--keystore-dir"])
        .arg(tmp.path())
        .args(["--private-key", key, "--unsafe-password", "p4ss word"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = HostWallet::decrypt_keystore(&tmp.path().join("theirs"), &pw).unwrap();
    assert_eq!(
        theirs.address(),
        key.parse::<PrivateKeySigner>().unwrap().address()
    );
}

#[test]
fn password_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pw");
    write_password_file(&file, &Password::new("secret\n")).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // One trailing newline is not part of the password (editors add one).
    let pw = PasswordSource::File(file.clone()).read().unwrap();
    assert_eq!(pw.bytes(), b"secret");
    assert!(write_password_file(&file, &pw).is_err(), "overwrote a file");

    let err = PasswordSource::File(tmp.path().join("none"))
        .read()
        .unwrap_err();
    assert!(matches!(err, WalletError::PasswordFile { .. }));
    let err = PasswordSource::Env("GPUFLOW_TEST_UNSET_PASSWORD_VAR".into())
        .read()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("GPUFLOW_TEST_UNSET_PASSWORD_VAR is not set"),
        "{err}"
    );
}

#[test]
fn keystore_source_loads_through_load() {
    let tmp = tempfile::tempdir().unwrap();
    let pw_file = tmp.path().join("pw");
    write_password_file(&pw_file, &Password::new("pw")).unwrap();
    let (wallet, path) =
        HostWallet::create_keystore(tmp.path(), "k.json", &Password::new("pw")).unwrap();
    let loaded = HostWallet::load(&WalletSource::Keystore {
        path,
        password: PasswordSource::File(pw_file),
    })
    .unwrap();
    assert_eq!(loaded.address(), wallet.address());
}

#[test]
fn env_key_parsing_never_echoes_the_value() {
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let w = parse_key(&format!(" {key}\n")).unwrap();
    assert_eq!(
        w.address(),
        key.parse::<PrivateKeySigner>().unwrap().address()
    );
    let err = parse_key("0x59c6995e998f97a5nothex").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(PRIVATE_KEY_ENV) && !msg.contains("nothex"),
        "{msg}"
    );
}
