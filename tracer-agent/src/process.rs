//! Who a process is, for the span's resource: `service.name` from its
//! `OTEL_SERVICE_NAME`, else on Kubernetes from its pod (`kubernetes`), else
//! a Docker or Podman container's name, else from what it runs (the script or module of an
//! interpreter, the jar or main class of a JVM), else its executable's
//! name; its container, if any, and on Kubernetes the pod it is in
//! (`kubernetes`); its team (`owners`).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use foldhash::HashMap;

use crate::{
    events::{Comm, comm_text},
    kubernetes::{PodContainer, Pods},
    owners::Owners,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub service_name: String,
    pub executable_name: String,
    pub container_id: Option<String>,
    /// Its pod and container on Kubernetes.
    pub pod: Option<Arc<PodContainer>>,
    /// The team that owns it (`owners`).
    pub team: String,
    /// A Go program: its goroutines move between threads, so the thread
    /// that writes a call does not tell which request it is for.
    pub go: bool,
}

/// A resource attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceValue<'a> {
    Str(&'a str),
    Int(i64),
}

impl ProcessInfo {
    /// The span resource's attributes, in the order every exporter writes
    /// them: who the process is, on `host_name`, then its container and pod
    /// when it has them.
    pub fn resource_attributes<'a>(
        &'a self,
        host_name: &'a str,
    ) -> impl Iterator<Item = (&'static str, ResourceValue<'a>)> {
        use ResourceValue::{Int, Str};
        [
            ("service.name", Str(&self.service_name)),
            ("process.pid", Int(i64::from(self.pid))),
            ("process.executable.name", Str(&self.executable_name)),
            ("team", Str(&self.team)),
            ("host.name", Str(host_name)),
            ("telemetry.sdk.name", Str("tracer-agent")),
        ]
        .into_iter()
        .chain(
            self.container_id
                .as_deref()
                .map(|id| ("container.id", Str(id))),
        )
        .chain(
            self.pod
                .iter()
                .flat_map(|pod| pod.attributes())
                .map(|(key, value)| (key, Str(value))),
        )
    }
}

/// Most processes remembered; past this the cache starts over.
const MAX_CACHED: usize = 4096;

/// Process facts read from procfs once per (pid, thread name).
#[derive(Debug)]
pub struct ProcessCache {
    proc_root: PathBuf,
    owners: Owners,
    pods: Option<Arc<Pods>>,
    /// Each with the pod list's generation it was read at.
    entries: HashMap<(u32, Comm), (Arc<ProcessInfo>, u64)>,
}

impl Default for ProcessCache {
    fn default() -> Self {
        Self::new("/proc", Owners::default(), None)
    }
}

impl ProcessCache {
    pub fn new(proc_root: impl Into<PathBuf>, owners: Owners, pods: Option<Arc<Pods>>) -> Self {
        ProcessCache {
            proc_root: proc_root.into(),
            owners,
            pods,
            entries: HashMap::default(),
        }
    }

    /// The process `pid`, whose thread that made the event is named `comm`.
    /// Keying by `comm` too notices a reused pid or an exec. A container
    /// not in the pod list when it was read (a pod just started) is looked
    /// up again once the list was fetched again.
    pub fn get(&mut self, pid: u32, comm: &Comm) -> Arc<ProcessInfo> {
        let generation = self.pods.as_ref().map_or(0, |pods| pods.generation());
        if let Some((info, read_at)) = self.entries.get(&(pid, *comm))
            && (info.pod.is_some() || info.container_id.is_none() || *read_at == generation)
        {
            return info.clone();
        }
        let dir = self.proc_root.join(pid.to_string());
        let executable = std::fs::read_link(dir.join("exe")).ok();
        // Exited: a zombie's /proc entry, or none, has no executable or
        // environment left; what was read before, for another of its threads
        // or at start-up, holds.
        if executable.is_none()
            && let Some((known, _)) = self
                .entries
                .iter()
                .find_map(|((known, _), entry)| (*known == pid).then_some(entry))
        {
            return known.clone();
        }
        if self.entries.len() >= MAX_CACHED {
            self.entries.clear();
        }
        let info = Arc::new(self.read(pid, &dir, executable, &comm_text(comm)));
        self.entries
            .insert((pid, *comm), (info.clone(), generation));
        info
    }

