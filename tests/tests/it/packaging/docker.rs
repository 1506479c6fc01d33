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

/// The `key: value` children of the mapping `key:` at the service's top level (`environment`,
/// `build` → `args` is one level deeper: pass `indent` 6 for it), unquoted.
fn mapping(block: &str, key: &str, indent: usize) -> BTreeMap<String, String> {
    let header = format!("{}{key}:", " ".repeat(indent - 2));
    let pad = " ".repeat(indent);
    block
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.starts_with(&pad))
        .filter(|l| !l[indent..].starts_with(' '))
        .filter_map(|l| l[indent..].split_once(": "))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
            )
        })
        .collect()
}

/// The URL a service's `CMD curl -fsS URL` healthcheck asks.
fn health_url(block: &str) -> Option<String> {
    block
        .lines()
        .skip_while(|l| !l.starts_with("      test:"))
        .skip(1)
        .take_while(|l| l.starts_with("      - "))
        .map(|l| l.trim_start_matches("      - "))
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned)
}

/// The port of `host:port` (the last `:` field).
fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or_default().to_owned()
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
    let mut host_ports = BTreeSet::new();
    for host in ["host-a", "host-b"] {
        let b = &svc[host];
        assert_eq!(
            list(b, "command"),
            ["gpuflow-node", "run", "--runtime", "docker"],
            "{host}: {b}"
        );
        // The SSH gates and the iptables fence live in the machine's network namespace; the
        // engine's socket is mounted for the docker runtime.
        for needle in [
            "    network_mode: host\n",
            "    user: root\n",
            "    cap_add:\n    - NET_ADMIN\n",
            "/var/run/docker.sock:/var/run/docker.sock",
            "GPUFLOW_BOOTSTRAP_FROM: /devnet/bootstrap",
        ] {
            assert!(b.contains(needle), "{host} lacks {needle:?}:\n{b}");
        }
        // Simulated GPUs: no device reservation in the base file (docker/compose.gpu.yml).
        assert!(!b.contains("    deploy:"), "{host} reserves GPUs:\n{b}");
        let env = mapping(b, "environment", 6);
        // anvil through its published port, as seen from the machine.
        assert_eq!(env["GPUFLOW_RPC_URL"], "http://127.0.0.1:8545", "{host}");
        // The data dir is a bind mount at the same path inside and out: lease containers mount
        // the SSH tools under it by host path.
        let data = &env["GPUFLOW_DATA_DIR"];
        assert!(
            b.contains(&format!("    - {data}:{data}:rw\n")),
            "{host}: {data} is not mounted at the same path:\n{b}"
        );
        // Each host on the machine's ports: its own API and p2p ports.
        let api = &env["GPUFLOW_API_ADDR"];
        assert!(api.starts_with("127.0.0.1:"), "{host}: API on {api}");
        assert_eq!(
            health_url(b).as_deref(),
            Some(format!("http://{api}/health").as_str()),
            "{host}: the healthcheck asks another API than GPUFLOW_API_ADDR"
        );
        assert!(host_ports.insert(port_of(api)), "{host}: API port taken");
        for listen in env["GPUFLOW_LISTEN"].split(',') {
            let port = listen.split('/').nth(4).unwrap().to_owned();
            if listen.contains("/tcp/") {
                assert!(host_ports.insert(port), "{host}: p2p port taken: {listen}");
            }
        }
        // The config the hosts mount: docker runtime, simulated GPUs.
        let toml =
            std::fs::read_to_string(repo_root().join(format!("docker/{host}.toml"))).unwrap();
        for needle in [
            "simulated = true",
            "kind = \"docker\"",
            "detection = \"declared\"",
        ] {
            assert!(toml.contains(needle), "docker/{host}.toml lacks {needle:?}");
        }
    }
    // The bootstrap node: its API, its data dir on the shared volume (where the hosts read its
    // listen_addrs; the image's GPUFLOW_DATA_DIR would win over the config file's data_dir),
    // the process runtime (it runs no leases, so needs no engine) and no GPUs.
    let b = &svc["bootstrap"];
    let env = mapping(b, "environment", 6);
    assert_eq!(env["GPUFLOW_API_ADDR"], "127.0.0.1:8686");
    assert_eq!(
        health_url(b).as_deref(),
        Some("http://127.0.0.1:8686/health")
    );
    assert_eq!(env["GPUFLOW_DATA_DIR"], "/devnet/bootstrap");
    assert!(
        !host_ports.contains("4001"),
        "a host takes the bootstrap's port"
    );
    assert!(b.contains("127.0.0.1:4001:4001/tcp"), "{b}");
    let toml = std::fs::read_to_string(repo_root().join("docker/bootstrap.toml")).unwrap();
    assert!(toml.contains("kind = \"process\""), "docker/bootstrap.toml");
    assert!(!b.contains("devices:"), "the bootstrap node needs no GPUs");
    assert_eq!(list(&svc["deploy"], "command"), ["gpuflow-deploy"]);
    // The base images are build arguments, defaulting to the public images; one set for
    // every image built here (the classic builder then reuses the chain stage's cache).
    let mut arg_sets = BTreeSet::new();
    for (name, b) in &svc {
        if b.contains("    build:\n") {
            let args = mapping(b, "args", 8);
            assert_eq!(args["DEBIAN_IMAGE"], "debian:bookworm-slim", "{name}");
            assert_eq!(args["NODEJS_IMAGE"], "node:22-bookworm-slim", "{name}");
            assert_eq!(args["RUST_IMAGE"], "rust:1.90-slim-bookworm", "{name}");
            assert_eq!(args["PREBUILT_DIR"], "docker/prebuilt", "{name}");
            arg_sets.insert(format!("{args:?}"));
        }
    }
    assert_eq!(arg_sets.len(), 1, "images built with different arguments");
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

    // Real GPUs: the override reserves them and turns the simulation off.
    let gpu = compose_files(
        &["docker-compose.yml", "docker/compose.gpu.yml"],
        &["config"],
    );
    let svc = services(&gpu);
    for host in ["host-a", "host-b"] {
        let b = &svc[host];
        for needle in [
            "    deploy:\n      resources:\n        reservations:\n          devices:",
            "driver: nvidia",
            "            - gpu\n",
        ] {
            assert!(
                b.contains(needle),
                "{host} lacks {needle:?} with the override:\n{b}"
            );
        }
        assert!(
            b.contains("device_ids:") || b.contains("count:"),
            "{host} reserves no GPUs:\n{b}"
        );
        let env = mapping(b, "environment", 6);
        assert_eq!(env["GPUFLOW_GPU_SIMULATED"], "false", "{host}");
    }
}

