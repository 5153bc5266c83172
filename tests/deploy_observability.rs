//! deploy/prometheus/alerts.yaml and deploy/grafana/mediafleet.json are checked against the code: the rule file
//! has the shape Prometheus loads, every rule and panel expression parses as PromQL, the latency thresholds are
//! the configured defaults, each runbook link lands on a section of docs/operations.md, and every metric the
//! rules, the dashboard and the docs' metrics table name is exposed by a real `mediafleet serve` that has
//! processed one good and one corrupt upload; and every metric it exposes is in that table. A renamed metric,
//! an undocumented one or a typo in an expression fails here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mediafleet::scale::metrics;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// The classes the rules must cover: the standard four and the GPU video class.
const CLASSES: [&str; 5] = ["image", "video", "video-gpu", "cache", "notify"];

/// Alerts issue 15 asks for; more are welcome.
const REQUIRED_ALERTS: [&str; 8] = [
    "MediafleetOldestMessageOverTarget",
    "MediafleetDeadLettersGrowing",
    "MediafleetNoWorkersForReadyWork",
    "MediafleetOutboxLagging",
    "MediafleetRelayPublishFailing",
    "MediafleetWorkerHeartbeatStale",
    "MediafleetJobFailureRatioHigh",
    "MediafleetHttp5xxRatioHigh",
];

/// Metrics in the docs' table that a single `serve` cannot show, and why.
const NOT_ON_SERVE: [(&str, &str); 4] = [
    (
        "mediafleet_fleet_worker_seconds_total",
        "only `fleet` runs worker processes",
    ),
    (
        "mediafleet_worker_startup_seconds",
        "only `fleet` measures start-up",
    ),
    (
        "mediafleet_receive_failures_total",
        "labelled by class; no series before a receive fails",
    ),
    (
        "mediafleet_cache_not_cached_total",
        "needs a cache and an object over its item size",
    ),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A histogram's series (`_bucket`, `_sum`, `_count`) belong to the family without the suffix.
fn family(name: &str) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
        .to_owned()
}

/// What one walk over an expression found.
#[derive(Default)]
struct Found {
    /// Metric families selected.
    metrics: BTreeSet<String>,
    /// `class` values a selector matches (`=` or an alternation under `=~`), per metric family.
    classes: BTreeMap<String, BTreeSet<String>>,
}

impl ExprVisitor for Found {
    type Error = String;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        let vs = match e {
            Expr::VectorSelector(v) => v,
            Expr::MatrixSelector(m) => &m.vs,
            _ => return Ok(true),
        };
        let name = vs
            .name
            .as_deref()
            .ok_or_else(|| format!("selector {vs} has no metric name"))?;
        let fam = family(name);
        for m in vs.matchers.matchers.iter().filter(|m| m.name == "class") {
            let values: Vec<&str> = match &m.op {
                MatchOp::Equal => vec![m.value.as_str()],
                MatchOp::Re(_) => m.value.split('|').collect(),
                _ => continue,
            };
            let set = self.classes.entry(fam.clone()).or_default();
            set.extend(values.into_iter().map(str::to_owned));
        }
        self.metrics.insert(fam);
        Ok(true)
    }
}

/// Parses `expr` (from `what`) and walks it; panics with the parser's message.
fn walk(what: &str, expr: &str) -> (Expr, Found) {
    let ast = parser::parse(expr).unwrap_or_else(|e| panic!("{what}: `{expr}` is not PromQL: {e}"));
    let mut found = Found::default();
    walk_expr(&mut found, &ast).unwrap_or_else(|e| panic!("{what}: {e}"));
    (ast, found)
}

/// A dashboard expression with Grafana's variables replaced by values PromQL accepts.
fn grafana_expr(expr: &str) -> String {
    [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("${class}", "image"),
        ("$class", "image"),
    ]
    .iter()
    .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
}

/// GitHub's anchor of a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Every rule of alerts.yaml, with its group name.
fn rules() -> Vec<(String, Yaml)> {
    let doc: Yaml = serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yaml")).unwrap();
    let groups = doc["groups"].as_sequence().expect("`groups` is a list");
    assert!(!groups.is_empty(), "no rule groups");
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for g in groups {
        let name = g["name"]
            .as_str()
            .expect("every group has a name")
            .to_owned();
        assert!(names.insert(name.clone()), "group {name} appears twice");
        let rules = g["rules"].as_sequence().expect("`rules` is a list");
        assert!(!rules.is_empty(), "group {name} has no rules");
        out.extend(rules.iter().map(|r| (name.clone(), r.clone())));
    }
    out
}

