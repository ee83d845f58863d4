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
//! ```

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
}

/// A team and what it owns.
#[derive(Debug)]
struct Rule {
    team: String,
    services: GlobSet,
    cgroups: GlobSet,
    namespaces: GlobSet,
    workloads: GlobSet,
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
        Self::parse(&text).map_err(|reason| OwnersError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let file: OwnersFile = toml::from_str(text).map_err(|e| {
            // One line: the message and where, without toml's source excerpt.
            let line = e
                .span()
                .map_or(0, |span| text[..span.start].lines().count().max(1));
            format!("line {line}: {}", e.message().trim())
        })?;
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
                    })
            })
            .map(|rule| rule.team.clone())
            .or_else(|| pod.and_then(|pod| pod.team_label.clone()))
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
             [[team]]\nname = \"web\"\nworkloads = [\"storefront\"]\n",
        )
        .expect("valid");
        let pod = |namespace: &str, workload: &str, label: Option<&str>| PodContainer {
            pod_name: "p".into(),
            namespace: namespace.into(),
            pod_uid: "u".into(),
            container_name: "c".into(),
            node_name: None,
            workload: Some(("k8s.deployment.name", workload.into())),
            team_label: label.map(Into::into),
            app_label: None,
        };
        let team = |pod: &PodContainer| owners.team("svc", "", Some(pod), Some("team=env"));
        assert_eq!(team(&pod("pay-eu", "api", None)), "payments");
        assert_eq!(team(&pod("shop", "storefront", None)), "web");
        assert_eq!(team(&pod("shop", "cart", Some("carts"))), "carts");
        assert_eq!(team(&pod("shop", "cart", None)), "env");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = Owners::parse("[[team]]\nname = \"x\"\nservices = [\"a[\"]\n").unwrap_err();
        assert!(err.contains("team x") && err.contains("a["), "{err}");
        let err = Owners::parse("[[team]]\nservices = [\"a\"]\n").unwrap_err();
        assert!(err.contains("name"), "{err}");
        let err = Owners::parse("[[team]]\nname = \"x\"\nlabels = []\n").unwrap_err();
        assert!(err.contains("labels"), "{err}");
        let err = Owners::load(Path::new("/nonexistent/owners.toml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/owners.toml"),
            "{err}"
        );
    }
}
