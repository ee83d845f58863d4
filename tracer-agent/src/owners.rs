//! Which team owns a service, for the `team` resource attribute and the
//! duration metrics' `team` label: the first rule of the `--owners` file
//! that matches the process, else on Kubernetes its pod's `team` label, else
//! its `OTEL_RESOURCE_ATTRIBUTES` (`team`, else `service.namespace`), else
//! `unowned`.
//!
//! The file is TOML, one `[[team]]` table per team:
//!
//! ```toml
//! [[team]]
//! name = "payments"
//! services = ["payment*", "ledger"]   # service.name globs
//! cgroups = ["*/payments.slice/*"]    # cgroup path globs (containers, units)
//! namespaces = ["payments-*"]         # Kubernetes namespace globs
//! workloads = ["checkout"]            # Deployment, DaemonSet, ... name globs
//! pod_labels = { "app.kubernetes.io/part-of" = "pay*" }  # all must match
//! ```
//!
//! or the same in YAML (a `.yaml`/`.yml` file): `team:` a list of tables.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use thiserror::Error;

use crate::kubernetes::PodContainer;

/// The team of a service no rule or attribute names.
pub const UNOWNED: &str = "unowned";

#[derive(Debug, Error)]
pub enum OwnersError {
    #[error("cannot read the owners file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the owners file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnersFile {
    #[serde(default)]
    team: Vec<TeamRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamRule {
    name: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    cgroups: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    workloads: Vec<String>,
    /// Pod label → value glob; a pod matches when it has all of them.
    #[serde(default)]
    pod_labels: std::collections::BTreeMap<String, String>,
}

/// A team and what it owns.
#[derive(Debug)]
struct Rule {
    team: String,
    services: GlobSet,
    cgroups: GlobSet,
    namespaces: GlobSet,
    workloads: GlobSet,
    pod_labels: Vec<(String, globset::GlobMatcher)>,
}

/// The ownership rules, in the file's order.
#[derive(Debug, Default)]
pub struct Owners {
    rules: Vec<Rule>,
}

impl Owners {
    pub fn load(path: &Path) -> Result<Self, OwnersError> {
        let text = std::fs::read_to_string(path).map_err(|source| OwnersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let parsed = if yaml {
            Self::parse_yaml(&text)
        } else {
            Self::parse(&text)
        };
        parsed.map_err(|reason| OwnersError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn parse_yaml(text: &str) -> Result<Self, String> {
        // An empty document is no rules, as an empty TOML file is.
        if text.trim().is_empty() {
            return Ok(Owners::default());
        }
        let file: OwnersFile = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(at) => format!("line {}: {e}", at.line()),
            None => e.to_string(),
        })?;
        Self::from_file(file)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let file: OwnersFile = toml::from_str(text).map_err(|e| {
            // One line: the message and where, without toml's source excerpt.
            let line = e
                .span()
                .map_or(0, |span| text[..span.start].lines().count().max(1));
            format!("line {line}: {}", e.message().trim())
        })?;
        Self::from_file(file)
    }

    fn from_file(file: OwnersFile) -> Result<Self, String> {
        let globs = |team: &str, patterns: &[String]| {
            let mut set = GlobSetBuilder::new();
            for pattern in patterns {
                let glob = Glob::new(pattern)
                    .map_err(|e| format!("team {team}: pattern {pattern:?}: {e}"))?;
                set.add(glob);
            }
            set.build().map_err(|e| format!("team {team}: {e}"))
        };
        let rules = file
            .team
            .into_iter()
            .map(|rule| {
                if rule.name.trim().is_empty() {
                    return Err("a [[team]] has an empty name".to_string());
                }
                Ok(Rule {
                    services: globs(&rule.name, &rule.services)?,
                    cgroups: globs(&rule.name, &rule.cgroups)?,
                    namespaces: globs(&rule.name, &rule.namespaces)?,
                    workloads: globs(&rule.name, &rule.workloads)?,
                    pod_labels: rule
                        .pod_labels
                        .iter()
                        .map(|(label, pattern)| {
                            Glob::new(pattern)
                                .map(|glob| (label.clone(), glob.compile_matcher()))
                                .map_err(|e| {
                                    format!(
                                        "team {}: label {label:?} pattern {pattern:?}: {e}",
                                        rule.name
                                    )
                                })
                        })
                        .collect::<Result<_, _>>()?,
                    team: rule.name,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Owners { rules })
    }

    /// The team of the process named `service`, in cgroup `cgroup` (its
    /// `/proc/PID/cgroup` text) and on Kubernetes in `pod`, with
    /// `resource_attributes` (the value of its `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn team(
        &self,
        service: &str,
        cgroup: &str,
        pod: Option<&PodContainer>,
        resource_attributes: Option<&str>,
    ) -> String {
        let cgroup_paths = || cgroup.lines().filter_map(|l| l.splitn(3, ':').nth(2));
        self.rules
            .iter()
            .find(|rule| {
                rule.services.is_match(service)
                    || cgroup_paths().any(|path| rule.cgroups.is_match(path))
                    || pod.is_some_and(|pod| {
                        rule.namespaces.is_match(&pod.namespace)
                            || pod
                                .workload
                                .as_ref()
                                .is_some_and(|(_, name)| rule.workloads.is_match(name))
                            || (!rule.pod_labels.is_empty()
                                && rule.pod_labels.iter().all(|(label, value)| {
                                    pod.label(label).is_some_and(|v| value.is_match(v))
                                }))
                    })
            })
            .map(|rule| rule.team.clone())
            .or_else(|| pod.and_then(|pod| pod.label("team")).map(str::to_string))
            .or_else(|| resource_attributes.and_then(team_attribute))
            .unwrap_or_else(|| UNOWNED.to_string())
    }
}

/// `team`, else `service.namespace`, from an `OTEL_RESOURCE_ATTRIBUTES`
/// value (`key=value` pairs separated by commas, values percent-encoded).
fn team_attribute(attributes: &str) -> Option<String> {
    let value = |wanted: &str| {
        attributes.split(',').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == wanted)
                .then(|| percent_decoded(value.trim()))
                .filter(|v| !v.is_empty())
        })
    };
    value("team").or_else(|| value("service.namespace"))
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[team]]
        name = "payments"
        services = ["payment*", "ledger"]

