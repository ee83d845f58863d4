//! Which pod a process runs in, on Kubernetes: the container id in the
//! process's cgroup path, looked up in this node's pod list, names the pod,
//! its namespace, the container and the workload that made the pod
//! (`k8s.*` resource attributes). The list comes from the API server (the
//! service account's token, only this node's pods) or from a file in the
//! API's `PodList` JSON (`kubectl get pods -o json`, recorded), and is
//! fetched again every [`REFRESH`]; lookups read the last good copy.
//! Without Kubernetes nothing is fetched and nothing changes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use foldhash::HashMap;
use serde::Deserialize;
use thiserror::Error;

/// How often the pod list is fetched again.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Containers remembered at most (a node runs a few hundred pods).
const MAX_CONTAINERS: usize = 20_000;
/// The largest pod list read, in bytes.
const MAX_LIST_BYTES: usize = 64 << 20;
/// Where a pod's service account is mounted.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One container of a pod, as its spans' resource names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodContainer {
    pub pod_name: String,
    pub namespace: String,
    pub pod_uid: String,
    pub container_name: String,
    pub node_name: Option<String>,
    /// The controller that made the pod: (`k8s.deployment.name` or
    /// `k8s.daemonset.name`, ..., its name).
    pub workload: Option<(&'static str, String)>,
    /// The pod's labels (its `team` label names its owners, `owners`).
    pub labels: BTreeMap<String, String>,
}

impl PodContainer {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The service a process of this container is, without an
    /// `OTEL_SERVICE_NAME`: the pod's `app.kubernetes.io/name` label, else
    /// the workload's name (all replicas are one service), else the
    /// container's name.
    pub fn service_name(&self) -> &str {
        self.label("app.kubernetes.io/name")
            .or(self.workload.as_ref().map(|(_, name)| name.as_str()))
            .unwrap_or(&self.container_name)
    }

    /// Its `k8s.*` resource attributes.
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            Some(("k8s.pod.name", self.pod_name.as_str())),
            Some(("k8s.namespace.name", self.namespace.as_str())),
            Some(("k8s.pod.uid", self.pod_uid.as_str())),
            Some(("k8s.container.name", self.container_name.as_str())),
            self.node_name.as_deref().map(|n| ("k8s.node.name", n)),
            self.workload
                .as_ref()
                .map(|(key, name)| (*key, name.as_str())),
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Error)]
pub enum PodListError {
    #[error("not a pod list: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the pod list is larger than {MAX_LIST_BYTES} bytes")]
    TooLarge,
}

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: Metadata,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
struct OwnerReference {
    kind: String,
    name: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    node_name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    /// `containerd://ID`, `cri-o://ID`, `docker://ID`; absent while pending.
    #[serde(rename = "containerID")]
    container_id: Option<String>,
}

/// The containers of a `PodList` (JSON), by container id.
pub fn parse_pod_list(json: &[u8]) -> Result<HashMap<String, Arc<PodContainer>>, PodListError> {
    if json.len() > MAX_LIST_BYTES {
        return Err(PodListError::TooLarge);
    }
    let list: PodList = serde_json::from_slice(json)?;
    let mut containers = HashMap::default();
    for pod in list.items {
        let workload = workload(&pod.metadata);
        let statuses = pod
            .status
            .container_statuses
            .iter()
            .chain(&pod.status.init_container_statuses)
            .chain(&pod.status.ephemeral_container_statuses);
        for status in statuses {
            let Some(id) = status
                .container_id
                .as_deref()
                .and_then(|id| id.split_once("://"))
                .map(|(_, id)| id)
                .filter(|id| !id.is_empty())
            else {
                continue;
            };
            if containers.len() >= MAX_CONTAINERS {
                break;
            }
            containers.insert(
                id.to_string(),
                Arc::new(PodContainer {
                    pod_name: pod.metadata.name.clone(),
                    namespace: pod.metadata.namespace.clone(),
                    pod_uid: pod.metadata.uid.clone(),
                    container_name: status.name.clone(),
                    node_name: pod.spec.node_name.clone(),
                    workload: workload.clone(),
                    labels: pod.metadata.labels.clone(),
                }),
            );
        }
    }
    Ok(containers)
}

