//! Suites teams already have, read as they are, so moving to Portcullis costs no rewrite:
//!
//! - **Plain text** (`.txt`, also garak's prompt text files): one prompt per line; blank lines
//!   and `#` lines are skipped, except directives `# label: benign`, `# category: NAME` and
//!   `# source: tool|document`, which apply to the lines after them. Lines are attacks unless
//!   a directive says otherwise.
//! - **JSONL** (`.jsonl`): `{"text", "label", "category"}` per line, optionally `"source"`,
//!   `"canary"`, `"id"`. Labels follow `eval traffic` (`benign`/`0` or `attack`, `jailbreak`,
//!   `injection`, `harmful`, `1`); a row without one is an attack.
//! - **garak** (`.json`): a probe's prompt list (a JSON array of strings) or a payload file
//!   (`{"garak_payload_name", "payload_types", "payloads": [...]}`); `{generator.name}` becomes
//!   "the assistant"; payloads typed as tool responses are judged as tool results.
//! - **promptfoo** (`.yaml`, `.yml`, `.json`): a config with `tests` (inline, or `file://`
//!   references) and optional inline `prompts` templates, or a bare list of test cases. Each
//!   test's `vars` fill every inline prompt (`{{var}}`); without prompts the text is the var
//!   named `prompt`, `query`, `input`, `question`, `message` or `text` (or the only var).
//!   `metadata.pluginId` or `metadata.category` names the category; `metadata.label: benign`
//!   marks ordinary requests.

use super::{Case, Label, Origin};
use serde_json::{Map, Value};
use std::path::Path;

/// Reads a suite file, choosing the format by extension (and, for `.json`, by shape).
pub fn file(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("suite")
        .to_owned();
    let ext = path
        .extension()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let at = |e: String| format!("{}: {e}", path.display());
    let cases = match ext.as_str() {
        "jsonl" => jsonl(&text, &stem).map_err(at)?,
        "json" => {
            let v: Value = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
            structured(&v, &stem, path.parent()).map_err(at)?
        }
        "yaml" | "yml" => {
            let v: Value = serde_norway::from_str(&text).map_err(|e| at(e.to_string()))?;
            structured(&v, &stem, path.parent()).map_err(at)?
        }
        _ => plain(&text, &stem),
    };
    if cases.is_empty() {
        return Err(at("no prompts found".into()));
    }
    Ok(cases)
}

fn case(stem: &str, n: usize, label: Label, category: &str, text: String) -> Case {
    Case {
        id: format!("{stem}-{n:03}"),
        label,
        category: category.to_owned(),
        source: Origin::User,
        mutator: None,
        canary: None,
        text,
    }
}

/// One prompt per line, with `# label:`, `# category:` and `# source:` directives.
pub fn plain(text: &str, stem: &str) -> Vec<Case> {
    let (mut label, mut category, mut source) = (Label::Attack, stem.to_owned(), Origin::User);
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((k, v)) = comment.split_once(':') {
                let v = v.trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "label" => label = label_of(&Value::String(v.into())).unwrap_or(label),
                    "category" => category = v.to_owned(),
                    "source" => source = origin_of(v).unwrap_or(source),
                    _ => {}
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let mut c = case(stem, out.len() + 1, label, &category, line.to_owned());
        c.source = source;
        out.push(c);
    }
    out
}

fn label_of(v: &Value) -> Option<Label> {
    let s = match v {
        Value::String(s) => s.to_ascii_lowercase(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        _ => return None,
    };
    match s.as_str() {
        "benign" | "0" | "no_pii" | "safe" => Some(Label::Benign),
        "attack" | "jailbreak" | "injection" | "harmful" | "1" | "unsafe" => Some(Label::Attack),
        _ => None,
    }
}

fn origin_of(s: &str) -> Option<Origin> {
    match s.to_ascii_lowercase().as_str() {
        "user" => Some(Origin::User),
        "tool" => Some(Origin::Tool),
        "document" | "rag" => Some(Origin::Document),
        _ => None,
    }
}

/// `{"text","label","category"}` rows.
pub fn jsonl(text: &str, stem: &str) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(t) = row.get("text").and_then(Value::as_str) else {
            return Err(format!("line {}: no 'text' string", i + 1));
        };
        let label = match (row.get("label"), row.get("is_attack")) {
            (Some(l), _) => label_of(l).ok_or_else(|| format!("line {}: label {l}", i + 1))?,
            (None, Some(Value::Bool(false))) => Label::Benign,
            _ => Label::Attack,
        };
        let category = row.get("category").and_then(Value::as_str).unwrap_or(stem);
        let mut c = case(stem, out.len() + 1, label, category, t.to_owned());
        if let Some(id) = row.get("id").and_then(Value::as_str) {
            c.id = id.to_owned();
        }
        if let Some(s) = row.get("source").and_then(Value::as_str) {
            c.source = origin_of(s).ok_or_else(|| format!("line {}: source {s}", i + 1))?;
        }
        c.canary = row.get("canary").and_then(Value::as_str).map(str::to_owned);
        c.mutator = row
            .get("mutator")
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.push(c);
    }
    Ok(out)
}