        [[team]]
        name = "storefront"
        cgroups = ["/system.slice/shop-*.service"]
        services = ["*"]
    "#;

    #[test]
    fn the_first_matching_rule_names_the_team() {
        let owners = Owners::parse(FILE).expect("valid");
        assert_eq!(owners.team("payment-api", "", None, None), "payments");
        assert_eq!(
            owners.team("ledger", "", None, Some("team=other")),
            "payments"
        );
        assert_eq!(owners.team("cart", "", None, None), "storefront");
        let none = Owners::parse("").expect("an empty file is valid");
        assert_eq!(none.team("cart", "", None, None), UNOWNED);
    }

    #[test]
    fn cgroup_paths_match() {
        let owners = Owners::parse(
            "[[team]]\nname = \"shop\"\ncgroups = [\"/system.slice/shop-*.service\"]\n",
        )
        .expect("valid");
        let cgroup = "0::/system.slice/shop-web.service\n";
        assert_eq!(owners.team("python3.11", cgroup, None, None), "shop");
        assert_eq!(
            owners.team("python3.11", "0::/user.slice\n", None, None),
            UNOWNED
        );
    }

    #[test]
    fn resource_attributes_name_the_team_without_a_rule() {
        let owners = Owners::default();
        let team = |attributes| owners.team("svc", "", None, Some(attributes));
        assert_eq!(
            team("deployment.environment=prod,team=check%20out"),
            "check out"
        );
        assert_eq!(team("service.namespace=shop"), "shop");
        assert_eq!(team("service.namespace=shop, team=ops"), "ops");
        assert_eq!(team("team="), UNOWNED);
        assert_eq!(team("garbage"), UNOWNED);
    }

    #[test]
    fn kubernetes_namespaces_workloads_and_team_labels() {
        let owners = Owners::parse(
            "[[team]]\nname = \"payments\"\nnamespaces = [\"pay-*\"]\n\
             [[team]]\nname = \"web\"\nworkloads = [\"storefront\"]\n\
             [[team]]\nname = \"platform\"\npod_labels = { team = \"infra*\", tier = \"core\" }\n",
        )
        .expect("valid");
        let pod = |namespace: &str, workload: &str, label: Option<&str>| PodContainer {
            pod_name: "p".into(),
            namespace: namespace.into(),
            pod_uid: "u".into(),
            container_name: "c".into(),
            node_name: None,
            workload: Some(("k8s.deployment.name", workload.into())),
            labels: label
                .map(|team| [("team".to_string(), team.to_string())].into())
                .unwrap_or_default(),
        };
        let team = |pod: &PodContainer| owners.team("svc", "", Some(pod), Some("team=env"));
        assert_eq!(team(&pod("pay-eu", "api", None)), "payments");
        assert_eq!(team(&pod("shop", "storefront", None)), "web");
        assert_eq!(team(&pod("shop", "cart", Some("carts"))), "carts");
        assert_eq!(team(&pod("shop", "cart", None)), "env");
        // Every label of the rule must match.
        let mut core = pod("ops", "dns", Some("infra-net"));
        assert_eq!(team(&core), "infra-net", "no tier label: the team label");
        core.labels.insert("tier".into(), "core".into());
        assert_eq!(team(&core), "platform");
    }

    #[test]
    fn yaml_files_say_the_same() {
        let owners = Owners::parse_yaml(
            "team:\n  - name: payments\n    services: [\"payment*\"]\n    pod_labels:\n      \
             app.kubernetes.io/part-of: \"pay*\"\n",
        )
        .expect("valid");
        assert_eq!(owners.team("payment-api", "", None, None), "payments");
        let err = Owners::parse_yaml("team:\n  - name: x\n    services: 3\n").unwrap_err();
        assert!(err.starts_with("line 3"), "{err}");
        assert!(Owners::parse_yaml("").expect("empty").rules.is_empty());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = Owners::parse("[[team]]\nname = \"x\"\nservices = [\"a[\"]\n").unwrap_err();
        assert!(err.contains("team x") && err.contains("a["), "{err}");
        let err = Owners::parse("[[team]]\nservices = [\"a\"]\n").unwrap_err();
        assert!(err.contains("name"), "{err}");
        let err = Owners::parse("[[team]]\nname = \"x\"\nowners = []\n").unwrap_err();
        assert!(err.contains("owners"), "{err}");
        let err = Owners::load(Path::new("/nonexistent/owners.toml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/owners.toml"),
            "{err}"
        );
    }
}