/// The controller that made the pod. A ReplicaSet made by a Deployment is
/// named after it plus the pod template's hash, which the pod carries as
/// its `pod-template-hash` label: the Deployment is the name without it.
fn workload(metadata: &Metadata) -> Option<(&'static str, String)> {
    let owner = metadata.owner_references.iter().find(|o| o.controller)?;
    Some(match owner.kind.as_str() {
        "ReplicaSet" => match metadata
            .labels
            .get("pod-template-hash")
            .and_then(|hash| owner.name.strip_suffix(hash.as_str()))
            .and_then(|name| name.strip_suffix('-'))
        {
            Some(deployment) => ("k8s.deployment.name", deployment.to_string()),
            None => ("k8s.replicaset.name", owner.name.clone()),
        },
        "DaemonSet" => ("k8s.daemonset.name", owner.name.clone()),
        "StatefulSet" => ("k8s.statefulset.name", owner.name.clone()),
        "Job" => ("k8s.job.name", owner.name.clone()),
        _ => return None,
    })
}

/// Where the pod list comes from.
#[derive(Clone, Debug)]
pub enum PodSource {
    /// The API server, as this pod's service account; this node's pods.
    ApiServer {
        url: String,
        node_name: String,
        token_file: PathBuf,
        ca_file: PathBuf,
    },
    /// A `PodList` JSON file, read again at each refresh.
    File(PathBuf),
}

impl PodSource {
    /// The API server when running in a pod with a service account
    /// (`KUBERNETES_SERVICE_HOST`, the mounted token) and a node name
    /// (`K8S_NODE_NAME`, which the DaemonSet sets, else the host name).
    pub fn in_cluster() -> Option<PodSource> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let account = Path::new(SERVICE_ACCOUNT);
        if !account.join("token").exists() {
            return None;
        }
        let node_name = std::env::var("K8S_NODE_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })?;
        // An IPv6 address needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Some(PodSource::ApiServer {
            url: format!("https://{host}:{port}"),
            node_name,
            token_file: account.join("token"),
            ca_file: account.join("ca.crt"),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            PodSource::ApiServer { url, node_name, .. } => {
                format!("the API server {url} (pods of node {node_name})")
            }
            PodSource::File(path) => format!("the pod list file {}", path.display()),
        }
    }
}

/// The last pod list read, shared by the refresher and the process cache.
#[derive(Debug, Default)]
pub struct Pods {
    containers: RwLock<HashMap<String, Arc<PodContainer>>>,
    /// Bumped at each successful refresh: a process read before its pod
    /// was listed is looked up again after the next one.
    generation: AtomicU64,
}