fn rule_str<'a>(r: &'a Yaml, path: &[&str]) -> &'a str {
    path.iter()
        .fold(r, |v, k| &v[*k])
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| panic!("rule {:?}: no {}", r["alert"], path.join(".")))
}

#[test]
fn alert_rules_are_well_formed_and_follow_the_configured_target_latencies() {
    let docs = anchors(&read("docs/operations.md"));
    let defaults = {
        let mut file = mediafleet::config::ScalingFile::default();
        file.classes.insert("video-gpu".into(), Default::default());
        file.resolve(&BTreeMap::new()).classes
    };
    let mut alerts = BTreeSet::new();
    let mut latency_classes = BTreeSet::new();
    for (group, r) in rules() {
        let keys: BTreeSet<&str> = r
            .as_mapping()
            .expect("a rule is a mapping")
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        let allowed = BTreeSet::from(["alert", "expr", "for", "labels", "annotations"]);
        assert!(
            keys.is_subset(&allowed),
            "{group}: unknown keys in {keys:?}"
        );
        let alert = rule_str(&r, &["alert"]);
        assert!(
            alert.starts_with("Mediafleet") && alert.chars().all(|c| c.is_ascii_alphanumeric()),
            "{alert}: alert names are CamelCase and start with Mediafleet"
        );
        alerts.insert(alert.to_owned());
        if let Some(f) = r["for"].as_str() {
            promql_parser::util::parse_duration(f)
                .unwrap_or_else(|e| panic!("{alert}: for {f:?}: {e}"));
        }
        let severity = rule_str(&r, &["labels", "severity"]);
        assert!(
            ["warning", "critical"].contains(&severity),
            "{alert}: severity {severity}"
        );
        rule_str(&r, &["annotations", "summary"]);
        rule_str(&r, &["annotations", "description"]);
        let runbook = rule_str(&r, &["annotations", "runbook_url"]);
        let anchor = runbook
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{alert}: runbook {runbook} is not in docs/operations.md"));
        assert!(
            docs.contains(anchor),
            "{alert}: docs/operations.md has no heading for #{anchor}"
        );
        let expr = rule_str(&r, &["expr"]);
        let (ast, found) = walk(alert, expr);
        assert!(!found.metrics.is_empty(), "{alert}: selects no metric");
        if let Some(classes) = found.classes.get("mediafleet_queue_oldest_age_seconds") {
            // `max by (class) (oldest_age{class…}) > threshold`, the threshold being the class's default.
            let Expr::Binary(b) = &ast else {
                panic!("{alert}: expected `… > threshold`, got {expr}")
            };
            let Expr::NumberLiteral(n) = b.rhs.as_ref() else {
                panic!("{alert}: the threshold is not a number: {expr}")
            };
            assert_eq!(b.op.to_string(), ">", "{alert}: {expr}");
            for class in classes {
                let target = defaults[class.as_str()].target_latency.as_secs_f64();
                assert_eq!(
                    n.val, target,
                    "{alert}: {class}'s threshold is not its target latency"
                );
                assert!(
                    latency_classes.insert(class.clone()),
                    "{class} has two latency rules"
                );
            }
        }
    }
    let missing: Vec<_> = REQUIRED_ALERTS
        .iter()
        .filter(|a| !alerts.contains(**a))
        .collect();
    assert!(missing.is_empty(), "alerts missing: {missing:?}");
    let uncovered: Vec<_> = CLASSES
        .iter()
        .filter(|c| !latency_classes.contains(**c))
        .collect();
    assert!(uncovered.is_empty(), "no latency rule for {uncovered:?}");
}

fn dashboard() -> Json {
    serde_json::from_str(&read("deploy/grafana/mediafleet.json")).unwrap()
}

