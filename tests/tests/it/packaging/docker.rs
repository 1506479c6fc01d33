//! `docker-compose.yml` and the `Dockerfile`, checked without a Docker engine (the compose devnet
//! for real is [`super::compose`]).
//!
//! What is checked: the compose file is valid for `docker-compose config` (schema, references,
//! interpolation) and, as resolved by it, defines the devnet's services: hosts on the docker
//! runtime with simulated GPUs, as root in the machine's network namespace with the engine's
//! socket and a data dir at the same path inside and out, API healthchecks on each node's own
//! API address, base images as build arguments; `docker/compose.gpu.yml` adds the NVIDIA GPU
//! reservations. Every image target it uses is a Dockerfile stage, and every program it runs is
//! installed by that stage or the stages it is built on (the two Rust binaries by a `cargo
//! build --release` of their packages or the prebuilt copies, anvil/forge/cast by the pinned
//! npm packages, the entrypoint scripts by COPY of files that exist), as a non-root user; the
//! stages Docker's classic builder goes through for the prebuilt targets need no BuildKit.
//! What is not: building the images and running the containers (no engine here).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use super::repo_root;

/// `docker-compose` (v1, Debian's package) or `docker compose` (v2 plugin): the first that
/// answers `version`. Fails the test, with what to install, when neither does.
pub(super) fn compose() -> Vec<String> {
    let works = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for argv in [&["docker-compose"][..], &["docker", "compose"][..]] {
        if works(argv) {
            return argv.iter().map(|s| (*s).to_owned()).collect();
        }
    }
    panic!(
        "neither `docker-compose` nor `docker compose` is installed, so docker-compose.yml \
         cannot be validated: install Debian's package (`apt-get install docker-compose`, as \
         .ci/run does) or the Docker Compose v2 plugin"
    );
}

/// Runs compose with `args` on the repository's compose file; returns stdout.
fn compose_run(args: &[&str]) -> String {
    compose_files(&["docker-compose.yml"], args)
}

/// Runs compose with `args` on `files` (relative to the repository); returns stdout.
fn compose_files(files: &[&str], args: &[&str]) -> String {
    let argv = compose();
    let root = repo_root();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    for f in files {
        cmd.arg("--file").arg(root.join(f));
    }
    cmd.args(["--profile", "cli"]).args(args).current_dir(&root);
    // Defaults from the file only, not from the developer's shell, `scripts/with-docker.sh`
    // or a stray .env: none of the variables the file reads.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("GPUFLOW_") || k.starts_with("COMPOSE_") || k == "DOCKER_GID" {
            cmd.env_remove(&key);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?} {files:?} {args:?} rejected the compose file:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The resolved config split into its services' blocks (`services:` children at indent 2).
fn services(resolved: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_services = false;
    for line in resolved.lines() {
        if !line.starts_with(' ') {
            in_services = line == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            current = Some(name.to_owned());
            map.insert(name.to_owned(), String::new());
        } else if let Some(c) = &current {
            let block = map.get_mut(c).unwrap();
            block.push_str(line);
            block.push('\n');
        }
    }
    map
}

/// The list items under `key:` in a service block (`key:\n- a\n- b`), unquoted.
fn list(block: &str, key: &str) -> Vec<String> {
    let header = format!("    {key}:");
    let mut lines = block.lines().skip_while(|l| *l != header).skip(1);
    let mut items = Vec::new();
    for l in lines.by_ref() {
        let Some(item) = l.strip_prefix("    - ") else {
            break;
        };
        items.push(item.trim_matches(|c| c == '\'' || c == '"').to_owned());
    }
    items
}

/// A scalar `key: value` at the service's top level.
fn scalar(block: &str, key: &str) -> Option<String> {
    let prefix = format!("    {key}: ");
    block
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_owned())
}

