use std::collections::HashMap;
use std::path::Path;

use clap::Parser;

use super::*;
use crate::runtime::RuntimeKind;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ConfigArgs,
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

const FILE: &str = r#"
data_dir = "/from/file"
listen = ["/ip4/127.0.0.1/tcp/1"]
[chain]
chain_id = 1
escrow = "0x00000000000000000000000000000000000000ee"
token = "0x0000000000000000000000000000000000000070"
[machine]
region = "DE"
cpu_cores = 8
ram_mib = 1024
disk_gib = 10
[pricing]
RTX_4090 = "0.40"
H100 = 2500000
"#;

fn load(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, file).unwrap();
    let mut argv = vec!["node", "--config", path.to_str().unwrap()];
    argv.extend_from_slice(flags);
    let cli = Cli::try_parse_from(argv).unwrap();
    let env = env_of(env);
    let layer = cli.args.load(&env)?;
    Config::resolve(layer, &env)
}

#[test]
fn flags_beat_env_which_beats_file_which_beats_defaults() {
    let c = load(FILE, &[], &[]).unwrap();
    assert_eq!(c.data_dir, Path::new("/from/file"));
    assert_eq!(c.machine.cpu_cores, 8);
    assert_eq!(c.machine.region, "DE");
    assert_eq!(c.offers.ttl_secs, DEFAULT_OFFER_TTL_SECS, "default");
    // Ten minutes unless configured: quotes carry it, so the escrow refuses dust deposits.
    assert_eq!(c.offers.min_duration_secs, 600, "default");

    let env = [
        ("GPUFLOW_DATA_DIR", "/from/env"),
        ("GPUFLOW_CPU_CORES", "4"),
        ("GPUFLOW_REGION", "NL"),
    ];
    let c = load(FILE, &env, &[]).unwrap();
    assert_eq!(c.data_dir, Path::new("/from/env"));
    assert_eq!(c.machine.cpu_cores, 4);
    assert_eq!(c.machine.region, "NL");
    assert_eq!(
        c.machine.disk_gib, 10,
        "file value kept where env is silent"
    );

    let c = load(
        FILE,
        &env,
        &["--data-dir", "/from/flag", "--cpu-cores", "2"],
    )
    .unwrap();
    assert_eq!(c.data_dir, Path::new("/from/flag"));
    assert_eq!(c.machine.cpu_cores, 2);
    assert_eq!(
        c.machine.region, "NL",
        "env value kept where flags are silent"
    );
    assert_eq!(c.identity_key, Path::new("/from/flag/identity.key"));
}

#[test]
fn lists_from_env_and_flags_replace_the_file_list() {
    let env = [(
        "GPUFLOW_LISTEN",
        "/ip4/127.0.0.1/tcp/2, /ip4/127.0.0.1/tcp/3",
    )];
    let c = load(FILE, &env, &[]).unwrap();
    assert_eq!(c.listen.len(), 2);
    let c = load(FILE, &env, &["--listen", "/ip4/127.0.0.1/tcp/4"]).unwrap();
    assert_eq!(c.listen, vec!["/ip4/127.0.0.1/tcp/4".parse().unwrap()]);
}

#[test]
fn prices_convert_exactly_and_floats_are_refused() {
    let c = load(FILE, &[], &[]).unwrap();
    assert_eq!(c.pricing["RTX_4090"], 400_000);
    assert_eq!(c.pricing["H100"], 2_500_000);

    let err = load(&FILE.replace("\"0.40\"", "0.40"), &[], &[]).unwrap_err();
    assert!(
        err.to_string().contains("write prices as a string"),
        "{err}"
    );
    let err = load(&FILE.replace("\"0.40\"", "\"0.0000001\""), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("pricing.RTX_4090"), "{err}");
}

