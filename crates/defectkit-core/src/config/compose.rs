//! Hydra 1.3 composition: the defaults list (with `_self_`, group defaults, nested defaults,
//! `override` entries and `# @package` headers), deep merging, and command-line overrides.
//!
//! The algorithm follows Hydra's defaults tree: a config's defaults list is walked in
//! reverse so that `override /group: option` entries of later configs (experiment presets)
//! are known before the group they override is reached; the tree is then flattened depth
//! first and each config is merged at its package. Overrides of values are applied last, in
//! command-line order, with Hydra's struct rules (`a=1` needs `a`, `+a=1` must not find it).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::error::{composition, ConfigError};
use super::overrides::{Element, Override, OverrideKind, OverrideValue};

/// Key of the framework's own node in the composed tree, removed from the job's config.
pub const HYDRA_KEY: &str = "hydra";

/// Whether a command runs one job or a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// One job in `hydra.run.dir`.
    Run,
    /// One job per point of the sweep, in `hydra.sweep.dir/hydra.sweep.subdir`.
    Multirun,
}

/// The framework defaults placed under `hydra:` before any user config.
const HYDRA_DEFAULTS: &str = r#"
run:
  dir: outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}
sweep:
  dir: multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}
  subdir: ${hydra.job.num}
sweeper:
  params: null
job:
  name: app
  num: 0
  id: ''
  override_dirname: ''
  chdir: false
mode: RUN
runtime:
  choices: {}
  output_dir: ''
  cwd: ''
  version: ''
overrides:
  hydra: []
  task: []
"#;

/// A folder of YAML configs: `<dir>/<name>.yaml` and groups `<dir>/<group>/<option>.yaml`.
#[derive(Debug)]
pub struct ConfigRepo {
    dir: PathBuf,
    cache: RefCell<HashMap<String, LoadedConfig>>,
}

/// One entry of a defaults list.
#[derive(Debug, Clone, PartialEq)]
enum DefaultEntry {
    /// `_self_`: this config's own content.
    SelfRef,
    /// `- path` (a config, relative to the containing config's group unless it starts with `/`).
    Config {
        path: String,
        package: Option<String>,
        optional: bool,
    },
    /// `- group: option` (or `override group: option`, `group@pkg: option`).
    Group {
        group: String,
        package: Option<String>,
        option: Option<String>,
        is_override: bool,
        optional: bool,
        external_append: bool,
    },
}

#[derive(Debug, Clone)]
struct LoadedConfig {
    header_package: Option<String>,
    defaults: Vec<DefaultEntry>,
    has_defaults: bool,
    content: Value,
}

/// One config merged into the result, in merge order.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultDefault {
    /// Config path without extension (`model/unet_ae`, `config`).
    pub config_path: String,
    /// Package it was merged at (`model`, or "" for the root).
    pub package: String,
    /// Group and chosen option, for group defaults (`("model", "unet_ae")`).
    pub choice: Option<(String, String)>,
}

/// The composed configuration and how it came to be.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The whole tree, including the `hydra` node, interpolations unresolved.
    pub tree: Value,
    /// Chosen option per group, in defaults order.
    pub choices: Vec<(String, String)>,
    /// The configs merged, in order.
    pub defaults: Vec<ResultDefault>,
    /// The overrides this job was composed with, as typed (Hydra's `overrides.yaml`).
    pub overrides: Vec<String>,
}

impl Composed {
    /// The job's configuration: the tree without the `hydra` node.
    pub fn job_tree(&self) -> Value {
        let mut t = self.tree.clone();
        if let Value::Mapping(m) = &mut t {
            m.shift_remove(HYDRA_KEY);
        }
        t
    }

    /// The `hydra` node (run dirs, sweeper params, runtime choices).
    pub fn hydra_tree(&self) -> Value {
        self.tree
            .get(HYDRA_KEY)
            .cloned()
            .unwrap_or(Value::Mapping(Mapping::new()))
    }
}