/// Every (panel title, expression) of the dashboard, variables' queries included.
fn dashboard_exprs(d: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((
                p["title"].as_str().unwrap_or("?").to_owned(),
                expr.to_owned(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        let q = v["query"]["query"].as_str().or(v["definition"].as_str());
        if let Some(inner) = q.and_then(|q| q.strip_prefix("label_values(")) {
            let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
            out.push((format!("variable {}", v["name"]), selector.to_owned()));
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed_and_every_query_parses() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("class")["type"], "query");
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id twice: {p}");
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            if expr.contains("class") && !expr.contains("vector(") {
                assert!(expr.contains("$class"), "{title}: ignores $class: {expr}");
            }
        }
    }
    let mut named = BTreeSet::new();
    for (title, expr) in dashboard_exprs(&d) {
        named.extend(walk(&title, &grafana_expr(&expr)).1.metrics);
    }
    let mut wanted: BTreeSet<String> = metrics::GAUGES.iter().map(|s| s.to_string()).collect();
    for name in [
        metrics::JOBS_TOTAL,
        metrics::JOB_DURATION,
        metrics::HTTP_REQUESTS,
        metrics::HTTP_DURATION,
        metrics::OUTBOX_LAG,
        metrics::HEARTBEAT_AGE,
        metrics::UPLOAD_BYTES,
        metrics::RENDITION_BYTES,
    ] {
        wanted.insert(name.to_owned());
    }
    let missing: Vec<_> = wanted.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "the dashboard shows nothing of {missing:?}"
    );
}

/// The metric names in the first column of the table under `## Metrics` in docs/operations.md.
fn documented_metrics() -> BTreeSet<String> {
    let docs = read("docs/operations.md");
    let section = docs
        .split("\n## Metrics\n")
        .nth(1)
        .expect("docs/operations.md has a `## Metrics` section");
    let section = section.split("\n## ").next().unwrap();
    let mut out = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `mediafleet_")) {
        let first = row.split('|').nth(1).unwrap();
        out.extend(
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|n| n.starts_with("mediafleet_"))
                .map(str::to_owned),
        );
    }
    assert!(
        out.len() > 10,
        "the metrics table has too few rows: {out:?}"
    );
    out
}

/// The families a Prometheus text exposition declares with `# TYPE`.
fn typed(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[tokio::test]
async fn every_metric_the_rules_dashboard_and_docs_name_is_exposed_by_serve() {
    let mut named: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (_, r) in rules() {
        let alert = rule_str(&r, &["alert"]).to_owned();
        for name in walk(&alert, rule_str(&r, &["expr"])).1.metrics {
            named.entry(name).or_default().insert("alerts.yaml");
        }
    }
    for (title, expr) in dashboard_exprs(&dashboard()) {
        for name in walk(&title, &grafana_expr(&expr)).1.metrics {
            named.entry(name).or_default().insert("mediafleet.json");
        }
    }
    let documented = documented_metrics();
    for name in documented.iter().cloned() {
        if !NOT_ON_SERVE.iter().any(|(n, _)| *n == name) {
            named.entry(name).or_default().insert("docs/operations.md");
        }
    }

    let s = serve_with("").await;
    let mut uploaded = 0u64;
    for (file, status) in [("photo.jpg", "ready"), ("truncated.jpg", "failed")] {
        let (code, v) = upload(&s.base, &fixture(file), file).await;
        assert_eq!(code, 202, "{file}: {v}");
        uploaded += std::fs::metadata(fixture(file)).unwrap().len();
        let media = wait_final(&s.base, v["id"].as_str().unwrap(), Duration::from_secs(60)).await;
        assert_eq!(media["status"], status, "{file}: {media}");
    }
    // Gauges set by a poll (the scaler's, every `[scaling] poll_interval`, 5 s) may lag the jobs by one poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (text, exposed) = loop {
        let r = reqwest::get(format!("{}/metrics", s.base)).await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let exposed = typed(&text);
        if named.keys().all(|n| exposed.contains(n)) || std::time::Instant::now() > deadline {
            break (text, exposed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let missing: Vec<String> = named
        .iter()
        .filter(|(name, _)| !exposed.contains(*name))
        .map(|(name, by)| {
            format!(
                "{name} (named in {})",
                by.iter().copied().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} metric(s) named by the rules, the dashboard or the docs are not exposed by `serve`:\n  {}\n\
         exposed: {exposed:?}\n(not expected on serve: {NOT_ON_SERVE:?})",
        missing.len(),
        missing.join("\n  ")
    );
    let undocumented: Vec<_> = exposed
        .iter()
        .filter(|n| n.starts_with("mediafleet_") && !documented.contains(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in the metrics table of docs/operations.md: {undocumented:?}"
    );
    assert_eq!(
        sample(&text, "mediafleet_upload_bytes_total"),
        Some(uploaded as f64),
        "both originals counted"
    );
    assert!(
        sample(&text, "mediafleet_rendition_bytes_total").is_some_and(|b| b > 0.0),
        "renditions of the good upload counted"
    );
}