#[test]
fn quote_ttl_layers_and_is_bounded() {
    let c = load(FILE, &[], &[]).unwrap();
    assert_eq!(c.offers.quote_ttl_secs, crate::quote::RESERVATION_SECS);
    let c = load(FILE, &[("GPUFLOW_QUOTE_TTL_SECS", "20")], &[]).unwrap();
    assert_eq!(c.offers.quote_ttl_secs, 20);
    let c = load(
        FILE,
        &[("GPUFLOW_QUOTE_TTL_SECS", "20")],
        &["--quote-ttl-secs", "45"],
    )
    .unwrap();
    assert_eq!(c.offers.quote_ttl_secs, 45);
    let err = load(FILE, &[], &["--quote-ttl-secs", "1"]).unwrap_err();
    assert!(err.to_string().contains("offers.quote_ttl_secs"), "{err}");
}

#[test]
fn bad_values_name_their_source() {
    let err = load(FILE, &[("GPUFLOW_CPU_CORES", "many")], &[]).unwrap_err();
    assert!(err.to_string().contains("GPUFLOW_CPU_CORES"), "{err}");
    let err = load(&FILE.replace("cpu_cores", "cpu_coers"), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("cpu_coers"), "{err}");
    let err = load(&FILE.replace("region = \"DE\"", ""), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("machine.region"), "{err}");
    let err = load(FILE, &[("GPUFLOW_REGION", "Germany")], &[]).unwrap_err();
    assert!(err.to_string().contains("alpha-2"), "{err}");
}