impl ConfigRepo {
    /// Open a config directory.
    pub fn open(dir: &Path) -> Result<Self, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::MissingConfigDir(dir.to_path_buf()));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// The directory this repo reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when `group` is a folder of options.
    pub fn group_exists(&self, group: &str) -> bool {
        let g = group.trim_matches('/');
        !g.is_empty() && !g.contains("..") && self.dir.join(g).is_dir()
    }

    /// The options of a group, sorted.
    pub fn options(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.join(group.trim_matches('/')))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".yaml").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn file(&self, config_path: &str) -> PathBuf {
        self.dir.join(format!("{config_path}.yaml"))
    }

    /// True when `<dir>/<config_path>.yaml` exists.
    pub fn config_exists(&self, config_path: &str) -> bool {
        config_path.is_empty() || (!config_path.contains("..") && self.file(config_path).is_file())
    }

    /// The config at `config_path`; the empty path is no primary config at all (Hydra's
    /// `config_name=None`): empty content, no defaults list.
    fn load(&self, config_path: &str) -> Result<LoadedConfig, ConfigError> {
        if config_path.is_empty() {
            return Ok(LoadedConfig {
                header_package: None,
                defaults: Vec::new(),
                has_defaults: false,
                content: Value::Mapping(Mapping::new()),
            });
        }
        if let Some(c) = self.cache.borrow().get(config_path) {
            return Ok(c.clone());
        }
        let path = self.file(config_path);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let loaded = parse_config_text(&text).map_err(|reason| ConfigError::Invalid {
            path: path.clone(),
            reason,
        })?;
        self.cache
            .borrow_mut()
            .insert(config_path.to_string(), loaded.clone());
        Ok(loaded)
    }
}

/// Parse one config file: `# @package` header, `defaults:` list, content.
fn parse_config_text(text: &str) -> Result<LoadedConfig, String> {
    let mut header_package = None;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let Some(comment) = t.strip_prefix('#') else {
            break;
        };
        if let Some(pkg) = comment.trim().strip_prefix("@package") {
            header_package = Some(pkg.trim().to_string());
        }
    }
    let mut content: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    };
    if content.is_null() {
        content = Value::Mapping(Mapping::new());
    }
    // OmegaConf.create makes a lone string `s` the mapping `{s: null}`.
    if let Value::String(s) = &content {
        let mut m = Mapping::new();
        m.insert(Value::String(s.clone()), Value::Null);
        content = Value::Mapping(m);
    }
    // A list is a valid config (merged at its package); it has no defaults list.
    if content.is_sequence() {
        return Ok(LoadedConfig {
            header_package,
            defaults: Vec::new(),
            has_defaults: false,
            content,
        });
    }
    let Value::Mapping(map) = &mut content else {
        return Err("the top level must be a mapping or a list".to_string());
    };
    let (defaults, has_defaults) = match map.shift_remove("defaults") {
        None => (Vec::new(), false),
        Some(Value::Sequence(items)) => (
            items
                .iter()
                .map(parse_default_entry)
                .collect::<Result<Vec<_>, _>>()?,
            true,
        ),
        Some(_) => return Err("'defaults' must be a list".to_string()),
    };
    Ok(LoadedConfig {
        header_package,
        defaults,
        has_defaults,
        content,
    })
}

fn split_package(s: &str) -> (String, Option<String>) {
    match s.split_once('@') {
        Some((a, p)) => (a.trim().to_string(), Some(p.trim().to_string())),
        None => (s.trim().to_string(), None),
    }
}

fn parse_default_entry(v: &Value) -> Result<DefaultEntry, String> {
    match v {
        Value::String(s) if s == "_self_" => Ok(DefaultEntry::SelfRef),
        Value::String(s) => {
            let (path, package) = split_package(s);
            Ok(DefaultEntry::Config {
                path,
                package,
                optional: false,
            })
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().ok_or("empty defaults entry")?;
            let key = k
                .as_str()
                .ok_or_else(|| format!("invalid defaults entry key {k:?}"))?;
            let mut words: Vec<&str> = key.split_whitespace().collect();
            let mut is_override = false;
            let mut optional = false;
            while words.len() > 1 {
                match words[0] {
                    "override" => is_override = true,
                    "optional" => optional = true,
                    other => {
                        return Err(format!(
                            "unknown keyword '{other}' in defaults entry '{key}'"
                        ))
                    }
                }
                words.remove(0);
            }
            let (group, package) = split_package(words.first().copied().unwrap_or(""));
            let option = match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                other => {
                    return Err(format!(
                        "defaults entry '{key}' must name one option, found {other:?}"
                    ))
                }
            };
            Ok(DefaultEntry::Group {
                group,
                package,
                option,
                is_override,
                optional,
                external_append: false,
            })
        }
        other => Err(format!("invalid defaults entry {other:?}")),
    }
}

