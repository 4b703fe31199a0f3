//! The Helm chart (helm/sidx): `helm lint --strict` and `helm template` for the
//! default values and every value set in helm/sidx/ci/, each rendered manifest
//! validated against the Kubernetes JSON schemas of the chart's minimum
//! version (1.30, `kubeVersion`) and of 1.33, bad values refused,
//! and the containers' flags checked against what the binary accepts.
//! Tools: scripts/fetch-helm-tools.sh (the README's test command runs it).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Helm {
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        for tool in [".tools/bin/helm", ".venv/bin/kubernetes-validate"] {
            assert!(
                root().join(tool).exists(),
                "{tool} is missing: run scripts/fetch-helm-tools.sh"
            );
        }
        Helm {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        Command::new(root().join(".tools/bin/helm"))
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(root())
            .output()
            .expect("helm runs")
    }

    /// `helm template` with extra arguments; the rendered text.
    fn template(&self, extra: &[&str]) -> Result<String, String> {
        let mut args = vec!["template", "rel", "helm/sidx"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn value_sets() -> Vec<(String, Vec<String>)> {
    let mut sets = vec![("default".to_string(), Vec::new())];
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("helm/sidx/ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        sets.push((rel.clone(), vec!["-f".into(), rel]));
    }
    assert!(sets.len() >= 4, "default + at least three value sets");
    sets
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kinds(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter().filter(|d| d["kind"] == kind).cloned().collect()
}

/// Every container of a workload (Deployment, CronJob or Pod).
fn containers(doc: &Value) -> Vec<Value> {
    let spec = match doc["kind"].as_str().unwrap() {
        "Deployment" => &doc["spec"]["template"]["spec"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "Pod" => &doc["spec"],
        _ => return Vec::new(),
    };
    spec["containers"].as_array().cloned().unwrap_or_default()
}

fn pod_spec(doc: &Value) -> &Value {
    match doc["kind"].as_str().unwrap() {
        "Deployment" => &doc["spec"]["template"]["spec"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"],
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("args are strings").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `sidx <subcommand…> --help`, cached.
fn help(cache: &mut HashMap<Vec<String>, String>, sub: &[String]) -> String {
    cache
        .entry(sub.to_vec())
        .or_insert_with(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_sidx"))
                .args(sub)
                .arg("--help")
                .output()
                .unwrap();
            assert!(out.status.success(), "sidx {sub:?} --help failed");
            String::from_utf8(out.stdout).unwrap()
        })
        .clone()
}

/// The container's subcommand (`serve index`, `probe`, …) and its flags;
/// `--log` is the global flag before it.
fn command_and_flags(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut i = 0;
    if args.first().map(String::as_str) == Some("--log") {
        i = 2;
    }
    let sub: Vec<String> = args[i..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    let flags = args[i + sub.len()..]
        .iter()
        .filter(|a| a.starts_with("--"))
        .cloned()
        .collect();
    (sub, flags)
}

/// The chart's minimum Kubernetes (Chart.yaml `kubeVersion`) and a current one.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.33.0"];

/// `lifecycle.preStop.sleep` is in the schemas from 1.29 on (alpha there,
/// on by default from 1.30): below the minimum the chart declares, the same
/// manifests fail — so the minimum is the truth, not a guess.
#[test]
fn kube_version_is_the_oldest_schema_that_accepts_the_chart() {
    let helm = Helm::new();
    let chart = std::fs::read_to_string(root().join("helm/sidx/Chart.yaml")).unwrap();
    assert!(chart.contains(&format!("kubeVersion: \">={}-0\"", KUBERNETES_VERSIONS[0])));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.yaml");
    std::fs::write(&file, helm.template(&[]).unwrap()).unwrap();
    let out = Command::new(root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "-k", "1.28.0", file.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("sleep"),
        "1.28 must refuse preStop.sleep:\n{report}"
    );
}

#[test]
fn chart_lints_renders_and_validates_for_every_value_set() {
    let helm = Helm::new();
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in value_sets() {
        let mut lint = vec!["lint", "--strict", "helm/sidx"];
        lint.extend(args.iter().map(String::as_str));
        let out = helm.run(&lint);
        assert!(
            out.status.success(),
            "helm lint --strict ({name}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let rendered = helm
            .template(&args)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let file = dir.path().join(format!("{}.yaml", name.replace('/', "_")));
        std::fs::write(&file, &rendered).unwrap();
        let docs = documents(&rendered);
        for version in KUBERNETES_VERSIONS {
            let out = Command::new(root().join(".venv/bin/kubernetes-validate"))
                .args(["--strict", "-k", version, file.to_str().unwrap()])
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{name}: schema validation at {version} failed:\n{report}"
            );
            let validated = report.matches(" passed for resource ").count();
            assert_eq!(
                validated,
                docs.len(),
                "{name}: every manifest validated at {version}:\n{report}"
            );
        }
    }
}

#[test]
fn container_flags_and_probes_match_the_binary() {
    let helm = Helm::new();
    let mut cache = HashMap::new();
    let global = help(&mut cache, &[]);
    let mut commands_seen = BTreeSet::new();
    for (name, args) in value_sets() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = documents(&helm.template(&args).unwrap());
        let toml = kinds(&docs, "ConfigMap")[0]["data"]["sidx.toml"]
            .as_str()
            .unwrap()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sidx.toml"), toml).unwrap();
        let config = sidx::server::ServerConfig::from_file(&dir.path().join("sidx.toml"))
            .unwrap_or_else(|e| panic!("{name}: the rendered sidx.toml: {e}"));
        for doc in &docs {
            for c in containers(doc) {
                let cargs = strings(&c["args"]);
                let (sub, flags) = command_and_flags(&cargs);
                let text = help(&mut cache, &sub);
                for f in &flags {
                    assert!(
                        text.contains(&format!("{f} ")) || text.contains(&format!("{f}\n")),
                        "{name}: `sidx {}` does not accept {f}",
                        sub.join(" ")
                    );
                }
                if cargs.first().map(String::as_str) == Some("--log") {
                    assert!(global.contains("--log"));
                }
                commands_seen.insert(sub.join(" "));
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
                let pod = pod_spec(doc);
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
                assert_eq!(
                    pod["securityContext"]["seccompProfile"]["type"],
                    "RuntimeDefault"
                );
                if doc["kind"] != "Deployment" {
                    continue;
                }
                // Probes: on the container's own ports, for the service the binary registers.
                let ports: HashMap<String, i64> = c["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_string(),
                            p["containerPort"].as_i64().unwrap(),
                        )
                    })
                    .collect();
                let addr = cargs
                    .iter()
                    .position(|a| a == "--addr")
                    .map(|i| &cargs[i + 1])
                    .unwrap();
                assert!(
                    addr.ends_with(&format!(":{}", ports["grpc"])),
                    "{name}: --addr {addr}"
                );
                let service = if sub == ["serve", "index"] {
                    sidx::server::SERVICE_NAME
                } else {
                    sidx::server::GENERATOR_SERVICE_NAME
                };
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    let p = &c[probe];
                    if let Some(grpc) = p.get("grpc") {
                        assert_eq!(grpc["port"].as_i64(), Some(ports["grpc"]), "{name} {probe}");
                        if probe != "livenessProbe" {
                            assert_eq!(grpc["service"], service, "{name} {probe}");
                        }
                    } else if let Some(get) = p.get("httpGet") {
                        assert_eq!(
                            (get["path"].as_str(), get["port"].as_str()),
                            (Some("/ready"), Some("metrics"))
                        );
                    } else {
                        assert_eq!(p["tcpSocket"]["port"], "grpc", "{name} {probe}");
                    }
                }
                let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
                assert!(
                    grace > config.drain_timeout_s,
                    "{name}: grace {grace} s ≤ drain"
                );
                assert!(
                    c["lifecycle"]["preStop"]["sleep"]["seconds"]
                        .as_u64()
                        .unwrap()
                        > 0
                );
            }
        }
        // Value-set specifics.
        let deployments = kinds(&docs, "Deployment");
        let generator = deployments
            .iter()
            .find(|d| {
                d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with("-generator")
            })
            .unwrap();
        let gargs = strings(&containers(generator)[0]["args"]);
        let device = &gargs[gargs.iter().position(|a| a == "--device").unwrap() + 1];
        match name.as_str() {
            "default" => {
                assert!(
                    kinds(&docs, "PodDisruptionBudget").is_empty(),
                    "one replica: no PDB"
                );
                assert!(kinds(&docs, "HorizontalPodAutoscaler").is_empty());
                assert_eq!(device, "cpu");
                assert!(gargs.contains(&"--mirror-from".to_string()));
                assert_eq!(kinds(&docs, "PersistentVolumeClaim").len(), 1);
            }
            n if n.ends_with("gpu-values.yaml") => {
                assert_eq!(device, "cuda:0");
                // The replication token: required by the index, presented by the mirror.
                let index = deployments
                    .iter()
                    .find(|d| d["metadata"]["name"].as_str().unwrap().ends_with("-index"))
                    .unwrap();
                let secret_env = |d: &serde_json::Value, var: &str| {
                    containers(d)[0]["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["name"] == var)
                        .map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone())
                };
                assert_eq!(
                    secret_env(index, "SIDX_REPLICATION_TOKEN"),
                    Some("sidx-replication".into())
                );
                assert_eq!(
                    secret_env(generator, "SIDX_MIRROR_TOKEN"),
                    Some("sidx-replication".into())
                );
                let limits = &containers(generator)[0]["resources"]["limits"];
                assert_eq!(limits["nvidia.com/gpu"], 1);
                assert!(
                    containers(generator)[0]["image"]
                        .as_str()
                        .unwrap()
                        .ends_with("-cuda")
                );
            }
            n if n.ends_with("hpa-tls-values.yaml") => {
                assert_eq!(kinds(&docs, "HorizontalPodAutoscaler").len(), 2);
                assert_eq!(kinds(&docs, "PodDisruptionBudget").len(), 2);
                assert!(gargs.contains(&"--tls-client-ca".to_string()));
                assert!(
                    kinds(&docs, "Pod").is_empty(),
                    "the plaintext test pod is left out with TLS"
                );
            }
            n if n.ends_with("pvc-values.yaml") => {
                assert_eq!(kinds(&docs, "CronJob").len(), 1);
                assert!(!gargs.contains(&"--mirror-from".to_string()));
            }
            _ => {}
        }
    }
    for cmd in ["serve index", "serve generator", "probe", "index update"] {
        assert!(
            commands_seen.contains(cmd),
            "no rendered container runs `sidx {cmd}`"
        );
    }
}

#[test]
fn bad_values_are_refused() {
    let helm = Helm::new();
    let cases: [(&[&str], &str); 12] = [
        (&["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (&["--set", "ports.grpc=70000"], "grpc"),
        (&["--set", "server.keepVersions=1"], "keepVersions"),
        (&["--set", "generator.indexSource=nfs"], "indexSource"),
        (&["--set", "tls.enabled=true"], "secretName"),
        (&["--set", "catalogUpdate.enabled=true"], "updatesClaim"),
        (&["--set", "index.replica=2"], "replica"),
        (&["--set", "generator.model.file=/abs/model.onnx"], "file"),
        (
            &[
                "--set",
                "catalogUpdate.enabled=true",
                "--set",
                "catalogUpdate.updatesClaim=c",
                "--set",
                "index.storage.type=emptyDir",
                "--set",
                "index.seed.configMap=seed",
            ],
            "index.storage.type=pvc",
        ),
        // An emptyDir root is never ready without a first version.
        (&["--set", "index.storage.type=emptyDir"], "seed"),
        (
            &[
                "--set",
                "index.seed.configMap=a",
                "--set",
                "index.seed.existingClaim=b",
            ],
            "seed",
        ),
        (
            &["--set", "tls.enabled=true", "--set", "tls.secretName=s"],
            "indexSource=pvc",
        ),
    ];
    for (args, needle) in cases {
        let err = helm
            .template(args)
            .expect_err(&format!("{args:?} must be refused"));
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Every value (to depth two) is described in the README's values table.
#[test]
fn readme_documents_every_value() {
    let values: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("helm/sidx/values.yaml")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut missing = Vec::new();
    for (k, v) in values.as_object().unwrap() {
        let nested = v.as_object().filter(|o| !o.is_empty());
        match nested {
            Some(o) => {
                for sub in o.keys() {
                    let path = format!("`{k}.{sub}`");
                    if !readme.contains(&path) {
                        missing.push(path);
                    }
                }
            }
            None => {
                if !readme.contains(&format!("`{k}`")) {
                    missing.push(k.clone());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "values missing from README.md: {missing:?}"
    );
}
