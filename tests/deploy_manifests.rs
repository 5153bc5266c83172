//! deploy/ is checked against the code: every command line in a manifest parses with the real CLI, queue and
//! metric names are the ones the code uses, ports agree between flags, probes and Services, grace periods sit
//! above drain timeouts, and the RabbitMQ definitions match, argument for argument, what the code declares on
//! a real broker. A typo in deploy/ fails here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use mediafleet::cli::Cli;
use mediafleet::scale::metrics::GAUGES;
use serde_yaml_ng::Value;

const CLASSES: [&str; 5] = ["image", "video", "cache", "notify", "video-gpu"];

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(deploy(rel))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(&p).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    out
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// Parses a command line with the real CLI; panics with clap's message on a typo.
fn parse(what: &str, args: &[String]) {
    let mut argv = vec!["mediafleet".to_owned()];
    argv.extend(args.iter().cloned());
    if let Err(e) = Cli::try_parse_from(&argv) {
        panic!("{what}: `{}` does not parse: {e}", argv.join(" "));
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|s| s.as_str())
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn deployments_parse_and_their_ports_probes_and_grace_periods_agree() {
    let mut workers = BTreeMap::new();
    for d in yaml_docs("k8s")
        .iter()
        .filter(|d| d["kind"] == "Deployment")
    {
        let name = d["metadata"]["name"].as_str().unwrap().to_owned();
        let spec = s(d, &["spec", "template", "spec"]);
        let c = &spec["containers"][0];
        let args: Vec<String> = c["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        parse(&name, &args);
        assert!(
            c["readinessProbe"]["httpGet"]["path"] == "/readyz",
            "{name}: readiness probe"
        );
        assert!(
            c["livenessProbe"]["httpGet"]["path"] == "/healthz",
            "{name}: liveness probe"
        );
        assert!(
            c["resources"]["requests"]["cpu"].as_str().is_some(),
            "{name}: cpu request"
        );
        assert!(
            c["resources"]["requests"]["memory"].as_str().is_some(),
            "{name}: memory request"
        );
        let listen = flag(&args, "--metrics-listen")
            .or(flag(&args, "--listen"))
            .unwrap_or_else(|| panic!("{name}: no listen flag"));
        let port = port_of(listen);
        assert_eq!(
            c["ports"][0]["containerPort"].as_u64(),
            Some(port),
            "{name}: containerPort"
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["port"].as_u64(),
            Some(port),
            "{name}: probe port"
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["port"].as_u64(),
            Some(port),
            "{name}: probe port"
        );
        if args[0] == "worker" {
            let class = flag(&args, "--classes").unwrap().to_owned();
            assert!(
                CLASSES.contains(&class.as_str()),
                "{name}: unknown class {class}"
            );
            assert_eq!(name, format!("mediafleet-worker-{class}"));
            assert_eq!(
                d["metadata"]["labels"]["mediafleet/class"].as_str(),
                Some(class.as_str())
            );
            let drain =
                humantime::parse_duration(flag(&args, "--drain-timeout").unwrap_or("30s")).unwrap();
            let grace =
                Duration::from_secs(spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
            assert!(grace > drain, "{name}: terminationGracePeriodSeconds {grace:?} must exceed the drain timeout {drain:?}");
            workers.insert(name, class);
        }
    }
    let classes: BTreeSet<&str> = workers.values().map(|c| c.as_str()).collect();
    assert_eq!(
        classes,
        CLASSES.into_iter().collect(),
        "a Deployment per class"
    );
    for svc in yaml_docs("k8s").iter().filter(|d| d["kind"] == "Service") {
        let target = svc["spec"]["ports"][0]["targetPort"].as_u64().unwrap();
        assert!(
            [8080, 9090].contains(&target),
            "{:?}: targetPort {target}",
            svc["metadata"]["name"]
        );
    }
}

#[test]
fn scaled_objects_target_real_deployments_queues_and_metrics() {
    let deployments: BTreeSet<String> = yaml_docs("k8s")
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    let mut kinds = BTreeSet::new();
    for so in yaml_docs("keda") {
        assert_eq!(so["kind"], "ScaledObject");
        let target = so["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
        assert!(
            deployments.contains(target),
            "ScaledObject targets unknown Deployment {target}"
        );
        let class = target.strip_prefix("mediafleet-worker-").unwrap();
        for t in so["spec"]["triggers"].as_sequence().unwrap() {
            let m = &t["metadata"];
            let kind = t["type"].as_str().unwrap();
            kinds.insert(kind.to_owned());
            match kind {
                "rabbitmq" => {
                    assert_eq!(
                        m["protocol"], "http",
                        "{target}: only http counts unacked messages"
                    );
                    assert_eq!(
                        m["queueName"].as_str(),
                        Some(format!("mediafleet.{class}").as_str())
                    );
                }
                "aws-sqs-queue" => {
                    assert_eq!(m["scaleOnInFlight"], "true", "{target}");
                    let url = m["queueURL"].as_str().unwrap();
                    assert!(
                        url.ends_with(&format!("/mediafleet-{class}")),
                        "{target}: {url}"
                    );
                }
                "prometheus" => {
                    let q = m["query"].as_str().unwrap();
                    assert!(q.contains("mediafleet_desired_workers"), "{q}");
                    assert!(q.contains(&format!("class=\"{class}\"")), "{target}: {q}");
                    for word in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                        if word.starts_with("mediafleet_") {
                            assert!(GAUGES.contains(&word), "{target}: unknown metric {word}");
                        }
                    }
                }
                other => panic!("{target}: unexpected trigger {other}"),
            }
        }
    }
    assert_eq!(
        kinds,
        ["aws-sqs-queue", "prometheus", "rabbitmq"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

fn unit(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(deploy("systemd").join(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

#[test]
fn systemd_units_parse_and_stop_after_the_drain() {
    for (file, instance) in [
        ("mediafleet-api.service", None),
        ("mediafleet-worker@.service", Some("image")),
        ("mediafleet-fleet.service", None),
    ] {
        let u = unit(file);
        let exec = u["ExecStart"].replace("%i", instance.unwrap_or(""));
        let args: Vec<String> = exec.split_whitespace().skip(1).map(String::from).collect();
        assert!(
            u["ExecStart"].starts_with("/usr/local/bin/mediafleet "),
            "{file}"
        );
        parse(file, &args);
        assert_eq!(u["KillSignal"], "SIGTERM", "{file}");
        let stop = humantime::parse_duration(&format!("{}s", u["TimeoutStopSec"])).unwrap();
        let drain =
            humantime::parse_duration(flag(&args, "--drain-timeout").unwrap_or("30s")).unwrap();
        if file != "mediafleet-api.service" {
            assert!(
                stop > drain,
                "{file}: TimeoutStopSec {stop:?} must exceed the drain timeout {drain:?}"
            );
        }
    }
    assert!(unit("mediafleet-worker@.service")["ExecStart"].contains("--classes %i"));
    // Every unit says how it is stopped: SIGTERM to the main process only (it drains and stops its own
    // children), SIGKILL to the rest at TimeoutStopSec. The default control-group mode would SIGTERM the
    // media children along with the worker.
    for file in [
        "mediafleet-api.service",
        "mediafleet-worker@.service",
        "mediafleet-fleet.service",
    ] {
        assert_eq!(
            unit(file).get("KillMode").map(String::as_str),
            Some("mixed"),
            "{file}"
        );
    }
}

#[test]
fn rabbitmq_conf_has_a_consumer_timeout_above_the_longest_job_and_management_enabled() {
    let conf = std::fs::read_to_string(deploy("rabbitmq/rabbitmq.conf")).unwrap();
    let get = |k: &str| {
        conf.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find_map(|l| {
                l.split_once('=')
                    .filter(|(a, _)| a.trim() == k)
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("rabbitmq.conf has no {k}"))
    };
    let timeout = Duration::from_millis(get("consumer_timeout").parse().unwrap());
    let job_timeout = mediafleet::config::WorkerFile::default()
        .resolve()
        .job_timeout;
    assert!(
        timeout > job_timeout,
        "consumer_timeout {timeout:?} ≤ job_timeout {job_timeout:?}"
    );
    // The longest job: a transcode of the longest video allowed, which gets the job timeout plus its
    // per-media-second budget. A consumer_timeout below it closes the channel mid-job and runs it twice.
    let longest = job_timeout
        + Duration::from_secs_f64(
            mediafleet_workers::Limits::default().video_seconds
                * mediafleet::jobs::TRANSCODE_SECONDS_PER_MEDIA_SECOND,
        );
    assert!(
        timeout > longest,
        "consumer_timeout {timeout:?} ≤ the longest transcode's limit {longest:?}"
    );
    assert_eq!(get("management.tcp.port"), "15672");
    assert_eq!(get("load_definitions"), "/etc/rabbitmq/definitions.json");
    let plugins = std::fs::read_to_string(deploy("rabbitmq/enabled_plugins")).unwrap();
    assert!(plugins.contains("rabbitmq_management"), "{plugins}");
}

/// Declares the standard classes on the real broker under a fresh prefix, reads every queue and binding back
/// from the management API, renames the prefix to `mediafleet`, and compares with definitions.json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_definitions_match_what_the_code_declares() {
    common::require_tcp("127.0.0.1:5672", "RabbitMQ");
    common::require_tcp("127.0.0.1:15672", "RabbitMQ management API");
    let prefix = common::unique("defs");
    let args = mediafleet::config::CommonArgs {
        queue: Some(common::amqp_url()),
        prefix: Some(prefix.clone()),
        data_dir: Some(std::env::temp_dir().join(&prefix)),
        ..Default::default()
    };
    let settings = mediafleet::config::Settings::merge(&args, Default::default()).unwrap();
    mediafleet::connect::queue_declared(&settings, 1)
        .await
        .expect("declare on RabbitMQ");
    let api = |path: &str| {
        let url = format!("http://127.0.0.1:15672/api/{path}");
        async move {
            reqwest::Client::new()
                .get(url)
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let rename = |s: &str| s.replacen(&prefix, "mediafleet", 1);
    let live_queues: BTreeMap<String, serde_json::Value> = api("queues/%2f")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| {
            q["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{prefix}."))
        })
        .map(|q| {
            let mut a = q["arguments"].clone();
            for k in ["x-dead-letter-exchange"] {
                if let Some(v) = a.get(k).and_then(|v| v.as_str()).map(rename) {
                    a[k] = v.into();
                }
            }
            (rename(q["name"].as_str().unwrap()), a)
        })
        .collect();
    let live_bindings: BTreeSet<(String, String, String)> = api("bindings/%2f")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["source"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{prefix}."))
        })
        .map(|b| {
            (
                rename(b["source"].as_str().unwrap()),
                rename(b["destination"].as_str().unwrap()),
                b["routing_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let defs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("rabbitmq/definitions.json")).unwrap(),
    )
    .unwrap();
    let def_queues: BTreeMap<String, serde_json::Value> = defs["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["arguments"].clone(),
            )
        })
        .collect();
    let def_bindings: BTreeSet<(String, String, String)> = defs["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["source"].as_str().unwrap().to_owned(),
                b["destination"].as_str().unwrap().to_owned(),
                b["routing_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        def_queues, live_queues,
        "deploy/rabbitmq/definitions.json queues differ from the code's declare"
    );
    assert_eq!(
        def_bindings, live_bindings,
        "deploy/rabbitmq/definitions.json bindings differ from the code's declare"
    );
    let exchanges: BTreeSet<&str> = defs["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        exchanges,
        ["mediafleet.dlx", "mediafleet.retry", "mediafleet.work"]
            .into_iter()
            .collect()
    );
}