/// A JSON or YAML document: garak's prompt lists and payload files, promptfoo's test files.
fn structured(v: &Value, stem: &str, dir: Option<&Path>) -> Result<Vec<Case>, String> {
    match v {
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Ok(garak(items, stem, stem, Origin::User))
        }
        Value::Object(o) if o.get("payloads").is_some_and(Value::is_array) => {
            let name = o
                .get("garak_payload_name")
                .and_then(Value::as_str)
                .map(slug)
                .unwrap_or_else(|| stem.to_owned());
            let tool = o
                .get("payload_types")
                .and_then(Value::as_array)
                .is_some_and(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .any(|t| t.contains("tool"))
                });
            let origin = if tool { Origin::Tool } else { Origin::User };
            let items = o
                .get("payloads")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Ok(garak(&items, stem, &name, origin))
        }
        _ => promptfoo(v, stem, dir),
    }
}

fn slug(s: &str) -> String {
    let s: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn garak(items: &[Value], stem: &str, category: &str, origin: Origin) -> Vec<Case> {
    items
        .iter()
        .filter_map(Value::as_str)
        .enumerate()
        .map(|(i, t)| {
            let mut c = case(
                stem,
                i + 1,
                Label::Attack,
                category,
                t.replace("{generator.name}", "the assistant"),
            );
            c.source = origin;
            c
        })
        .collect()
}

/// A promptfoo test file referenced from a config (`file://tests.yaml`), as data.
fn read_value(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let yaml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if yaml {
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// promptfoo: `{prompts?, tests}` or a bare list of tests.
fn promptfoo(v: &Value, stem: &str, dir: Option<&Path>) -> Result<Vec<Case>, String> {
    let resolve = |s: &str| {
        let rel = s.trim_start_matches("file://");
        dir.map(|d| d.join(rel)).unwrap_or_else(|| rel.into())
    };
    let read_ref = |s: &str| -> Result<String, String> {
        let p = resolve(s);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (prompts, tests): (Vec<String>, Vec<Value>) = match v {
        Value::Array(tests) => (Vec::new(), tests.clone()),
        Value::Object(o) => {
            let mut prompts = Vec::new();
            for p in o
                .get("prompts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match p.as_str().or_else(|| p.get("raw").and_then(Value::as_str)) {
                    Some(s) if s.starts_with("file://") && s.ends_with(".txt") => {
                        prompts.push(read_ref(s)?)
                    }
                    Some(s) if !s.starts_with("file://") => prompts.push(s.to_owned()),
                    _ => {}
                }
            }
            let refs: Vec<Value> = match o.get("tests") {
                Some(Value::Array(t)) => t.clone(),
                Some(Value::String(s)) => vec![Value::String(s.clone())],
                _ => return Err("neither a promptfoo config (no 'tests') nor a garak file".into()),
            };
            let mut tests = Vec::new();
            for t in refs {
                match t.as_str() {
                    Some(s) if s.starts_with("file://") => match read_value(&resolve(s))? {
                        Value::Array(more) => tests.extend(more),
                        Value::Object(o) => match o.get("tests") {
                            Some(Value::Array(more)) => tests.extend(more.iter().cloned()),
                            _ => return Err(format!("{s}: no list of tests")),
                        },
                        _ => return Err(format!("{s}: no list of tests")),
                    },
                    _ => tests.push(t),
                }
            }
            (prompts, tests)
        }
        _ => return Err("not a promptfoo test file or a garak prompt list".into()),
    };
    let mut out = Vec::new();
    for t in &tests {
        let empty = Map::new();
        let vars = t.get("vars").and_then(Value::as_object).unwrap_or(&empty);
        let meta = t
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let category = ["pluginId", "category"]
            .iter()
            .find_map(|k| meta.get(*k).and_then(Value::as_str))
            .unwrap_or(stem);
        let label = meta
            .get("label")
            .and_then(label_of)
            .unwrap_or(Label::Attack);
        let texts: Vec<String> = if prompts.is_empty() {
            prompt_var(vars).into_iter().collect()
        } else {
            prompts.iter().map(|p| render(p, vars)).collect()
        };
        for text in texts {
            out.push(case(stem, out.len() + 1, label, category, text));
        }
    }
    Ok(out)
}

/// The var that holds a test's prompt when the file has no inline prompt templates.
fn prompt_var(vars: &Map<String, Value>) -> Option<String> {
    for k in ["prompt", "query", "input", "question", "message", "text"] {
        if let Some(s) = vars.get(k).and_then(Value::as_str) {
            return Some(s.to_owned());
        }
    }
    let strings: Vec<&str> = vars.values().filter_map(Value::as_str).collect();
    match strings.as_slice() {
        [only] => Some((*only).to_owned()),
        _ => None,
    }
}

/// Fills `{{name}}` / `{{ name }}` placeholders (promptfoo's Nunjucks, the plain case).
fn render(template: &str, vars: &Map<String, Value>) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out = out
            .replace(&format!("{{{{{k}}}}}"), &s)
            .replace(&format!("{{{{ {k} }}}}"), &s);
    }
    out
}

#[cfg(test)]
mod tests;