/// A Dockerfile stage: its name, what it is built `FROM` (an image or an earlier stage) and its
/// instructions, continuation lines joined.
#[derive(Debug)]
struct Stage {
    name: String,
    from: String,
    lines: Vec<String>,
}

/// The stages, in order, and the default of every `ARG NAME=default` (global or in a stage).
fn dockerfile_stages() -> (Vec<Stage>, BTreeMap<String, String>) {
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
    let mut args = BTreeMap::new();
    for l in joined {
        if let Some((name, default)) = l.strip_prefix("ARG ").and_then(|a| a.split_once('=')) {
            args.insert(name.trim().to_owned(), default.trim().to_owned());
        }
        if l.starts_with("FROM ") {
            let words: Vec<&str> = l.split_whitespace().collect();
            let (from, name) = match words.as_slice() {
                [_, from, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    ((*from).to_owned(), (*name).to_owned())
                }
                _ => panic!("every stage needs a name (`FROM image AS name`): {l}"),
            };
            stages.push(Stage {
                name,
                from,
                lines: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.lines.push(l);
        }
    }
    (stages, args)
}

impl Stage {
    fn has(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines.iter().any(|l| pred(l))
    }
}

#[test]
fn dockerfile_installs_every_program_the_compose_file_runs_as_non_root() {
    let (stages, args) = dockerfile_stages();
    let stage = |name: &str| {
        stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no Dockerfile stage {name}"))
    };
    // `name` and the earlier stages it is built on, itself first.
    let lineage = |name: &str| {
        let mut chain = vec![stage(name)];
        while let Some(parent) = stages.iter().find(|s| s.name == chain.last().unwrap().from) {
            chain.push(parent);
        }
        chain
    };
    // The base images are build arguments with the public images as defaults.
    for (arg, default) in [
        ("RUST_IMAGE", "rust:1.90-slim-bookworm"),
        ("DEBIAN_IMAGE", "debian:bookworm-slim"),
        ("NODEJS_IMAGE", "node:22-bookworm-slim"),
    ] {
        assert_eq!(
            args.get(arg).map(String::as_str),
            Some(default),
            "ARG {arg}"
        );
        assert!(
            stages.iter().any(|s| s.from == format!("${{{arg}}}")),
            "no stage is built FROM ${{{arg}}}"
        );
    }
    for s in &stages {
        assert!(
            s.from.starts_with("${") || stages.iter().any(|p| p.name == s.from),
            "stage {} is built from {}, not from a base-image argument",
            s.name,
            s.from
        );
    }
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
    assert!(
        stage("node").has(|l| l.starts_with("COPY --from=build ")),
        "the node image does not take the binaries of the build stage"
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
    // The classic builder (docker-compose v1 without BuildKit) builds every stage up to the
    // target: the targets that must build there, and the stages before them, need no BuildKit
    // (`RUN --mount`, `# syntax=`) and no Rust build.
    for target in ["chain", "node-prebuilt"] {
        for s in stages
            .iter()
            .take_while(|s| s.name != target)
            .chain([stage(target)])
        {
            assert!(
                s.name != "build"
                    && !s.has(|l| l.contains("--mount=") || l.contains("--from=build")),
                "the classic builder goes through stage {} for target {target}, which needs \
                 BuildKit or the Rust build",
                s.name
            );
        }
    }
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("# syntax=")),
        "a `# syntax=` line makes BuildKit pull its frontend from a registry"
    );

    // What each image provides on its PATH, as the Dockerfile says (the stage and the stages
    // it is built on).
    let provided_by = |s: &Stage| -> BTreeSet<String> {
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
    let provided = |name: &str| -> BTreeSet<String> {
        lineage(name).into_iter().flat_map(provided_by).collect()
    };
    // Every COPY source exists in the build context; sources under $PREBUILT_DIR are staged by
    // whoever builds with them, into a directory that exists (docker/prebuilt by default).
    let prebuilt = args
        .get("PREBUILT_DIR")
        .expect("no ARG PREBUILT_DIR=… default");
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
                let path = repo_root().join(src.replace("${PREBUILT_DIR}", prebuilt));
                let staged = src.starts_with("${PREBUILT_DIR}/")
                    && path.parent().is_some_and(std::path::Path::is_dir);
                assert!(path.exists() || staged, "COPY source {src} missing ({l})");
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
    // The node image's own ENTRYPOINT wraps every command; the prebuilt node image must run
    // all that the node image runs.
    let node_runs = runs.entry("node".into()).or_default();
    node_runs.insert("gpuflow-entrypoint".into());
    let node_runs = node_runs.clone();
    runs.insert("node-prebuilt".into(), node_runs);
    for (target, progs) in &runs {
        let have = provided(target);
        for p in progs {
            assert!(
                have.contains(p),
                "the compose file runs {p} in the {target} image, which installs only {have:?}"
            );
        }
    }
    assert!(runs["node"].contains("gpuflow-node") && runs["node"].contains("gpuflow"));
    assert!(runs["chain"].contains("anvil"));
    // What the docker runtime needs on the node's machine: iptables for the fence, the SFTP
    // server and a static busybox for the SSH tools it mounts into lease containers.
    for target in ["node", "node-prebuilt"] {
        let have = provided(target);
        for p in [
            "iptables",
            "openssh-sftp-server",
            "busybox-static",
            "ca-certificates",
        ] {
            assert!(have.contains(p), "the {target} image lacks {p}");
        }
    }

    // Final images run as a non-root user (the compose hosts override it: iptables).
    for target in ["node", "node-prebuilt", "chain"] {
        let user = lineage(target)
            .into_iter()
            .find_map(|s| s.lines.iter().rev().find_map(|l| l.strip_prefix("USER ")))
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
        "scripts/build-base-images.sh",
    ] {
        let path = repo_root().join(script);
        let ok = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(ok.success(), "{script} does not parse");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
}