    /// Reads the processes running now: `pids`, or every one (up to half
    /// the cache). One that exits before the agent handles its first event,
    /// its /proc entry gone by then, is still named from its environment
    /// rather than after the thread that made the event. Returns how many
    /// were read.
    pub fn read_running(&mut self, pids: &[u32]) -> usize {
        let running: Vec<u32> = if pids.is_empty() {
            std::fs::read_dir(&self.proc_root)
                .map(|entries| {
                    entries
                        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                        .take(MAX_CACHED / 2)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            pids.to_vec()
        };
        let mut read = 0;
        for pid in running {
            let Ok(name) = std::fs::read(self.proc_root.join(format!("{pid}/comm"))) else {
                continue;
            };
            let mut comm = Comm::default();
            let name = name.strip_suffix(b"\n").unwrap_or(&name);
            let len = name.len().min(comm.len() - 1);
            comm[..len].copy_from_slice(&name[..len]);
            self.get(pid, &comm);
            read += 1;
        }
        read
    }

    /// Process `pid` from its /proc entry `dir`, whose `exe` link pointed
    /// to `executable`.
    fn read(&self, pid: u32, dir: &Path, executable: Option<PathBuf>, comm: &str) -> ProcessInfo {
        // A process that already exited (a short curl) keeps its thread name.
        let executable_name = executable
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| comm.to_string());
        let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        let container_id = container_id(&cgroup);
        let pod = container_id
            .as_deref()
            .zip(self.pods.as_ref())
            .and_then(|(id, pods)| pods.container(id));
        let service_name = env_value(&environ, b"OTEL_SERVICE_NAME")
            .filter(|name| !name.is_empty())
            .or_else(|| pod.as_ref().map(|pod| pod.service_name().to_string()))
            .or_else(|| {
                container_id
                    .as_deref()
                    .and_then(|id| container_name(std::path::Path::new("/"), id))
            })
            .or_else(|| {
                let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                program_name(&executable_name, &args)
            })
            .unwrap_or_else(|| executable_name.clone());
        let team = self.owners.team(
            &service_name,
            &cgroup,
            pod.as_deref(),
            env_value(&environ, b"OTEL_RESOURCE_ATTRIBUTES").as_deref(),
        );
        ProcessInfo {
            pid,
            service_name,
            executable_name,
            container_id,
            pod,
            team,
            go: crate::loader::go_binary::is_go_executable(&dir.join("exe")),
        }
    }
}

/// What an interpreter or a JVM runs, named as a person would name the
/// service: `python3 auth.py` → `auth`, `python -m shop.api` → `shop.api`,
/// `node payment.js` → `payment`, `java -jar ledger.jar` → `ledger`,
/// `java -cp lib com.shop.Ledger` → `Ledger`. A script with a name every
/// project uses (`main.py`, `index.js`) is named after its directory.
/// `None` for other executables, and for code given inline (`python -c`).
fn program_name(executable: &str, args: &[String]) -> Option<String> {
    let runtime = if executable.starts_with("python") || executable.starts_with("pypy") {
        Runtime::Python
    } else if matches!(executable, "node" | "nodejs" | "bun" | "deno") {
        Runtime::Node
    } else if executable == "java" {
        Runtime::Java
    } else if executable.starts_with("ruby")
        || executable.starts_with("perl")
        || executable.starts_with("php")
    {
        Runtime::Other
    } else {
        return None;
    };
    let mut rest = args.iter().skip(1).map(String::as_str);
    while let Some(arg) = rest.next() {
        match (runtime, arg) {
            (Runtime::Python, "-m") => return rest.next().map(str::to_string),
            (Runtime::Python, "-c")
            | (Runtime::Node | Runtime::Other, "-e" | "--eval" | "-p" | "--print") => {
                return None;
            }
            (Runtime::Java, "-jar") => {
                return rest
                    .next()
                    .map(|jar| strip_version(file_stem(jar)).to_string());
            }
            // Options that take the next argument as their value.
            (Runtime::Python, "-W" | "-X" | "--check-hash-based-pycs")
            | (Runtime::Node, "-r" | "--require" | "--import" | "--loader" | "--env-file")
            | (Runtime::Java, "-cp" | "-classpath" | "--class-path" | "-p" | "--module-path") => {
                rest.next();
            }
            // Node's `deno run` / `bun run` subcommand.
            (Runtime::Node, "run") => {}
            (Runtime::Java, "-m" | "--module") => {
                let module = rest.next()?;
                return Some(module.split('/').next().unwrap_or(module).to_string());
            }
            (_, option) if option.starts_with('-') => {}
            (Runtime::Java, class) => {
                return class.rsplit('.').next().map(str::to_string);
            }
            (_, script) => return Some(script_name(script)),
        }
    }
    None
}

#[derive(Clone, Copy)]
enum Runtime {
    Python,
    Node,
    Java,
    Other,
}

/// A script's name without its extension; its directory's when the name
/// is one every project uses.
fn script_name(path: &str) -> String {
    const GENERIC: [&str; 9] = [
        "main", "index", "app", "server", "run", "manage", "__main__", "start", "wsgi",
    ];
    let stem = file_stem(path);
    if GENERIC.contains(&stem) {
        let parent = std::path::Path::new(path)
            .parent()
            .and_then(|dir| dir.file_name())
            .map(|dir| dir.to_string_lossy().into_owned());
        if let Some(parent) = parent.filter(|p| !p.is_empty() && p != "src" && p != "bin") {
            return parent;
        }
    }
    stem.to_string()
}

/// The last path component without its extension.
fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// `ledger-1.4.2` → `ledger`: a jar's version is not part of its name.
fn strip_version(name: &str) -> &str {
    name.match_indices('-')
        .find(|(i, _)| name[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
        .map_or(name, |(i, _)| &name[..i])
}

/// The value of `name` in a NUL-separated environment block.
fn env_value(environ: &[u8], name: &[u8]) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name)?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// The name a person gave container `id` (64 hex digits), from the
/// runtime's files under `root`: Docker's `config.v2.json` (its Compose
/// service if it has one), else Podman's `containers.json`.
fn container_name(root: &std::path::Path, id: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct DockerConfig {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Config")]
        config: Option<DockerLabels>,
    }
    #[derive(serde::Deserialize)]
    struct DockerLabels {
        #[serde(rename = "Labels", default)]
        labels: Option<HashMap<String, String>>,
    }
    #[derive(serde::Deserialize)]
    struct PodmanContainer {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let docker = root
        .join("var/lib/docker/containers")
        .join(id)
        .join("config.v2.json");
    if let Some(config) = std::fs::read(docker)
        .ok()
        .and_then(|json| serde_json::from_slice::<DockerConfig>(&json).ok())
    {
        let compose_service = config
            .config
            .and_then(|c| c.labels)
            .and_then(|mut labels| labels.remove("com.docker.compose.service"));
        return compose_service
            .or_else(|| Some(config.name.trim_start_matches('/').to_string()))
            .filter(|name| !name.is_empty());
    }
    let podman = root.join("var/lib/containers/storage/overlay-containers/containers.json");
    let containers: Vec<PodmanContainer> =
        serde_json::from_slice(&std::fs::read(podman).ok()?).ok()?;
    containers
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.names.into_iter().next())
}

/// A 64-hex-digit container id in a cgroup path (docker, containerd, cri-o).
fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().rev().find_map(|line| {
        line.split(['/', '-', '.', ':'])
            .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_from_environment() {
        let environ = b"PATH=/bin\0OTEL_SERVICE_NAME=checkout\0HOME=/root\0";
        assert_eq!(
            env_value(environ, b"OTEL_SERVICE_NAME").as_deref(),
            Some("checkout")
        );
        assert_eq!(
            env_value(b"OTEL_SERVICE_NAMESPACE=x\0", b"OTEL_SERVICE_NAME"),
            None
        );
    }

    #[test]
    fn services_are_named_after_what_they_run() {
        let name = |exe: &str, cmd: &str| {
            let args: Vec<String> = cmd.split(' ').map(str::to_string).collect();
            program_name(exe, &args)
        };
        let cases = [
            ("python3.11", "python3 auth.py", Some("auth")),
            (
                "python3.11",
                "python3 -u /srv/shop/payment.py 8080",
                Some("payment"),
            ),
            (
                "python3.11",
                "python -m shop.api --port 1",
                Some("shop.api"),
            ),
            (
                "python3.11",
                "python3 -X dev -W ignore srv/orders/main.py",
                Some("orders"),
            ),
            ("python3.11", "python3 -c print(1)", None),
            ("python3.11", "python3", None),
            ("node", "node payment.js", Some("payment")),
            (
                "node",
                "node --require ./otel.js /app/cart/index.js",
                Some("cart"),
            ),
            ("node", "node -e 1", None),
            (
                "java",
                "java -Xmx1g -jar /opt/ledger-1.4.2.jar",
                Some("ledger"),
            ),
            ("java", "java -cp lib/* com.shop.Ledger", Some("Ledger")),
            (
                "java",
                "java -m shop.ledger/com.shop.Main",
                Some("shop.ledger"),
            ),
            ("nginx", "nginx -g daemon off;", None),
            ("ruby3.1", "ruby src/main.rb", Some("main")),
        ];
        for (exe, cmd, expected) in cases {
            assert_eq!(name(exe, cmd).as_deref(), expected, "{cmd}");
        }
    }

    #[test]
    fn container_names_from_docker_and_podman() {
        let root = std::env::temp_dir().join(format!("runtimes-{}", std::process::id()));
        let (web, worker, db) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let docker = root.join("var/lib/docker/containers");
        std::fs::create_dir_all(docker.join(&web)).unwrap();
        std::fs::create_dir_all(docker.join(&worker)).unwrap();
        std::fs::write(
            docker.join(&web).join("config.v2.json"),
            r#"{"Name":"/shop-web-1","Config":{"Labels":{"com.docker.compose.service":"web"}}}"#,
        )
        .unwrap();
        std::fs::write(
            docker.join(&worker).join("config.v2.json"),
            r#"{"Name":"/worker","Config":{"Labels":null}}"#,
        )
        .unwrap();
        let podman = root.join("var/lib/containers/storage/overlay-containers");
        std::fs::create_dir_all(&podman).unwrap();
        std::fs::write(
            podman.join("containers.json"),
            format!(r#"[{{"id":"{db}","names":["orders-db"],"image":""}}]"#),
        )
        .unwrap();
        assert_eq!(container_name(&root, &web).as_deref(), Some("web"));
        assert_eq!(container_name(&root, &worker).as_deref(), Some("worker"));
        assert_eq!(container_name(&root, &db).as_deref(), Some("orders-db"));
        assert_eq!(container_name(&root, &"d".repeat(64)), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn container_ids() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id.clone())
        );
        assert_eq!(
            container_id(&format!("0::/kubepods/besteffort/pod1/{id}\n")),
            Some(id)
        );
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
    }

    #[test]
    fn this_process() {
        let mut cache = ProcessCache::default();
        let me = cache.get(std::process::id(), b"test\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(!me.executable_name.is_empty());
        let gone = cache.get(u32::MAX - 1, b"curl\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(gone.service_name, "curl");
    }

    /// A /proc of its own under the temporary directory, with process 4242
    /// run as `OTEL_SERVICE_NAME=grpc-client`.
    fn fake_proc(name: &str) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let dir = root.join("4242");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("environ"), b"OTEL_SERVICE_NAME=grpc-client\0").unwrap();
        root
    }

    #[test]
    fn another_thread_of_an_exited_process_keeps_its_service() {
        let root = fake_proc("exited");
        let mut cache = ProcessCache::new(&root, Owners::default(), None);
        let main = cache.get(4242, b"python3\0\0\0\0\0\0\0\0\0");
        assert_eq!(main.service_name, "grpc-client");
        std::fs::remove_dir_all(&root).unwrap();
        let worker = cache.get(4242, b"event_engine\0\0\0\0");
        assert_eq!(worker.service_name, "grpc-client");
        // Another process that exited unseen is named after its thread.
        let other = cache.get(4243, b"event_engine\0\0\0\0");
        assert_eq!(other.service_name, "event_engine");
    }

    #[test]
    fn a_zombie_keeps_what_was_read_while_it_ran() {
        let root = fake_proc("zombie");
        let mut cache = ProcessCache::new(&root, Owners::default(), None);
        assert_eq!(
            cache.get(4242, b"python3\0\0\0\0\0\0\0\0\0").service_name,
            "grpc-client"
        );
        // Exited, not yet reaped: its /proc entry stays, with no environment.
        std::fs::write(root.join("4242/environ"), b"").unwrap();
        let worker = cache.get(4242, b"event_engine\0\0\0\0");
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(worker.service_name, "grpc-client");
    }

    #[test]
    fn a_process_read_at_start_keeps_its_service_after_it_exits() {
        let root = fake_proc("running");
        std::fs::write(root.join("4242/comm"), b"python3\n").unwrap();
        std::fs::create_dir_all(root.join("self")).unwrap();
        let mut cache = ProcessCache::new(&root, Owners::default(), None);
        assert_eq!(cache.read_running(&[]), 1);
        std::fs::remove_dir_all(&root).unwrap();
        // Its first event, from a thread never seen, after it exited.
        let worker = cache.get(4242, b"event_engine\0\0\0\0");
        assert_eq!(worker.service_name, "grpc-client");
        assert_eq!(cache.read_running(&[4243]), 0);
    }
}