/// Join `parent` and `pkg` and apply `_global_` as Hydra does.
fn final_package(parent: &str, pkg: &str) -> String {
    let ret = if parent.is_empty() {
        pkg.to_string()
    } else if pkg.is_empty() {
        parent.to_string()
    } else {
        format!("{parent}.{pkg}")
    };
    match ret.rfind("_global_") {
        None => ret,
        Some(i) => ret
            .get(i + "_global_".len() + 1..)
            .unwrap_or("")
            .to_string(),
    }
}

/// A header package is absolute: prefix `_global_` unless already there.
fn absolute_header(h: &str) -> String {
    if h == "_global_" || h.starts_with("_global_.") {
        h.to_string()
    } else if h.is_empty() {
        "_global_".to_string()
    } else {
        format!("_global_.{h}")
    }
}

fn join_group(dir: &str, rel: &str) -> String {
    if let Some(abs) = rel.strip_prefix('/') {
        abs.to_string()
    } else if dir.is_empty() {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

#[derive(Debug)]
struct ChoiceOverride {
    value: Option<String>,
    external: bool,
    source: String,
    used: bool,
}

#[derive(Debug, Default)]
struct DefaultsOverrides {
    choices: Vec<(String, ChoiceOverride)>,
    deletions: Vec<(String, Option<String>, bool)>,
    appends: Vec<DefaultEntry>,
}

impl DefaultsOverrides {
    fn find(&mut self, key: &str) -> Option<&mut ChoiceOverride> {
        self.choices
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, c)| c)
    }

    fn add_config_override(&mut self, key: &str, value: Option<String>, source: &str) {
        if self.find(key).is_none() {
            self.choices.push((
                key.to_string(),
                ChoiceOverride {
                    value,
                    external: false,
                    source: source.to_string(),
                    used: false,
                },
            ));
        }
    }

    fn take(&mut self, key: &str) -> Option<Option<String>> {
        let c = self.find(key)?;
        c.used = true;
        Some(c.value.clone())
    }

    fn is_deleted(&mut self, key: &str, option: Option<&str>) -> bool {
        for (k, v, used) in &mut self.deletions {
            if k == key && (v.is_none() || v.as_deref() == option) {
                *used = true;
                return true;
            }
        }
        false
    }
}

#[derive(Debug)]
enum TreeChild {
    SelfContent,
    Node(TreeNode),
}

#[derive(Debug)]
struct TreeNode {
    config_path: String,
    package: String,
    choice: Option<(String, String)>,
    children: Vec<TreeChild>,
}