#[test]
fn deployment_file_fills_chain_settings_and_explicit_keys_win() {
    let dir = tempfile::tempdir().unwrap();
    let dep = dir.path().join("devnet.json");
    std::fs::write(
        &dep,
        r#"{"chainId": 31337, "escrow": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "feeBps": 100,
            "deployBlock": 77}"#,
    )
    .unwrap();
    let file = FILE.replace("chain_id = 1\n", "");
    let c = load(&file, &[], &["--deployment", dep.to_str().unwrap()]).unwrap();
    assert_eq!(c.chain.chain_id, 31337);
    assert_eq!(c.chain.token_decimals, 6);
    assert_eq!(
        c.chain.deploy_block, 77,
        "deployBlock from the deployment file"
    );
    let c = load(
        &file,
        &[("GPUFLOW_DEPLOY_BLOCK", "5")],
        &["--deployment", dep.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(c.chain.deploy_block, 5, "an explicit deploy block wins");
    assert_eq!(
        c.chain.escrow,
        "0x00000000000000000000000000000000000000ee"
            .parse::<Address>()
            .unwrap(),
        "the file's explicit escrow wins over the deployment"
    );
    let err = load(&file, &[], &["--deployment", "/no/such.json"]).unwrap_err();
    assert!(err.to_string().contains("/no/such.json"), "{err}");
}

#[test]
fn example_config_parses() {
    let layer = ConfigLayer::from_toml(EXAMPLE, Path::new("example")).unwrap();
    assert_eq!(layer.machine.region.as_deref(), Some("DE"));
    assert!(layer.pricing.unwrap().contains_key("RTX_4090"));
}

#[test]
fn default_paths_follow_xdg() {
    let env = env_of(&[("HOME", "/home/h"), ("XDG_DATA_HOME", "/xdg")]);
    assert_eq!(default_data_dir(&env).unwrap(), Path::new("/xdg/gpuflow"));
    let env = env_of(&[("HOME", "/home/h")]);
    assert_eq!(
        default_data_dir(&env).unwrap(),
        Path::new("/home/h/.local/share/gpuflow")
    );
    assert_eq!(
        default_config_file(&env).unwrap(),
        Path::new("/home/h/.config/gpuflow/node.toml")
    );
}

#[test]
fn api_runtime_earnings_and_keystore_keys_layer_like_the_rest() {
    let c = load(FILE, &[], &[]).unwrap();
    assert_eq!(c.api, ApiListen::default());
    // Docker by default: the process runtime gives renters the node's OS account.
    assert_eq!(c.runtime, RuntimeKind::Docker);
    assert_eq!(c.earnings, EarningsSettings::default());
    assert_eq!(c.earnings.withdraw_interval_secs, 3600);
    assert!(c.earnings.withdraw_on_shutdown);
    assert_eq!(c.keystore, KeystoreSettings::default());

    let file = format!(
        "{FILE}\n[api]\naddr = \"off\"\n[runtime]\nkind = \"docker\"\n\
         [earnings]\nwithdraw_interval_secs = 60\nwithdraw_on_shutdown = false\n"
    )
    .replace(
        "[chain]",
        "[wallet]\nkeystore = \"/file/ks.json\"\npassword_file = \"/file/pw\"\n[chain]",
    );
    let c = load(&file, &[], &[]).unwrap();
    assert_eq!(c.api, ApiListen::Off);
    assert_eq!(c.runtime, RuntimeKind::Docker);
    assert_eq!(c.earnings.withdraw_interval_secs, 60);
    assert!(!c.earnings.withdraw_on_shutdown);
    assert_eq!(
        c.keystore.keystore.as_deref(),
        Some(Path::new("/file/ks.json"))
    );
    assert_eq!(
        c.keystore.password_file.as_deref(),
        Some(Path::new("/file/pw"))
    );

    let env = [
        ("GPUFLOW_API_ADDR", "127.0.0.1:0"),
        ("GPUFLOW_RUNTIME", "process"),
        ("GPUFLOW_PROCESS_GIVES_RENTERS_MY_ACCOUNT", "true"),
        ("GPUFLOW_WITHDRAW_INTERVAL_SECS", "0"),
        ("GPUFLOW_WITHDRAW_EARNINGS_ON_SHUTDOWN", "true"),
        ("GPUFLOW_KEYSTORE", "/env/ks.json"),
        ("GPUFLOW_KEYSTORE_PASSWORD_FILE", "/env/pw"),
    ];
    let c = load(&file, &env, &[]).unwrap();
    assert_eq!(c.api, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.runtime, RuntimeKind::Process);
    assert!(c.process_unisolated);
    // Without the flag, the process runtime runs only on the devnet chain.
    let err = load(&file, &env[..2], &[]).unwrap_err().to_string();
    assert!(
        err.contains("runs only on the devnet chain (31337), not chain 1"),
        "{err}"
    );
    assert!(
        err.contains("--process-runtime-gives-renters-my-account"),
        "{err}"
    );
    let devnet = file.replace("chain_id = 1\n", "chain_id = 31337\n");
    let d = load(&devnet, &env[..2], &[]).unwrap();
    assert_eq!(d.runtime, RuntimeKind::Process);
    assert!(!d.process_unisolated);
    assert_eq!(
        c.earnings.withdraw_interval_secs, 0,
        "0 turns the schedule off"
    );
    assert!(c.earnings.withdraw_on_shutdown);
    assert_eq!(
        c.keystore.keystore.as_deref(),
        Some(Path::new("/env/ks.json"))
    );
    assert_eq!(
        c.keystore.password_file.as_deref(),
        Some(Path::new("/env/pw"))
    );

    let flags = [
        "--api-addr",
        "127.0.0.1:9999",
        "--runtime",
        "docker",
        "--withdraw-interval-secs",
        "5",
        "--withdraw-earnings-on-shutdown",
        "false",
        "--keystore",
        "/flag/ks.json",
        "--password-file",
        "/flag/pw",
    ];
    let c = load(&file, &env, &flags).unwrap();
    assert_eq!(c.api, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(c.runtime, RuntimeKind::Docker);
    assert_eq!(c.earnings.withdraw_interval_secs, 5);
    assert!(!c.earnings.withdraw_on_shutdown);
    assert_eq!(
        c.keystore.keystore.as_deref(),
        Some(Path::new("/flag/ks.json"))
    );
    assert_eq!(
        c.keystore.password_file.as_deref(),
        Some(Path::new("/flag/pw"))
    );
}

#[test]
fn bad_api_and_runtime_values_say_what_is_accepted() {
    let err = load(FILE, &[("GPUFLOW_RUNTIME", "podman")], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("GPUFLOW_RUNTIME") && msg.contains("process or docker"),
        "{msg}"
    );
    let err = load(FILE, &[("GPUFLOW_API_ADDR", "localhost")], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("GPUFLOW_API_ADDR") && msg.contains("off"),
        "{msg}"
    );
    let err = load(&format!("{FILE}\n[api]\naddr = \"nowhere\"\n"), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:8686"), "{err}");
    assert!(Cli::try_parse_from(["node", "--runtime", "vm"]).is_err());
}
