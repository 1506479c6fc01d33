//! `gpuflow wallet`: keystores created and imported (private key, mnemonic), decrypted again,
//! a wrong password refused, balances read exactly, and the files readable by `cast wallet`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use alloy::primitives::U256;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::{CliOutput, gpuflow_in as cli, units};
use gpuflow_tests::rental::mint;

/// Anvil's mnemonic; index 1 is 0x70997970C51812dc3A010C7d01b50e0d17dc79C8.
const MNEMONIC: &str = "test test test test test test test test test test test junk";
const KEY2: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const ADDR2: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn cast() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/bin/cast");
    // A missing cast is a failure, not a skip: interoperability is what is tested.
    assert!(
        p.exists(),
        "cast not found at {}; run `make tools`",
        p.display()
    );
    p
}

fn env(pw: &str) -> Vec<(String, String)> {
    vec![("GPUFLOW_WALLET_PASSWORD".into(), pw.into())]
}

/// `gpuflow wallet import k` of the key in `key_file`, encrypted with the password in `pw_file`.
async fn import_key(home: &Path, key_file: &str, pw_file: &str) -> CliOutput {
    let args = [
        "wallet",
        "import",
        "k",
        "--private-key-file",
        key_file,
        "--password-file",
        pw_file,
    ];
    cli(home, &[], &args).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallets_are_created_imported_decrypted_and_read_by_cast() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let ks = home.join("gpuflow/keystores");

    // new: prints the address; the file is 0600 in a 0700 directory and cast reads it.
    let out = cli(home, &env("pw-new"), &["wallet", "new", "fresh"])
        .await
        .unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let fresh = out.stdout.trim().to_owned();
    assert!(fresh.starts_with("0x") && fresh.len() == 42, "{fresh}");
    let file = ks.join("fresh.json");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&ks), 0o700);
    let by_cast = std::process::Command::new(cast())
        .args(["wallet", "address", "--keystore"])
        .arg(&file)
        .args(["--password", "pw-new"])
        .output()
        .unwrap();
    assert!(
        by_cast.status.success(),
        "{}",
        String::from_utf8_lossy(&by_cast.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&by_cast.stdout).trim(), fresh);

    // import a private key from a file; decrypting it again gives the same address.
    let key_file = home.join("key.txt");
    std::fs::write(&key_file, format!("{KEY2}\n")).unwrap();
    let pw_file = home.join("pw.txt");
    std::fs::write(&pw_file, "pw-file\n").unwrap();
    let pf = pw_file.display().to_string();
    let kf = key_file.display().to_string();
    let out = import_key(home, &kf, &pf).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), ADDR2);
    let out = cli(
        home,
        &[],
        &["wallet", "address", "k", "--password-file", &pf],
    )
    .await
    .unwrap();
    assert_eq!(
        (out.code(), out.stdout.trim()),
        (0, ADDR2),
        "{}",
        out.stderr
    );

    // A wrong password is named as such.
    let out = cli(home, &env("nope"), &["wallet", "address", "k"])
        .await
        .unwrap();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("wrong password for wallet k"),
        "{}",
        out.stderr
    );

    // import a mnemonic (from a file), account index 1.
    let m_file = home.join("phrase.txt");
    std::fs::write(&m_file, MNEMONIC).unwrap();
    let mf = m_file.display().to_string();
    let out = cli(
        home,
        &env("pw-m"),
        &[
            "wallet",
            "import",
            "hd",
            "--mnemonic-file",
            &mf,
            "--index",
            "1",
        ],
    )
    .await
    .unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    );

    // list needs no password and shows all three.
    let out = cli(home, &[], &["wallet", "list", "--json"]).await.unwrap();
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fresh", "hd", "k"]);
    assert_eq!(list[2]["address"], ADDR2);

    // A duplicate name is refused; nothing is overwritten.
    let out = cli(home, &env("x"), &["wallet", "new", "k"]).await.unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);

    // Keys never reach the output of any of these commands, nor the keystore in clear.
    assert!(
        !std::fs::read_to_string(ks.join("k.json"))
            .unwrap()
            .contains(&KEY2[2..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_shows_stablecoin_and_gas_exactly() {
    let chain = TestChain::start().await.unwrap();
    mint(&chain, RENTER, U256::from(1_234_567u64)).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let pw_file = home.join("pw.txt");
    std::fs::write(&pw_file, "pw\n").unwrap();
    let key_file = home.join("key.txt");
    std::fs::write(&key_file, KEY2).unwrap();
    let (pf, kf) = (
        pw_file.display().to_string(),
        key_file.display().to_string(),
    );
    let out = import_key(home, &kf, &pf).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let rpc = chain.anvil.endpoint();
    let token = chain.token.to_string();
    let args = [
        "wallet",
        "balance",
        "--wallet",
        "k",
        "--password-file",
        &pf,
        "--rpc-url",
        &rpc,
        "--token",
        &token,
        "--json",
    ];
    let out = cli(home, &[], &args).await.unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["address"], ADDR2);
    assert_eq!(units(&v["stablecoin"]), U256::from(1_234_567u64));
    assert_eq!(v["stablecoin"]["formatted"], "1.234567");
    assert_eq!(
        units(&v["gas"]),
        U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18u64)),
        "{v}"
    );
    // GPUFLOW_PRIVATE_KEY works in place of a keystore, and the key never shows.
    let env = vec![("GPUFLOW_PRIVATE_KEY".to_owned(), KEY2.to_owned())];
    let out = cli(
        home,
        &env,
        &["wallet", "balance", "--rpc-url", &rpc, "--token", &token],
    )
    .await
    .unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.contains("1.234567"), "{}", out.stdout);
    assert!(!out.stdout.contains(&KEY2[2..]) && !out.stderr.contains(&KEY2[2..]));
}
