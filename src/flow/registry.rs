//! The flows a server serves: the current library, reloaded when its files change, and every
//! version loaded since start, so a call finishes on the version it started with.
//!
//! The registry knows nothing of where versions are kept: it hands out the texts of a version
//! to keep ([`Registry::unsaved`]) and takes them back ([`Registry::restore`]); the server
//! keeps them in the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::{Diagnostics, Flow, Library};

/// The texts of one version of a flow: its file and each prompt catalogue, enough to rebuild it
/// exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowVersion {
    pub version: String,
    pub flow: String,
    pub source_name: String,
    pub source: String,
    /// (language, file name, text).
    pub catalogs: Vec<(String, String, String)>,
}

pub struct Registry {
    flows_dir: PathBuf,
    prompts_dir: PathBuf,
    current: RwLock<Arc<Library>>,
    versions: Mutex<HashMap<String, Arc<Flow>>>,
    /// Versions known to be in the database (see [`Registry::unsaved`]).
    saved: Mutex<std::collections::HashSet<String>>,
}

impl Registry {
    /// Loads the flows; any error refuses to start.
    pub fn load(flows_dir: PathBuf, prompts_dir: PathBuf) -> Result<Registry, Diagnostics> {
        let (lib, _) = Library::load_dirs(&flows_dir, &prompts_dir)?;
        let r = Registry {
            flows_dir,
            prompts_dir,
            current: RwLock::new(Arc::new(Library::default())),
            versions: Mutex::default(),
            saved: Mutex::default(),
        };
        r.install(lib);
        Ok(r)
    }

    fn install(&self, lib: Library) {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        for f in lib.flows.values() {
            versions.entry(f.version.clone()).or_insert_with(|| f.clone());
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lib);
    }

    /// Reloads from disk. A bad edit is refused with its diagnostics; the last good version
    /// keeps serving.
    pub fn reload(&self) -> Result<usize, Diagnostics> {
        let (lib, _) = Library::load_dirs(&self.flows_dir, &self.prompts_dir)?;
        let n = lib.flows.len();
        self.install(lib);
        Ok(n)
    }

    /// The current version of a flow, for a new call.
    pub fn current(&self, name: &str) -> Option<Arc<Flow>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).flow(name).cloned()
    }

    /// Every flow served now, by name.
    pub fn current_flows(&self) -> Vec<Arc<Flow>> {
        let lib = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut flows: Vec<Arc<Flow>> = lib.flows.values().cloned().collect();
        flows.sort_by(|a, b| a.name.cmp(&b.name));
        flows
    }

    /// The version a call started on; the current one if this process never loaded that
    /// version (it was edited while the server was down).
    pub fn version(&self, name: &str, version: &str) -> Option<Arc<Flow>> {
        let found = self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(version).cloned();
        found.filter(|f| f.name == name).or_else(|| {
            tracing::warn!(
                flow = name,
                version,
                "flow version not loaded here; the call goes on with the current version"
            );
            self.current(name)
        })
    }

    /// A version's texts to store with the calls that start on it, or `None` when this process
    /// stored it already (one database write per version, not per call).
    pub fn unsaved(&self, flow: &Flow) -> Option<FlowVersion> {
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        (!saved.contains(&flow.version)).then(|| FlowVersion {
            version: flow.version.clone(),
            flow: flow.name.clone(),
            source_name: flow.source.name.clone(),
            source: flow.source.text.clone(),
            catalogs: flow
                .catalogs
                .iter()
                .map(|(lang, c)| (lang.clone(), c.source.name.clone(), c.source.text.clone()))
                .collect(),
        })
    }

    /// Records that a version is stored.
    pub fn mark_saved(&self, version: &str) {
        self.saved.lock().unwrap_or_else(|e| e.into_inner()).insert(version.to_string());
    }

    /// Rebuilds stored versions that calls in progress started on and that the files no longer
    /// hold, so those calls finish on them. Returns how many were restored.
    pub fn restore(&self, stored: &[FlowVersion]) -> usize {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let mut restored = 0;
        for f in stored {
            if versions.contains_key(&f.version) {
                continue;
            }
            let catalogs = f
                .catalogs
                .iter()
                .map(|(lang, name, text)| (lang.clone(), super::source::Source::new(name.clone(), text.clone())))
                .collect();
            let source = super::source::Source::new(f.source_name.clone(), f.source.clone());
            match super::Library::flow_from_sources(&f.flow, source, catalogs) {
                Some(flow) if flow.version == f.version => {
                    versions.insert(f.version.clone(), flow);
                    restored += 1;
                }
                _ => tracing::warn!(flow = f.flow, version = f.version, "a stored flow version could not be rebuilt"),
            }
        }
        self.saved.lock().unwrap_or_else(|e| e.into_inner()).extend(stored.iter().map(|f| f.version.clone()));
        restored
    }

    /// The current catalogue of a language (for messages written outside a call).
    pub fn catalog(&self, lang: &str) -> Option<Arc<crate::flow::prompts::Catalog>> {
        let lib = self.current.read().unwrap_or_else(|e| e.into_inner());
        lib.catalogs.get(lang).or_else(|| lib.catalogs.get("ja-JP")).cloned()
    }

    /// The languages with a prompt catalogue, sorted.
    pub fn languages(&self) -> Vec<String> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).catalogs.keys().cloned().collect()
    }

    pub fn flow_count(&self) -> usize {
        self.current.read().unwrap_or_else(|e| e.into_inner()).flows.len()
    }

    /// Watches the flow and prompt folders and reloads after changes settle. The returned
    /// watcher must be kept alive.
    pub fn watch(self: &Arc<Self>) -> notify::Result<notify::RecommendedWatcher> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&self.flows_dir, notify::RecursiveMode::NonRecursive)?;
        watcher.watch(&self.prompts_dir, notify::RecursiveMode::NonRecursive)?;
        let me = self.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Editors write a file in several steps: wait until the events stop.
                while let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {}
                match me.reload() {
                    Ok(n) => {
                        metrics::counter!("ivr_flow_reloads_total", "result" => "ok").increment(1);
                        tracing::info!(flows = n, "flows reloaded");
                    }
                    Err(diags) => {
                        metrics::counter!("ivr_flow_reloads_total", "result" => "refused").increment(1);
                        for d in diags.sorted() {
                            tracing::error!("{d}");
                        }
                        tracing::error!("flow edit refused; the last good version keeps serving");
                    }
                }
            }
        });
        Ok(watcher)
    }
}