impl Pods {
    pub fn container(&self, container_id: &str) -> Option<Arc<PodContainer>> {
        self.containers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(container_id)
            .cloned()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn replace(&self, containers: HashMap<String, Arc<PodContainer>>) {
        *self.containers.write().unwrap_or_else(|e| e.into_inner()) = containers;
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the list once (so the first spans have their pods), then keeps
    /// it fresh in a task. A failure is logged once until it recovers; the
    /// last good list stays in use.
    pub async fn start(source: PodSource) -> anyhow::Result<Arc<Pods>> {
        let pods = Arc::new(Pods::default());
        let client = client(&source)?;
        match fetch(&source, &client).await {
            Ok(containers) => {
                tracing::info!(
                    "Kubernetes: {} containers listed by {}",
                    containers.len(),
                    source.describe()
                );
                pods.replace(containers);
            }
            Err(e) => tracing::warn!(
                "Kubernetes: cannot list pods from {}: {e} (spans have no k8s.* \
                 attributes until it works; retrying every {} s)",
                source.describe(),
                REFRESH.as_secs()
            ),
        }
        let refreshed = pods.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(REFRESH).await;
                match fetch(&source, &client).await {
                    Ok(containers) => {
                        if failing {
                            tracing::info!("Kubernetes: listing pods works again");
                        }
                        failing = false;
                        refreshed.replace(containers);
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(
                            "Kubernetes: cannot list pods from {}: {e} (keeping the last list)",
                            source.describe()
                        );
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(pods)
    }
}

fn client(source: &PodSource) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let PodSource::ApiServer { ca_file, .. } = source {
        let pem = std::fs::read(ca_file).map_err(|e| {
            anyhow::anyhow!("cannot read the cluster's CA {}: {e}", ca_file.display())
        })?;
        builder = crate::http_client::trusting_only(builder, &pem)
            .map_err(|e| anyhow::anyhow!("the cluster's CA {}: {e}", ca_file.display()))?;
    }
    Ok(builder.build()?)
}

async fn fetch(
    source: &PodSource,
    client: &reqwest::Client,
) -> anyhow::Result<HashMap<String, Arc<PodContainer>>> {
    let body = match source {
        PodSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        PodSource::ApiServer {
            url,
            node_name,
            token_file,
            ..
        } => {
            // Read at each refresh: projected tokens are rotated.
            let token = tokio::fs::read_to_string(token_file).await?;
            let response = client
                .get(format!("{url}/api/v1/pods"))
                .query(&[("fieldSelector", format!("spec.nodeName={node_name}"))])
                .bearer_auth(token.trim())
                .send()
                .await?;
            let status = response.status();
            if !status.is_success() {
                anyhow::bail!(
                    "HTTP {status}{}",
                    if status.as_u16() == 403 {
                        " (the service account needs get/list on pods: see deploy/)"
                    } else {
                        ""
                    }
                );
            }
            response.bytes().await?.to_vec()
        }
    };
    Ok(parse_pod_list(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_WEB: &str = "4f1c2a7e9b3d5f6a8c0e1b2d3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a";
    const ID_SIDECAR: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const ID_INIT: &str = "9e8d7c6b5a4938271605f4e3d2c1b0a99e8d7c6b5a4938271605f4e3d2c1b0a9";
    const ID_AGENT: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    /// The shape `kubectl get pods -o json` prints, trimmed.
    fn pod_list() -> String {
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[
  {{"metadata":{{"name":"checkout-7d9f8b6c5-x2x4z","namespace":"shop","uid":"a1b2",
     "labels":{{"app":"checkout","pod-template-hash":"7d9f8b6c5","team":"payments"}},
     "ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"checkout-7d9f8b6c5","controller":true}}]}},
   "spec":{{"nodeName":"node-1","containers":[{{"name":"web"}},{{"name":"envoy"}}]}},
   "status":{{"phase":"Running",
     "initContainerStatuses":[{{"name":"migrate","containerID":"containerd://{ID_INIT}"}}],
     "containerStatuses":[
       {{"name":"web","containerID":"containerd://{ID_WEB}","ready":true}},
       {{"name":"envoy","containerID":"cri-o://{ID_SIDECAR}"}}]}}}},
  {{"metadata":{{"name":"tracer-agent-5kq2p","namespace":"tracer-agent","uid":"c3d4",
     "ownerReferences":[{{"kind":"DaemonSet","name":"tracer-agent","controller":true}}]}},
   "spec":{{"nodeName":"node-1"}},
   "status":{{"containerStatuses":[{{"name":"tracer-agent","containerID":"docker://{ID_AGENT}"}}]}}}},
  {{"metadata":{{"name":"pending","namespace":"shop"}},
   "status":{{"containerStatuses":[{{"name":"web"}}]}}}}
]}}"#
        )
    }

    #[test]
    fn containers_are_found_by_id_with_their_pod() {
        let containers = parse_pod_list(pod_list().as_bytes()).unwrap();
        assert_eq!(containers.len(), 4, "the pending container has no id yet");
        let web = &containers[ID_WEB];
        assert_eq!(
            **web,
            PodContainer {
                pod_name: "checkout-7d9f8b6c5-x2x4z".into(),
                namespace: "shop".into(),
                pod_uid: "a1b2".into(),
                container_name: "web".into(),
                node_name: Some("node-1".into()),
                workload: Some(("k8s.deployment.name", "checkout".into())),
                labels: [
                    ("app", "checkout"),
                    ("pod-template-hash", "7d9f8b6c5"),
                    ("team", "payments"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            }
        );
        assert_eq!(web.service_name(), "checkout", "the Deployment");
        assert_eq!(containers[ID_AGENT].service_name(), "tracer-agent");
        assert_eq!(containers[ID_SIDECAR].container_name, "envoy");
        assert_eq!(containers[ID_INIT].container_name, "migrate");
        assert_eq!(
            containers[ID_AGENT].workload,
            Some(("k8s.daemonset.name", "tracer-agent".into()))
        );
        let attributes: Vec<_> = web.attributes().collect();
        assert!(attributes.contains(&("k8s.deployment.name", "checkout")));
        assert!(attributes.contains(&("k8s.node.name", "node-1")));
    }

    #[test]
    fn a_replicaset_of_its_own_is_named_as_one() {
        let metadata = Metadata {
            name: "batch-abcde".into(),
            namespace: "jobs".into(),
            uid: String::new(),
            labels: Default::default(),
            owner_references: vec![OwnerReference {
                kind: "ReplicaSet".into(),
                name: "batch".into(),
                controller: true,
            }],
        };
        assert_eq!(
            workload(&metadata),
            Some(("k8s.replicaset.name", "batch".into()))
        );
    }

    #[test]
    fn anything_else_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"items\":[{}]}",
            b"{\"items\":[{\"metadata\":{\"name\":1}}]}",
            b"\xff\xfe",
        ] {
            assert!(parse_pod_list(bad).is_err(), "{bad:?}");
        }
        assert!(parse_pod_list(b"{}").unwrap().is_empty());
    }

    /// A CA certificate, standing in for the cluster's (the test server
    /// below speaks plain HTTP).
    const CLUSTER_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBgTCCASegAwIBAgIUOxQw4JmGiuJoV6V8YmAclVdjbKAwCgYIKoZIzj0EAwIw\nFTETMBEGA1UEAwwKZml4dHVyZS1jYTAgFw0yNjEyMDIwNzQwNTZaGA8yMTI2MTEw\nODA3NDA1NlowFTETMBEGA1UEAwwKZml4dHVyZS1jYTBZMBMGByqGSM49AgEGCCqG\nSM49AwEHA0IABJeXg1NmjgF54ncsmvi76Rwq7epTggKyGzm7zY9MQU2zCzKrOD0L\nW8LbaJ7d0S0FK4uAPDQuqWija3FS9MKLwCujUzBRMB0GA1UdDgQWBBSOSQz30gFd\nuWsXri+lFU6oxLTOmDAfBgNVHSMEGDAWgBSOSQz30gFduWsXri+lFU6oxLTOmDAP\nBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFAXHh613295vUpihP3W\nGckknSN+q7PJcPu9lQq/hWvgAiEAgBQjDZBYPndtmYj7WzjXLdLfPAdISkIsfCfc\n9SU+l90=\n-----END CERTIFICATE-----\n";

    /// The API server is asked for this node's pods with the token read
    /// from its file; a refusal says which permission is missing.
    #[tokio::test]
    async fn the_api_server_is_asked_for_this_nodes_pods() {
        use axum::{Router, http::HeaderMap, http::StatusCode, routing::get};
        let dir = std::env::temp_dir().join(format!("service-account-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "tok3n\n").unwrap();
        std::fs::write(dir.join("ca.crt"), CLUSTER_CA).unwrap();
        let list = pod_list();
        let app = Router::new().route(
            "/api/v1/pods",
            get(
                move |headers: HeaderMap, query: axum::extract::RawQuery| async move {
                    let authorized = headers["authorization"] == "Bearer tok3n";
                    let this_node =
                        query.0.as_deref() == Some("fieldSelector=spec.nodeName%3Dnode-1");
                    match (authorized, this_node) {
                        (true, true) => (StatusCode::OK, list.clone()),
                        (true, false) => (StatusCode::BAD_REQUEST, String::new()),
                        (false, _) => (StatusCode::FORBIDDEN, String::new()),
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let source = |node: &str| PodSource::ApiServer {
            url: format!("http://{addr}"),
            node_name: node.into(),
            token_file: dir.join("token"),
            ca_file: dir.join("ca.crt"),
        };
        let client = client(&source("node-1")).unwrap();
        let containers = fetch(&source("node-1"), &client).await.unwrap();
        assert_eq!(containers[ID_WEB].pod_name, "checkout-7d9f8b6c5-x2x4z");
        assert!(fetch(&source("node-2"), &client).await.is_err());
        std::fs::write(dir.join("token"), "stale").unwrap();
        let err = fetch(&source("node-1"), &client)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("403") && err.contains("get/list on pods"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_pod_list_file_is_read_at_start() {
        let path = std::env::temp_dir().join(format!("pods-{}.json", std::process::id()));
        std::fs::write(&path, pod_list()).unwrap();
        let pods = Pods::start(PodSource::File(path.clone())).await.unwrap();
        assert_eq!(pods.generation(), 1);
        assert_eq!(pods.container(ID_WEB).unwrap().namespace, "shop");
        assert!(pods.container("unknown").is_none());
        std::fs::remove_file(&path).unwrap();
    }
}