#[test]
fn docker_compose_file_is_valid_and_defines_the_devnet() {
    let names: BTreeSet<String> = compose_run(&["config", "--services"])
        .lines()
        .map(str::to_owned)
        .collect();
    let want: BTreeSet<String> = ["anvil", "deploy", "bootstrap", "host-a", "host-b", "cli"]
        .map(String::from)
        .into();
    assert_eq!(names, want);

    let resolved = compose_run(&["config"]);
    let svc = services(&resolved);
    for host in ["host-a", "host-b"] {
        let b = &svc[host];
        assert_eq!(
            list(b, "command"),
            ["gpuflow-node", "run", "--runtime", "docker"],
            "{host}: {b}"
        );
        // GPUs through the compose device-reservation syntax.
        for needle in [
            "    deploy:\n      resources:\n        reservations:\n          devices:",
            "driver: nvidia",
            "            - gpu\n",
            "/var/run/docker.sock:/var/run/docker.sock",
            "GPUFLOW_RPC_URL: http://anvil:8545",
            "GPUFLOW_BOOTSTRAP_FROM: /devnet/bootstrap",
        ] {
            assert!(b.contains(needle), "{host} lacks {needle:?}:\n{b}");
        }
        assert!(
            b.contains("device_ids:") || b.contains("count:"),
            "{host} reserves no GPUs:\n{b}"
        );
    }
    // Healthchecks on the node API for every node.
    for node in ["bootstrap", "host-a", "host-b"] {
        let b = &svc[node];
        assert!(
            b.contains("      - http://127.0.0.1:8686/health")
                && b.contains("GPUFLOW_API_ADDR: 127.0.0.1:8686"),
            "{node}: no healthcheck on the API's /health:\n{b}"
        );
    }
    assert!(
        !svc["bootstrap"].contains("devices:"),
        "the bootstrap node needs no GPUs"
    );
    assert_eq!(list(&svc["deploy"], "command"), ["gpuflow-deploy"]);
    // Every bind-mounted file is in the repository.
    let root = repo_root().canonicalize().unwrap();
    for line in resolved.lines() {
        let Some(src) = line
            .trim()
            .strip_prefix("- ")
            .and_then(|m| m.split(':').next())
        else {
            continue;
        };
        if let Ok(rel) = std::path::Path::new(src).strip_prefix(&root) {
            assert!(root.join(rel).is_file(), "{src} is mounted but missing");
        }
    }
}

/// A Dockerfile stage: its name and its instructions, continuation lines joined.
#[derive(Debug)]
struct Stage {
    name: String,
    lines: Vec<String>,
}