/// Compose `config_name` from `repo` with the given overrides.
///
/// In [`RunMode::Multirun`] sweep overrides are skipped (each job is composed later with
/// one point of the sweep); in [`RunMode::Run`] a sweep is an error.
pub fn compose(
    repo: &ConfigRepo,
    config_name: &str,
    overrides: &[Override],
    mode: RunMode,
) -> Result<Composed, ConfigError> {
    if !repo.config_exists(config_name) {
        return Err(composition(format!(
            "Cannot find primary config '{config_name}'. Check that it's in your config directory {}",
            repo.dir().display()
        )));
    }
    if repo.load(config_name)?.content.is_sequence() {
        return Err(composition(format!(
            "primary config '{config_name}' must be a DictConfig, got ListConfig"
        )));
    }
    let mut defaults_ov = DefaultsOverrides::default();
    let mut value_ov: Vec<&Override> = Vec::new();
    for o in overrides {
        if o.is_sweep() {
            match mode {
                RunMode::Multirun => continue,
                RunMode::Run => {
                    return Err(composition(format!(
                        "Ambiguous value for argument '{}'\n\
                         1. To use it as a list, use key=[value1,value2]\n\
                         2. To use it as string, quote the value: key=\\'value1,value2\\'\n\
                         3. To sweep over it, add --multirun to your command line",
                        o.input
                    )))
                }
            }
        }
        // A dict value is merged into the node even when the key names a group (Hydra).
        let dict_value = matches!(o.element(), Some(Element::Dict(_)));
        if dict_value || !repo.group_exists(&o.key) {
            if o.package.is_some() {
                return Err(composition(format!(
                    "Override '{}': '{}' is not a config group, so it cannot take a package (@)",
                    o.input, o.key
                )));
            }
            value_ov.push(o);
            continue;
        }
        let group = o.key.trim_matches('/').to_string();
        let key = o.key_element().trim_start_matches('/').to_string();
        let value = match (o.kind, o.element()) {
            (_, None) => None,
            (_, Some(Element::Str(s) | Element::Quoted(s, _))) => Some(s.clone()),
            (OverrideKind::Delete, Some(Element::Null)) => None,
            (OverrideKind::Delete, Some(other)) => {
                return Err(composition(format!(
                    "Config group override deletion value must be a string : '{}' has {}",
                    o.input,
                    other.render()
                )))
            }
            (_, Some(other)) => {
                return Err(composition(format!(
                    "Config group override must be a string or a list: '{}' has {}{}",
                    o.input,
                    other.render(),
                    if matches!(other, Element::List(_)) {
                        " (a list of options is not supported here)"
                    } else {
                        ""
                    }
                )))
            }
        };
        match o.kind {
            OverrideKind::Delete => defaults_ov.deletions.push((key, value, false)),
            OverrideKind::Add => defaults_ov.appends.push(DefaultEntry::Group {
                group: format!("/{group}"),
                package: o.package.clone(),
                option: value,
                is_override: false,
                optional: false,
                external_append: true,
            }),
            OverrideKind::ForceAdd => {
                return Err(composition(format!(
                    "force-add of config groups is not supported: '{}' (use {}=OPTION to change a \
                     group in the defaults list, +{}=OPTION to add one)",
                    o.input.trim(),
                    o.key_element(),
                    o.key_element()
                )))
            }
            OverrideKind::Change => defaults_ov.choices.push((
                key,
                ChoiceOverride {
                    value,
                    external: true,
                    source: o.input.clone(),
                    used: false,
                },
            )),
        }
    }

    let mut tree = build_tree(repo, config_name, &mut defaults_ov)?;
    for (key, c) in &defaults_ov.choices {
        if c.used {
            continue;
        }
        let value = c.value.as_deref().unwrap_or("null");
        return Err(if c.external {
            composition(format!(
                "Could not override '{key}'. No match in the defaults list.\n\
                 To append to your default list use +{key}={value}"
            ))
        } else {
            composition(format!(
                "In '{}': Could not override '{key}'. No match in the defaults list.",
                c.source
            ))
        });
    }
    for (key, value, used) in &defaults_ov.deletions {
        if !used {
            return Err(composition(match value {
                Some(v) => {
                    format!("Could not delete. No match for '{key}={v}' in the defaults list.")
                }
                None => format!("Could not delete. No match for '{key}' in the defaults list."),
            }));
        }
    }

    let mut results = Vec::new();
    flatten(&tree, &mut results);
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    for r in &results {
        if let Some((k, _)) = &r.choice {
            if seen.insert(k.clone(), ()).is_some() {
                return Err(composition(format!(
                    "{k} appears more than once in the final defaults list \
                     (to change the option of a group already in the defaults list, use {k}=OPTION without '+')"
                )));
            }
        }
    }
    tree.children.clear();

    // Merge: the framework's node first, then every config at its package.
    let hydra_defaults: Value =
        serde_norway::from_str(HYDRA_DEFAULTS).map_err(|e| composition(e.to_string()))?;
    let mut cfg = Mapping::new();
    cfg.insert(Value::String(HYDRA_KEY.into()), hydra_defaults);
    let mut cfg = Value::Mapping(cfg);
    for r in &results {
        let content = repo.load(&r.config_path)?.content;
        if content.is_sequence() && r.package.is_empty() {
            return Err(composition(format!(
                "'{}' is a list and cannot be merged into the root of the config",
                r.config_path
            )));
        }
        let placed = place_at_package(content, &r.package);
        merge(&mut cfg, placed);
    }

    for o in value_ov {
        apply_value_override(&mut cfg, o)?;
    }

    let choices: Vec<(String, String)> = results.iter().filter_map(|r| r.choice.clone()).collect();
    Ok(Composed {
        tree: cfg,
        choices,
        defaults: results,
        overrides: overrides
            .iter()
            .filter(|o| mode == RunMode::Run || !o.is_sweep())
            .map(|o| o.input.trim().to_string())
            .collect(),
    })
}

