//! The tuning cache: one JSON file per adapter and driver, written atomically, read once per
//! process by lookups.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::CACHE_ENV;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;

/// Version of the cache file format.
const FORMAT: u64 = 1;

/// One cached choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The winner: a `MatmulConfig::label`, a `ConvConfig::label` (or, in files written before
    /// conv quads and splits were tuned, a bare `ConvVariant::name`), an `AttnConfig::name`, or an
    /// NF4 configuration's label.
    pub config: String,
    /// Its measured speed, GFLOP/s.
    pub gflops: f64,
    /// The default's measured speed in the same run, GFLOP/s.
    pub default_gflops: f64,
}

/// The on-disk cache of one adapter and driver, held in memory.
#[derive(Debug, Clone)]
pub struct TuneCache {
    path: PathBuf,
    adapter: String,
    driver: String,
    entries: BTreeMap<String, Choice>,
    warning: Option<String>,
}

/// A file-name-safe version of `s` (letters, digits, `.`, `-`; the rest become `_`).
fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    t.chars().take(80).collect()
}

/// The driver string kiln keys the cache by: wgpu's driver name and driver info.
pub fn driver_of(gpu: &Gpu) -> String {
    let i = gpu.info();
    format!("{} {}", i.driver, i.driver_info).trim().to_string()
}

/// The cache file for `gpu`: `$KILN_TUNE_CACHE` (a `.json` file, or a folder holding
/// `tune-<adapter>-<driver>.json`), else that file under the user cache directory's `kiln/`.
/// `None` when neither is known.
pub fn default_path(gpu: &Gpu) -> Option<PathBuf> {
    let file = format!(
        "tune-{}-{}.json",
        sanitize(&gpu.info().name),
        sanitize(&driver_of(gpu))
    );
    match std::env::var_os(CACHE_ENV) {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            Some(if p.extension().is_some_and(|e| e == "json") {
                p
            } else {
                p.join(file)
            })
        }
        _ => dirs::cache_dir().map(|d| d.join("kiln").join(file)),
    }
}

impl TuneCache {
    /// An empty cache for `adapter` / `driver` that will be saved to `path`.
    pub fn empty(path: &Path, adapter: &str, driver: &str) -> Self {
        TuneCache {
            path: path.to_path_buf(),
            adapter: adapter.to_string(),
            driver: driver.to_string(),
            entries: BTreeMap::new(),
            warning: None,
        }
    }

    /// Read `path`. A missing file is an empty cache; a file that does not parse, or that was
    /// measured on another adapter or driver, is also an empty cache, with the reason in
    /// [`TuneCache::warning`] (never a panic or an error: tuning is an optimisation).
    pub fn load(path: &Path, adapter: &str, driver: &str) -> Self {
        let mut cache = Self::empty(path, adapter, driver);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return cache,
            Err(e) => {
                cache.warning = Some(format!("cannot read {}: {e}", path.display()));
                return cache;
            }
        };
        match Self::parse(&text, adapter, driver) {
            Ok(entries) => cache.entries = entries,
            Err(why) => {
                cache.warning = Some(format!(
                    "ignoring tuning cache {}: {why} (delete it or run `kiln tune-kernels \
                     --force`)",
                    path.display()
                ))
            }
        }
        cache
    }

    fn parse(
        text: &str,
        adapter: &str,
        driver: &str,
    ) -> std::result::Result<BTreeMap<String, Choice>, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if v["format"].as_u64() != Some(FORMAT) {
            return Err(format!("not a kiln tuning cache of format {FORMAT}"));
        }
        let (a, d) = (v["adapter"].as_str(), v["driver"].as_str());
        if a != Some(adapter) || d != Some(driver) {
            return Err(format!(
                "measured on adapter {a:?} driver {d:?}, not {adapter:?} driver {driver:?}"
            ));
        }
        let obj = v["entries"].as_object().ok_or("no \"entries\" object")?;
        let mut entries = BTreeMap::new();
        for (k, e) in obj {
            let choice = (|| {
                Some(Choice {
                    config: e["config"].as_str()?.to_string(),
                    gflops: e["gflops"].as_f64()?,
                    default_gflops: e["default_gflops"].as_f64()?,
                })
            })()
            .ok_or_else(|| format!("entry {k:?} is malformed"))?;
            entries.insert(k.clone(), choice);
        }
        Ok(entries)
    }

    /// Where the cache is saved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The adapter name the entries belong to.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// The driver version the entries belong to.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Why the file on disk was ignored, if it was.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The entry under `key` (see [`entry_key`](super::entry_key)).
    pub fn get(&self, key: &str) -> Option<&Choice> {
        self.entries.get(key)
    }

    /// Every entry, by key.
    pub fn entries(&self) -> &BTreeMap<String, Choice> {
        &self.entries
    }

    /// Add or replace an entry.
    pub fn insert(&mut self, key: String, choice: Choice) {
        self.entries.insert(key, choice);
    }

    /// Write the cache as JSON: to a temporary file beside it, then renamed over it, so a
    /// reader never sees half a file.
    pub fn save(&self) -> Result<()> {
        let io = |e: std::io::Error, what: &str| {
            KernelError::Unavailable(format!("tuning cache {}: {what}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(e, "create folder"))?;
        }
        let entries: serde_json::Map<String, serde_json::Value> = self
            .entries
            .iter()
            .map(|(k, c)| {
                let v = serde_json::json!({
                    "config": c.config,
                    "gflops": c.gflops,
                    "default_gflops": c.default_gflops,
                });
                (k.clone(), v)
            })
            .collect();
        let doc = serde_json::json!({
            "format": FORMAT,
            "adapter": self.adapter,
            "driver": self.driver,
            "entries": entries,
        });
        let text = serde_json::to_string_pretty(&doc).expect("JSON of strings and numbers");
        let tmp = self
            .path
            .with_extension(format!("json.tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| io(e, "write"))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(e, "rename"))?;
        Ok(())
    }
}

/// Caches read by lookups, one per file, each loaded once per process.
static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<TuneCache>>>> = OnceLock::new();

/// The cache for `gpu` as lookups see it (loaded on first use; a warning is printed once).
pub(super) fn loaded(gpu: &Gpu) -> Option<Arc<TuneCache>> {
    let path = default_path(gpu)?;
    let mut map = LOADED.get_or_init(Default::default).lock().ok()?;
    if let Some(c) = map.get(&path) {
        return Some(c.clone());
    }
    let cache = TuneCache::load(&path, &gpu.info().name, &driver_of(gpu));
    if let Some(w) = cache.warning() {
        eprintln!("kiln: warning: {w}");
    }
    let cache = Arc::new(cache);
    map.insert(path, cache.clone());
    Some(cache)
}

/// Make later lookups see `cache` (after tuning wrote it).
pub(super) fn publish(cache: &TuneCache) {
    if let Some(m) = LOADED.get_or_init(Default::default).lock().ok().as_mut() {
        m.insert(cache.path.clone(), Arc::new(cache.clone()));
    }
}
