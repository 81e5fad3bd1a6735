//! The config's sources: the TOML text (with the line of every key, for error messages) and
//! the `NOVA_NETWORK_HA__SECTION__KEY` environment overrides, merged by the `config` crate.
//!
//! Owns reading and merging; never interprets a value (that is `validate`'s job).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Location, Origin};
use super::raw::RawConfig;

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "NOVA_NETWORK_HA";
/// Separator between the prefix, the section and the key in those variables.
pub const ENV_SEPARATOR: &str = "__";

/// Lists of tables, which environment variables cannot address.
const LIST_KEYS: [&str; 3] = ["nodes", "paths", "failover.vips"];

/// Where each key of the file and of the environment came from.
#[derive(Debug, Default)]
pub struct Origins {
    file: PathBuf,
    /// Dotted key (`nodes[1].priority`) -> 1-based line in the TOML text.
    lines: BTreeMap<String, usize>,
    /// Dotted key (`timers.keepalive`) -> the environment variable that set it.
    env: BTreeMap<String, String>,
}

impl Origins {
    /// The location of `key`: its env variable, its line, or the line of the nearest enclosing
    /// table present in the file (for a missing key).
    pub fn at(&self, key: &str) -> Location {
        let mut k = key;
        loop {
            if let Some(var) = self.env.get(k) {
                return self.loc(Origin::Env(var.clone()));
            }
            if let Some(&line) = self.lines.get(k) {
                return self.loc(Origin::Line(line));
            }
            match parent(k) {
                Some(p) => k = p,
                None => return self.loc(Origin::File),
            }
        }
    }

    /// Whether `key` (or a table holding it) was set from the environment, where values are
    /// text and so may be converted (`"100"` to a number).
    pub fn from_env(&self, key: &str) -> bool {
        let mut k = key;
        loop {
            if self.env.contains_key(k) {
                return true;
            }
            match parent(k) {
                Some(p) => k = p,
                None => return false,
            }
        }
    }

    /// The config file these origins describe.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn loc(&self, origin: Origin) -> Location {
        Location {
            file: self.file.clone(),
            origin,
        }
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> none.
fn parent(key: &str) -> Option<&str> {
    let cut = key.rfind(['.', '['])?;
    Some(&key[..cut])
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn record(text: &str, prefix: &str, table: &DeTable<'_>, lines: &mut BTreeMap<String, usize>) {
    for (k, v) in table.iter() {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        lines
            .entry(key.clone())
            .or_insert_with(|| line_of(text, k.span().start));
        record_value(text, &key, v.get_ref(), v.span().start, lines);
    }
}

fn record_value(
    text: &str,
    key: &str,
    value: &DeValue<'_>,
    start: usize,
    lines: &mut BTreeMap<String, usize>,
) {
    match value {
        DeValue::Table(t) => record(text, key, t, lines),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let k = format!("{key}[{i}]");
                let start = item.span().start;
                lines.insert(k.clone(), line_of(text, start));
                record_value(text, &k, item.get_ref(), start, lines);
            }
        }
        _ => {
            lines.entry(key.to_owned()).or_insert(line_of(text, start));
        }
    }
}

/// Parse the TOML text for key lines; every syntax error is returned with its line.
pub fn lines(file: &Path, text: &str) -> Result<BTreeMap<String, usize>, Vec<ConfigError>> {
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| ConfigError::Syntax {
                file: file.to_owned(),
                line: e.span().map_or(1, |s| line_of(text, s.start)),
                message: e.message().trim().to_owned(),
            })
            .collect());
    }
    let mut lines = BTreeMap::new();
    record(text, "", table.get_ref(), &mut lines);
    Ok(lines)
}

/// The overriding environment variables among `env`, as dotted key -> variable name.
pub fn env_keys(env: &HashMap<String, String>) -> BTreeMap<String, String> {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
    env.keys()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let rest = lower.strip_prefix(&prefix)?;
            Some((rest.replace(ENV_SEPARATOR, "."), name.clone()))
        })
        .collect()
}