fn build_tree(
    repo: &ConfigRepo,
    config_name: &str,
    ov: &mut DefaultsOverrides,
) -> Result<TreeNode, ConfigError> {
    let header = repo.load(config_name)?.header_package;
    let package = final_package("", &header.map(|h| absolute_header(&h)).unwrap_or_default());
    build_node(repo, config_name, "", package, true, ov)
}

fn build_node(
    repo: &ConfigRepo,
    config_path: &str,
    group_dir: &str,
    package: String,
    is_root: bool,
    ov: &mut DefaultsOverrides,
) -> Result<TreeNode, ConfigError> {
    let loaded = repo.load(config_path)?;
    let mut defaults = loaded.defaults.clone();
    let needs_self =
        loaded.has_defaults || !defaults.is_empty() || (is_root && !ov.appends.is_empty());
    if !defaults.contains(&DefaultEntry::SelfRef) && (needs_self || defaults.is_empty()) {
        defaults.push(DefaultEntry::SelfRef);
    }
    if is_root {
        defaults.extend(ov.appends.iter().cloned());
    }

    // Register this config's `override` entries (first registration wins: command line,
    // then later configs, since the walk is in reverse).
    let mut last_override: Option<String> = None;
    for d in &defaults {
        match d {
            DefaultEntry::SelfRef => {}
            DefaultEntry::Group {
                group,
                package: pkg,
                option,
                is_override: true,
                ..
            } => {
                let abs = join_group(group_dir, group);
                let key = match pkg {
                    Some(p) => format!("{abs}@{p}"),
                    None => abs,
                };
                ov.add_config_override(&key, option.clone(), config_path);
                last_override = Some(format!("{key}: {}", option.as_deref().unwrap_or("null")));
            }
            DefaultEntry::Group {
                external_append: true,
                ..
            } => {}
            other => {
                if let Some(o) = &last_override {
                    return Err(composition(format!(
                        "In {config_path}: Override '{o}' is defined before '{}'.\n\
                         Overrides must be at the end of the defaults list",
                        describe(other)
                    )));
                }
            }
        }
    }

    // Entries are built last to first; a group entry whose option interpolates other
    // groups' choices (`optional a_b: ${a}_${b}`) waits until those choices are known.
    let mut built: Vec<Option<TreeChild>> = (0..defaults.len()).map(|_| None).collect();
    let mut deferred: Vec<usize> = Vec::new();
    for (idx, d) in defaults.iter().enumerate().rev() {
        if let DefaultEntry::Group {
            option: Some(o),
            is_override: false,
            ..
        } = d
        {
            if o.contains("${") {
                deferred.push(idx);
                continue;
            }
        }
        built[idx] = build_child(repo, d, config_path, group_dir, &package, ov, None)?;
    }
    if !deferred.is_empty() {
        let choices: Vec<(String, String)> = built
            .iter()
            .filter_map(|c| match c {
                Some(TreeChild::Node(n)) => n.choice.clone(),
                _ => None,
            })
            .collect();
        for idx in deferred {
            let DefaultEntry::Group {
                option: Some(o), ..
            } = &defaults[idx]
            else {
                continue;
            };
            let resolved = interpolate_choice(o, &choices, group_dir, config_path)?;
            built[idx] = build_child(
                repo,
                &defaults[idx],
                config_path,
                group_dir,
                &package,
                ov,
                Some(resolved),
            )?;
        }
    }
    let children: Vec<TreeChild> = built.into_iter().flatten().collect();
    Ok(TreeNode {
        config_path: config_path.to_string(),
        package,
        choice: None,
        children,
    })
}

/// `${group}` in a defaults-list option, replaced by that group's choice in the same list.
fn interpolate_choice(
    option: &str,
    choices: &[(String, String)],
    group_dir: &str,
    config_path: &str,
) -> Result<String, ConfigError> {
    let mut out = String::new();
    let mut rest = option;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            return Err(composition(format!(
                "In '{config_path}': unterminated interpolation in defaults entry '{option}'"
            )));
        };
        let name = rest[i + 2..i + end].trim();
        let abs = join_group(group_dir, name);
        let Some((_, choice)) = choices.iter().find(|(k, _)| k == name || *k == abs) else {
            return Err(composition(format!(
                "In '{config_path}': could not resolve '${{{name}}}' in defaults entry \
                 '{option}': no choice for group '{name}' in this defaults list"
            )));
        };
        out.push_str(choice);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One defaults-list entry as a child of the tree (`None` when it selects nothing);