fn dockerfile_stages() -> Vec<Stage> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if (t.starts_with('#') && cur.is_empty()) || t.is_empty() {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            joined.push(std::mem::take(&mut cur));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for l in joined {
        if l.starts_with("FROM ") {
            let words: Vec<&str> = l.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => panic!("every stage needs a name (`FROM image AS name`): {l}"),
            };
            stages.push(Stage {
                name,
                lines: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.lines.push(l);
        }
    }
    stages
}

impl Stage {
    fn has(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines.iter().any(|l| pred(l))
    }
}

#[test]
fn dockerfile_installs_every_program_the_compose_file_runs_as_non_root() {
    let stages = dockerfile_stages();
    let stage = |name: &str| {
        stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no Dockerfile stage {name}"))
    };
    // The Rust binaries: a release build of exactly their packages, copied into `node`.
    let build = stage("build");
    assert!(
        build.has(|l| l.contains("cargo build --release --locked")
            && l.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["-p", "gpuflow-node"])
            && l.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["-p", "gpuflow"])),
        "the build stage does not `cargo build --release --locked -p gpuflow-node -p gpuflow`"
    );
    // Those are the packages' binary names.
    for (manifest, bin) in [
        ("node/Cargo.toml", "gpuflow-node"),
        ("client/Cargo.toml", "gpuflow"),
    ] {
        let text = std::fs::read_to_string(repo_root().join(manifest)).unwrap();
        assert!(
            text.contains(&format!("name = \"{bin}\"")),
            "{manifest} builds no {bin}"
        );
    }

    // What each image provides on its PATH, as the Dockerfile says.
    let provided = |s: &Stage| -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for l in &s.lines {
            let words: Vec<&str> = l.split_whitespace().collect();
            if l.starts_with("COPY ") && words.last() == Some(&"/usr/local/bin/") {
                for src in &words[1..words.len() - 1] {
                    if !src.starts_with("--") {
                        set.insert(src.rsplit('/').next().unwrap().to_owned());
                    }
                }
            } else if l.starts_with("COPY ")
                && words.len() == 3
                && let Some(name) = words[2].strip_prefix("/usr/local/bin/")
            {
                set.insert(name.to_owned());
            }
            if l.contains("apt-get install") {
                let after = l.split("apt-get install").nth(1).unwrap_or_default();
                for w in after.split_whitespace().take_while(|w| *w != "&&") {
                    if !w.starts_with('-') {
                        set.insert(w.to_owned());
                    }
                }
            }
            // tools/link-bins.sh links the pinned npm Foundry binaries into contracts/bin.
            if l.contains("tools/link-bins.sh")
                && s.has(|l| l.starts_with("ENV PATH=") && l.contains("contracts/bin"))
            {
                set.extend(["anvil", "forge", "cast"].map(String::from));
            }
        }
        set
    };
    // Every COPY source exists in the build context.
    for s in &stages {
        for l in s
            .lines
            .iter()
            .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        {
            let words: Vec<&str> = l
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            for src in &words[1..words.len() - 1] {
                assert!(
                    repo_root().join(src).exists(),
                    "COPY source {src} missing ({l})"
                );
            }
        }
    }

    // The programs compose runs, by image target: entrypoint (or the image's), command,
    // healthcheck.
    let resolved = compose_run(&["config"]);
    let svc = services(&resolved);
    let mut runs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let image_target: BTreeMap<&str, &str> =
        [("gpuflow/node:dev", "node"), ("gpuflow/chain:dev", "chain")].into();
    for (name, b) in &svc {
        let image = scalar(b, "image").unwrap_or_default();
        let target = image_target
            .get(image.as_str())
            .unwrap_or_else(|| panic!("{name} uses {image:?}, not an image built here"));
        if b.contains("    build:") {
            assert!(
                b.contains(&format!("target: {target}")),
                "{name} builds the wrong target"
            );
        }
        let entry = list(b, "entrypoint");
        let mut progs: Vec<String> = entry.first().cloned().into_iter().collect();
        // `gpuflow-entrypoint` execs the next word: that program must exist too.
        let cmd = list(b, "command");
        if entry.first().map(String::as_str) == Some("gpuflow-entrypoint") {
            progs.extend(entry.get(1).cloned());
        } else {
            progs.extend(cmd.first().cloned());
        }
        let hc: Vec<&str> = b
            .lines()
            .skip_while(|l| !l.starts_with("      test:"))
            .skip(1)
            .take_while(|l| l.starts_with("      - "))
            .map(|l| l.trim_start_matches("      - "))
            .collect();
        if let [kind, prog, ..] = hc.as_slice() {
            assert_eq!(*kind, "CMD", "{name}: healthcheck {hc:?}");
            progs.push((*prog).to_owned());
        }
        runs.entry((*target).to_owned()).or_default().extend(progs);
    }
    // The node image's own ENTRYPOINT wraps every command.
    runs.entry("node".into())
        .or_default()
        .insert("gpuflow-entrypoint".into());
    for (target, progs) in &runs {
        let have = provided(stage(target));
        for p in progs {
            assert!(
                have.contains(p),
                "the compose file runs {p} in the {target} image, which installs only {have:?}"
            );
        }
    }
    assert!(runs["node"].contains("gpuflow-node") && runs["node"].contains("gpuflow"));
    assert!(runs["chain"].contains("anvil"));

    // Final images run as a non-root user.
    for target in ["node", "chain"] {
        let user = stage(target)
            .lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("the {target} image runs as root (no USER)"));
        assert!(
            !["root", "0"].contains(&user.trim()),
            "{target} runs as {user}"
        );
    }
    // The entrypoint scripts parse as bash and are executable (COPY keeps the mode).
    for script in [
        "docker/entrypoint.sh",
        "docker/deploy.sh",
        "scripts/devnet.sh",
    ] {
        let path = repo_root().join(script);
        let ok = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(ok.success(), "{script} does not parse");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
}
