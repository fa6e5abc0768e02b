//! The flows and prompt catalogues of a deployment, loaded and checked together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::load::{self, is_language_tag};
use super::source::{Diagnostics, Source};
use super::{Flow, validate};
use crate::flow::prompts::Catalog;

/// Every flow by name, each with its catalogues attached.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub flows: BTreeMap<String, Arc<Flow>>,
    pub catalogs: BTreeMap<String, Arc<Catalog>>,
}

/// The files to load: flows, and prompt catalogues (a file whose name is a language tag).
#[derive(Debug, Default)]
pub struct Files {
    pub flows: Vec<PathBuf>,
    pub prompts: Vec<PathBuf>,
}

impl Files {
    /// Sorts paths into flows and catalogues; a directory adds the `.toml` files in it.
    pub fn from_paths(paths: &[PathBuf]) -> std::io::Result<Files> {
        let mut files = Files::default();
        for p in paths {
            if p.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                    .collect();
                entries.sort();
                for e in entries {
                    files.add(e);
                }
            } else if p.exists() {
                files.add(p.clone());
            } else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{}: no such file or directory", p.display()),
                ));
            }
        }
        Ok(files)
    }

    /// A file in `prompts/` is a catalogue and one in `call-flows/` a flow; elsewhere a file
    /// named like a language (`ja-JP.toml`) is a catalogue.
    fn add(&mut self, p: PathBuf) {
        let dir = p.parent().and_then(Path::file_name).map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
        let prompt = match dir.as_str() {
            "prompts" => true,
            "call-flows" => false,
            _ => is_language_tag(&stem(&p)),
        };
        if prompt { self.prompts.push(p) } else { self.flows.push(p) }
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read(p: &Path, diags: &mut Diagnostics) -> Option<Source> {
    let name = p.display().to_string();
    match std::fs::read_to_string(p) {
        Ok(text) => Some(Source::new(name, text)),
        Err(e) => {
            diags.error(&Source::new(name, ""), 0, format!("cannot read: {e}"));
            None
        }
    }
}

impl Library {
    /// Loads and checks everything. The library holds every file that is valid; `diags`
    /// holds every problem (a flow with errors is left out).
    pub fn load(files: &Files) -> (Library, Diagnostics) {
        let mut diags = Diagnostics::default();
        let mut lib = Library::default();
        let mut broken = Vec::new();
        for p in &files.prompts {
            let lang = stem(p);
            match read(p, &mut diags).and_then(|src| Catalog::parse(&lang, src, &mut diags)) {
                Some(c) => drop(lib.catalogs.insert(lang, Arc::new(c))),
                None => broken.push(lang),
            }
        }
        for p in &files.flows {
            let Some(src) = read(p, &mut diags) else {
                continue;
            };
            let mut own = Diagnostics::default();
            if let Some(mut flow) = load::parse(&stem(p), src, &mut own) {
                for lang in &flow.languages {
                    if let Some(c) = lib.catalogs.get(lang) {
                        flow.catalogs.insert(lang.clone(), c.clone());
                    } else if broken.contains(lang) {
                        flow.broken_catalogs.push(lang.clone());
                    }
                }
                validate::check(&flow, &mut own);
                flow.version = version(&flow);
                if !own.has_errors() {
                    lib.flows.insert(flow.name.clone(), Arc::new(flow));
                }
            }
            diags.extend(own);
        }
        (lib, diags)
    }

    /// Loads `flows_dir` and `prompts_dir`; any error refuses the whole set.
    pub fn load_dirs(flows_dir: &Path, prompts_dir: &Path) -> Result<(Library, Diagnostics), Diagnostics> {
        let files = Files::from_paths(&[flows_dir.to_path_buf(), prompts_dir.to_path_buf()]).map_err(|e| {
            let mut d = Diagnostics::default();
            d.error(&Source::new(flows_dir.display().to_string(), ""), 0, e.to_string());
            d
        })?;
        let (lib, diags) = Library::load(&files);
        if diags.has_errors() { Err(diags) } else { Ok((lib, diags)) }
    }

    pub fn flow(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }

    /// Rebuilds one flow version from the texts it was loaded from (a version stored with the
    /// calls that use it, after the files changed). `None` if it no longer loads cleanly.
    pub fn flow_from_sources(name: &str, flow: Source, catalogs: Vec<(String, Source)>) -> Option<Arc<Flow>> {
        let mut diags = Diagnostics::default();
        let catalogs: BTreeMap<String, Arc<Catalog>> = catalogs
            .into_iter()
            .filter_map(|(lang, src)| Catalog::parse(&lang, src, &mut diags).map(|c| (lang, Arc::new(c))))
            .collect();
        let mut flow = load::parse(name, flow, &mut diags)?;
        for lang in &flow.languages {
            if let Some(c) = catalogs.get(lang) {
                flow.catalogs.insert(lang.clone(), c.clone());
            }
        }
        validate::check(&flow, &mut diags);
        flow.version = version(&flow);
        (!diags.has_errors()).then(|| Arc::new(flow))
    }
}

/// A flow's version: a hash of its file and of each of its catalogues.
fn version(flow: &Flow) -> String {
    let mut h = Sha256::new();
    h.update(flow.source.text.as_bytes());
    for (lang, c) in &flow.catalogs {
        h.update([0]);
        h.update(lang.as_bytes());
        h.update([0]);
        h.update(c.source.text.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}