/// `resolved_option` replaces an interpolated option.
fn build_child(
    repo: &ConfigRepo,
    d: &DefaultEntry,
    config_path: &str,
    group_dir: &str,
    package: &str,
    ov: &mut DefaultsOverrides,
    resolved_option: Option<String>,
) -> Result<Option<TreeChild>, ConfigError> {
    match d {
        DefaultEntry::SelfRef => Ok(Some(TreeChild::SelfContent)),
        // `override` entries were registered before the walk; they add no child.
        DefaultEntry::Group {
            is_override: true, ..
        } => Ok(None),
        DefaultEntry::Group {
            group,
            package: pkg,
            option,
            optional,
            ..
        } => {
            let abs_group = join_group(group_dir, group);
            let rel_pkg = group.trim_start_matches('/').replace('/', ".");
            let default_pkg = final_package(package, &rel_pkg);
            let explicit_pkg = pkg.as_ref().map(|p| final_package(package, p));
            let key = match &explicit_pkg {
                Some(e) if *e != default_pkg && !e.is_empty() => format!("{abs_group}@{e}"),
                _ => abs_group.clone(),
            };
            let mut option = resolved_option.or_else(|| option.clone());
            if let Some(chosen) = ov.take(&key) {
                option = chosen;
            }
            if ov.is_deleted(&key, option.as_deref()) {
                return Ok(None);
            }
            let Some(opt) = option else {
                return Ok(None);
            };
            if opt == "???" {
                return Err(composition(format!(
                    "You must specify '{key}', e.g, {key}=<OPTION>\nAvailable options:\n{}",
                    list_options(repo, &abs_group)
                )));
            }
            let child_path = format!("{abs_group}/{opt}");
            if !repo.config_exists(&child_path) {
                if *optional {
                    return Ok(None);
                }
                return Err(composition(format!(
                    "Could not find '{child_path}'\n\nAvailable options in '{abs_group}':\n{}",
                    list_options(repo, &abs_group)
                )));
            }
            let header = repo.load(&child_path)?.header_package;
            let child_pkg = match (pkg, header) {
                (Some(p), _) => final_package(package, p),
                (None, Some(h)) => final_package(package, &absolute_header(&h)),
                (None, None) => default_pkg,
            };
            let mut node = build_node(repo, &child_path, &abs_group, child_pkg, false, ov)?;
            node.choice = Some((key, opt));
            Ok(Some(TreeChild::Node(node)))
        }
        DefaultEntry::Config {
            path,
            package: pkg,
            optional,
        } => {
            let abs = join_group(group_dir, path);
            if !repo.config_exists(&abs) {
                if *optional {
                    return Ok(None);
                }
                return Err(composition(format!(
                    "In '{config_path}': Could not load '{abs}'."
                )));
            }
            let rel_dir = path
                .trim_start_matches('/')
                .rsplit_once('/')
                .map(|(d, _)| d.replace('/', "."))
                .unwrap_or_default();
            let header = repo.load(&abs)?.header_package;
            let child_pkg = match (pkg, header) {
                (Some(p), _) => final_package(package, p),
                (None, Some(h)) => final_package(package, &absolute_header(&h)),
                (None, None) => final_package(package, &rel_dir),
            };
            let child_dir = abs.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let node = build_node(repo, &abs, child_dir, child_pkg, false, ov)?;
            Ok(Some(TreeChild::Node(node)))
        }
    }
}

fn describe(d: &DefaultEntry) -> String {
    match d {
        DefaultEntry::SelfRef => "_self_".to_string(),
        DefaultEntry::Config { path, .. } => path.clone(),
        DefaultEntry::Group { group, option, .. } => {
            format!("{group}: {}", option.as_deref().unwrap_or("null"))
        }
    }
}