/// Merge the TOML text and the environment with the `config` crate and read the raw shape.
pub fn merge(
    file: &Path,
    text: &str,
    env: &HashMap<String, String>,
) -> Result<(RawConfig, Origins), Vec<ConfigError>> {
    let lines = lines(file, text)?;
    let env_keys = env_keys(env);
    let origins = Origins {
        file: file.to_owned(),
        lines,
        env: env_keys,
    };
    // The environment can only set keys of tables: a list of tables would be replaced whole.
    let bad: Vec<ConfigError> = origins
        .env
        .iter()
        .filter(|(key, _)| {
            LIST_KEYS
                .iter()
                .any(|l| key.as_str() == *l || key.starts_with(&format!("{l}.")))
        })
        .map(|(key, var)| ConfigError::Invalid {
            at: origins.loc(Origin::Env(var.clone())),
            key: key.clone(),
            found: format!("{:?}", env.get(var).map_or("", String::as_str)),
            expected: "a key outside [[nodes]], [[paths]] and failover.vips, which can only be changed in the file".into(),
        })
        .collect();
    if !bad.is_empty() {
        return Err(bad);
    }
    // Only our variables reach the `config` crate, so others cannot be misread.
    let ours: config::Map<String, String> = env
        .iter()
        .filter(|(name, _)| origins.env.values().any(|v| v == *name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .source(Some(ours)),
        )
        .build()
        .and_then(|c| c.try_deserialize::<RawConfig>());
    match built {
        Ok(raw) => Ok((raw, origins)),
        Err(e) => Err(vec![shape_error(&origins, e)]),
    }
}

fn shape_error(origins: &Origins, e: config::ConfigError) -> ConfigError {
    // The `config` crate words these as "invalid type: X, expected Y for key `k` in origin";
    // its variants differ by version, so the text is taken apart rather than the enum.
    let text = e.to_string();
    let (message, key) = match text.find(" for key `") {
        Some(pos) => {
            let rest = &text[pos + " for key `".len()..];
            let key = rest.split('`').next().unwrap_or_default();
            (text[..pos].to_owned(), key.to_owned())
        }
        None => (text.clone(), String::new()),
    };
    let message = readable(&message);
    ConfigError::Shape {
        at: origins.at(&key),
        key,
        message,
    }
}

/// Word serde's expectations for a config writer: `struct RawTimers` is "a table".
fn readable(message: &str) -> String {
    let mut out = message.replace("invalid type: ", "found ");
    while let Some(pos) = out.find("struct Raw") {
        let end = out[pos..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ' '))
            .map_or(out.len(), |e| pos + e);
        let end = out[pos + "struct Raw".len()..end]
            .find(' ')
            .map_or(end, |sp| pos + "struct Raw".len() + sp);
        out.replace_range(pos..end, "a table");
    }
    out.replace("a sequence", "a list of tables")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[cluster]\nid = 1\n\n[[nodes]]\nname = \"a\"\naddresses = { hb0 = \"1.2.3.4\" }\n\n[[nodes]]\nname = \"b\"\n[timers]\nkeepalive = \"1s\"\n";

    #[test]
    fn lines_of_keys_tables_and_array_items() {
        let l = lines(Path::new("f.toml"), TEXT).unwrap();
        assert_eq!(l["cluster"], 1);
        assert_eq!(l["cluster.id"], 2);
        assert_eq!(l["nodes[0].name"], 5);
        assert_eq!(l["nodes[0].addresses.hb0"], 6);
        assert_eq!(l["nodes[1].name"], 9);
        assert_eq!(l["timers.keepalive"], 11);
    }

    #[test]
    fn missing_key_points_at_enclosing_table() {
        let o = Origins {
            file: "f.toml".into(),
            lines: lines(Path::new("f.toml"), TEXT).unwrap(),
            env: BTreeMap::new(),
        };
        assert_eq!(o.at("nodes[1].priority").to_string(), "f.toml:8");
        assert_eq!(o.at("auth.key_file").to_string(), "f.toml");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = lines(Path::new("f.toml"), "[a]\nb = 1\nc = = 2\n").unwrap_err();
        assert!(!e.is_empty());
        assert!(
            e[0].to_string().starts_with("f.toml:3: toml syntax error"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn env_names_map_to_dotted_keys() {
        let env: HashMap<String, String> = [
            (
                "NOVA_NETWORK_HA__TIMERS__KEEPALIVE".to_owned(),
                "1s".to_owned(),
            ),
            ("PATH".to_owned(), "/bin".to_owned()),
        ]
        .into();
        let k = env_keys(&env);
        assert_eq!(k.len(), 1);
        assert_eq!(k["timers.keepalive"], "NOVA_NETWORK_HA__TIMERS__KEEPALIVE");
    }
}