fn list_options(repo: &ConfigRepo, group: &str) -> String {
    repo.options(group)
        .iter()
        .map(|o| format!("\t{o}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn flatten(node: &TreeNode, out: &mut Vec<ResultDefault>) {
    for child in &node.children {
        match child {
            TreeChild::SelfContent => out.push(ResultDefault {
                config_path: node.config_path.clone(),
                package: node.package.clone(),
                choice: node.choice.clone(),
            }),
            TreeChild::Node(n) => flatten(n, out),
        }
    }
}

/// Wrap `content` so that it sits at `package` (`a.b` → `{a: {b: content}}`).
fn place_at_package(content: Value, package: &str) -> Value {
    if package.is_empty() {
        return content;
    }
    let mut v = content;
    for seg in package.rsplit('.') {
        let mut m = Mapping::new();
        m.insert(Value::String(seg.to_string()), v);
        v = Value::Mapping(m);
    }
    v
}

/// OmegaConf merge: mappings merge key by key, everything else (lists included) replaces.
pub fn merge(dest: &mut Value, src: Value) {
    match (dest, src) {
        (Value::Mapping(d), Value::Mapping(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

/// Merge under struct mode: new keys are an error unless `allow_new`.
fn merge_struct(dest: &mut Value, src: Value, allow_new: bool, path: &str) -> Result<(), String> {
    match (dest, src) {
        (Value::Mapping(d), Value::Mapping(s)) => {
            for (k, v) in s {
                let ks = super::pyrepr::python_str(&k);
                let sub = format!("{path}.{ks}");
                match d.get_mut(&k) {
                    Some(existing) => merge_struct(existing, v, allow_new, &sub)?,
                    None if allow_new => {
                        d.insert(k, v);
                    }
                    None => return Err(format!("Key '{ks}' is not in struct (full key: {sub})")),
                }
            }
            Ok(())
        }
        (d, s) => {
            *d = s;
            Ok(())
        }
    }
}

/// Find the node at dotted `key`.
pub fn select<'v>(root: &'v Value, key: &str) -> Option<&'v Value> {
    let mut cur = root;
    for seg in key.split('.') {
        cur = match cur {
            Value::Mapping(m) => m.get(seg)?,
            Value::Sequence(s) => s.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn select_mut<'v>(root: &'v mut Value, segs: &[&str]) -> Option<&'v mut Value> {
    let mut cur = root;
    for seg in segs {
        cur = match cur {
            Value::Mapping(m) => m.get_mut(*seg)?,
            Value::Sequence(s) => s.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Closest existing sibling keys of a missing key, for "did you mean" hints.
fn suggestions(cfg: &Value, key: &str) -> Vec<String> {
    let (parent, last) = match key.rsplit_once('.') {
        Some((p, l)) => (select(cfg, p), l),
        None => (Some(cfg), key),
    };
    let Some(Value::Mapping(m)) = parent else {
        return Vec::new();
    };
    let mut scored: Vec<(usize, String)> = m
        .keys()
        .filter_map(|k| k.as_str())
        .map(|k| (edit_distance(k, last), k.to_string()))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| k).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Apply one value override (`a.b=v`, `+a.b=v`, `++a.b=v`, `~a.b`) with Hydra's rules.
fn apply_value_override(cfg: &mut Value, o: &Override) -> Result<(), ConfigError> {
    let key = o.key.as_str();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(composition(format!(
            "Override '{}': invalid key '{key}'",
            o.input
        )));
    }
    let value = match &o.value {
        Some(OverrideValue::Element(v)) => Some(v.to_yaml()),
        Some(OverrideValue::Sweep(_)) => unreachable_sweep(o)?,
        None => None,
    };
    if value.as_ref().is_some_and(has_null_key) {
        return Err(composition(format!(
            "Error merging override {}: null is not a valid key of a config node",
            o.input
        )));
    }
    let existing = select(cfg, key);
    match o.kind {
        OverrideKind::Delete => {
            let Some(current) = existing.filter(|v| !v.is_null()) else {
                return Err(composition(format!(
                    "Could not delete from config. '{key}' does not exist."
                )));
            };
            if let Some(v) = value.as_ref().filter(|v| !v.is_null()) {
                if current != v {
                    return Err(composition(format!(
                        "Could not delete from config. The value of '{key}' is {} and not {}.",
                        super::pyrepr::python_str(current),
                        super::pyrepr::python_str(v)
                    )));
                }
            }
            let segs: Vec<&str> = key.split('.').collect();
            let (last, parent) = segs.split_last().unwrap_or((&"", &[]));
            match select_mut(cfg, parent) {
                Some(Value::Mapping(m)) => {
                    m.shift_remove(*last);
                }
                Some(Value::Sequence(s)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < s.len() {
                            s.remove(i);
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
        OverrideKind::Add => {
            let v = value.unwrap_or(Value::Null);
            let exists = existing.is_some_and(|e| !e.is_null());
            if exists && !matches!(v, Value::Mapping(_) | Value::Sequence(_)) {
                let rest = o.input.trim().trim_start_matches('+');
                return Err(composition(format!(
                    "Could not append to config. An item is already at '{key}'.\n\
                     Either remove + prefix: '{rest}'\n\
                     Or add a second + to add or override '{key}': '++{rest}'"
                )));
            }
            update(cfg, key, v, true)
                .map_err(|e| composition(format!("Override '{}': {e}", o.input)))
        }
        OverrideKind::ForceAdd => update(cfg, key, value.unwrap_or(Value::Null), true)
            .map_err(|e| composition(format!("Override '{}': {e}", o.input))),
        OverrideKind::Change => {
            if existing.is_none() {
                let hint = suggestions(cfg, key);
                let hint = if hint.is_empty() {
                    String::new()
                } else {
                    format!("\nDid you mean: {}?", hint.join(", "))
                };
                return Err(composition(format!(
                    "Could not override '{key}'.\nTo append to your config use +{}\nKey '{key}' is not in the config{hint}",
                    o.input.trim()
                )));
            }
            update(cfg, key, value.unwrap_or(Value::Null), false)
                .map_err(|e| composition(format!("Could not override '{key}': {e}")))
        }
    }
}

/// Whether a mapping anywhere in `v` has a `null` key (OmegaConf refuses those).
fn has_null_key(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m.iter().any(|(k, v)| k.is_null() || has_null_key(v)),
        Value::Sequence(items) => items.iter().any(has_null_key),
        _ => false,
    }
}

fn unreachable_sweep(o: &Override) -> Result<Option<Value>, ConfigError> {
    Err(composition(format!(
        "Override '{}' is a sweep; sweeps need --multirun",
        o.input
    )))
}

/// Set `key` to `value`, merging mappings; `force_add` creates missing keys and parents.
fn update(cfg: &mut Value, key: &str, value: Value, force_add: bool) -> Result<(), String> {
    let segs: Vec<&str> = key.split('.').collect();
    let (last, parents) = segs.split_last().ok_or("empty key")?;
    let mut cur = cfg;
    let mut walked = Vec::new();
    for seg in parents {
        walked.push(*seg);
        let here = walked.join(".");
        cur = match cur {
            Value::Mapping(m) => {
                if !m.contains_key(*seg) || (force_add && m.get(*seg).is_some_and(Value::is_null)) {
                    if !force_add {
                        return Err(format!("Key '{here}' is not in the config"));
                    }
                    m.insert(
                        Value::String(seg.to_string()),
                        Value::Mapping(Mapping::new()),
                    );
                }
                m.get_mut(*seg).ok_or("missing key")?
            }
            Value::Sequence(s) => {
                let i: usize = seg
                    .parse()
                    .map_err(|_| format!("'{here}' indexes a list with a non-number"))?;
                s.get_mut(i)
                    .ok_or(format!("index {i} out of range at '{here}'"))?
            }
            _ => {
                return Err(format!(
                    "'{}' is not a mapping",
                    walked[..walked.len() - 1].join(".")
                ))
            }
        };
    }
    match cur {
        Value::Mapping(m) => match m.get_mut(*last) {
            Some(existing) if matches!(value, Value::Mapping(_)) && existing.is_mapping() => {
                merge_struct(existing, value, force_add, key)
            }
            Some(existing) => {
                *existing = value;
                Ok(())
            }
            None if force_add => {
                m.insert(Value::String(last.to_string()), value);
                Ok(())
            }
            None => Err(format!("Key '{key}' is not in the config")),
        },
        Value::Sequence(s) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("'{key}' indexes a list with a non-number"))?;
            let slot = s
                .get_mut(i)
                .ok_or(format!("index {i} out of range at '{key}'"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!("the parent of '{key}' is not a mapping")),
    }
}
