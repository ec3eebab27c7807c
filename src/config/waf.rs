//! The WAF side of `routes.yaml` (`waf:` at the top level and on a route)
//! and the rule files in the directory `waf.rules` names.
//!
//! Rule files are configuration too: they are decoded as strictly as
//! `routes.yaml` (unknown keys, bad values and broken regexes are problems
//! with the rule file's own `file:line:col`), into plain data that
//! `middleware::waf` compiles.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode::{Decoder, Node};
use super::{KeyPath, Problem};
use crate::syntax::is_tchar;

/// Default of `waf.anomaly_threshold`.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// Default of `waf.body_limit`.
pub const DEFAULT_BODY_LIMIT: u64 = 128 * 1024;
/// The largest `waf.body_limit` (the body is held in memory).
pub const MAX_BODY_LIMIT: u64 = 16 * 1024 * 1024;

/// `waf:` at the top level.
#[derive(Clone, Debug, PartialEq)]
pub struct WafConfig {
    /// The directory of rule files (`*.yaml`, `*.yml`).
    pub rules: PathBuf,
    pub mode: WafMode,
    /// A request whose score reaches this is blocked.
    pub anomaly_threshold: u32,
    /// Rules of this level and below are on (1-4).
    pub paranoia: u8,
    /// Bytes of a request body buffered for inspection.
    pub body_limit: u64,
    pub body_over_limit: OverLimit,
    pub at: KeyPath,
}

/// Whether matches block or are only logged and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WafMode {
    Block,
    Detect,
}

/// What happens to a body larger than `body_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// Inspect the first `body_limit` bytes, stream the rest through.
    InspectPrefix,
    /// Answer 413.
    Reject,
}

/// A route's `waf:`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RouteWaf {
    /// The top-level settings, as they are.
    #[default]
    Inherit,
    /// `waf: off`: the route is not inspected (and its body never buffered).
    Off,
    /// `waf: { exclude, mode, paranoia, exclude_args }`.
    Tuned(WafTuning),
}

/// What a route changes of the top-level settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WafTuning {
    /// Rule ids or families that never apply on this route.
    pub exclude: Vec<RuleRef>,
    pub mode: Option<WafMode>,
    pub paranoia: Option<u8>,
    /// Rules that do not apply to one argument.
    pub exclude_args: Vec<ArgExclusion>,
    pub at: KeyPath,
}

/// A rule named by its id, or every rule of a family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleRef {
    Id(u32),
    Family(String),
}

impl RuleRef {
    pub fn covers(&self, rule: &RuleSpec) -> bool {
        match self {
            RuleRef::Id(id) => *id == rule.id,
            RuleRef::Family(f) => *f == rule.family,
        }
    }
}

/// `{ rule: 942100, arg: "json:comment.body" }`: the rule (or family) is
/// not applied to the argument `arg` (a `*` matches any run of characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgExclusion {
    pub rule: RuleRef,
    pub arg: String,
}

/// A rule, as its file declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub id: u32,
    pub message: String,
    pub family: String,
    pub severity: Severity,
    /// What a match adds to the request's anomaly score.
    pub score: u32,
    /// The lowest `paranoia` that turns the rule on.
    pub paranoia: u8,
    pub targets: Vec<Target>,
    pub transforms: Vec<Transform>,
    pub patterns: Vec<String>,
    /// The rule matches when none of its patterns match any of its targets'
    /// values (a missing header, say).
    pub negate: bool,
    pub action: RuleAction,
    /// Where it is declared (for problems found when compiling).
    pub file: Arc<Path>,
    pub at: KeyPath,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Notice,
}

impl Severity {
    /// The score a match adds unless the rule sets `score` (CRS's values).
    pub fn score(self) -> u32 {
        match self {
            Severity::Critical => 5,
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Notice => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Add to the anomaly score (the default).
    Score,
    /// Block at once, whatever the score.
    Block,
    /// Only log.
    Log,
}

/// The parts of a request a rule looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Method,
    /// The normalised path (what routing matched).
    Path,
    /// The path as the client sent it.
    PathRaw,
    /// The raw query string.
    Query,
    /// Every argument's value: query, form, JSON and multipart fields.
    Args,
    /// Every argument's name (JSON: every key).
    ArgNames,
    /// Every header's value.
    Headers,
    /// One header's values (lower-case name).
    Header(String),
    HeaderNames,
    Cookies,
    CookieNames,
    /// A body that is not a form, JSON or multipart, as it came.
    Body,
    /// The file names of multipart uploads.
    Files,
    /// What is wrong with the request's framing and size, by name
    /// (`duplicate-host`, `content-length-and-transfer-encoding`, ...):
    /// see `middleware::waf::inspect::anomalies`.
    Anomalies,
}

impl Target {
    fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "method" => Target::Method,
            "path" => Target::Path,
            "path_raw" => Target::PathRaw,
            "query" => Target::Query,
            "args" => Target::Args,
            "arg_names" => Target::ArgNames,
            "headers" => Target::Headers,
            "header_names" => Target::HeaderNames,
            "cookies" => Target::Cookies,
            "cookie_names" => Target::CookieNames,
            "body" => Target::Body,
            "files" => Target::Files,
            "anomalies" => Target::Anomalies,
            "user_agent" => Target::Header("user-agent".into()),
            _ => {
                let name = s.strip_prefix("header:").or_else(|| s.strip_prefix("headers:"))?;
                if name.is_empty() || !name.bytes().all(is_tchar) {
                    return None;
                }
                Target::Header(name.to_ascii_lowercase())
            }
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Target::Method => "method",
            Target::Path => "path",
            Target::PathRaw => "path_raw",
            Target::Query => "query",
            Target::Args => "args",
            Target::ArgNames => "arg_names",
            Target::Headers => "headers",
            Target::Header(h) => return write!(f, "header:{h}"),
            Target::HeaderNames => "header_names",
            Target::Cookies => "cookies",
            Target::CookieNames => "cookie_names",
            Target::Body => "body",
            Target::Files => "files",
            Target::Anomalies => "anomalies",
        };
        f.write_str(s)
    }
}

const TARGETS: &str = "method, path, path_raw, query, args, arg_names, headers, header:NAME, header_names, \
                       cookies, cookie_names, user_agent, body, files, anomalies";

/// Rewrites applied to a value before a rule's patterns see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transform {
    /// `%XX` and `%uXXXX`, repeated until nothing changes (and `+` as space).
    UrlDecode,
    /// `&lt;`, `&#60;`, `&#x3c;` and the other named entities that matter.
    HtmlEntityDecode,
    /// `\xHH`, `\uHHHH`, `\OOO` and the one-letter escapes.
    JsDecode,
    /// `\HH…` CSS escapes.
    CssDecode,
    Lowercase,
    /// `/./`, `/../`, `//` and backslashes resolved.
    NormalizePath,
    RemoveNulls,
    /// Runs of whitespace become one space.
    CompressWhitespace,
    /// SQL block comments (`/* */`, and the markers of `/*!50000 … */`)
    /// become one space.
    RemoveComments,
    /// The value as base64 (standard or URL-safe), if it is.
    Base64Decode,
    /// Overlong UTF-8 forms (`C0 AE`) decoded to what they encode.
    Utf8Overlong,
    /// A command line as a shell reads it: quotes, backslashes and carets
    /// removed (`c'a't`, `w\ho^ami`), `,` as a space, spaces compressed,
    /// lower case (`;` and new lines kept).
    CmdLine,
}

const TRANSFORMS: &[(&str, Transform)] = &[
    ("url_decode", Transform::UrlDecode),
    ("html_entity_decode", Transform::HtmlEntityDecode),
    ("js_decode", Transform::JsDecode),
    ("css_decode", Transform::CssDecode),
    ("lowercase", Transform::Lowercase),
    ("normalize_path", Transform::NormalizePath),
    ("remove_nulls", Transform::RemoveNulls),
    ("compress_whitespace", Transform::CompressWhitespace),
    ("remove_comments", Transform::RemoveComments),
    ("base64_decode", Transform::Base64Decode),
    ("utf8_overlong", Transform::Utf8Overlong),
    ("cmd_line", Transform::CmdLine),
];

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = TRANSFORMS.iter().find(|(_, t)| t == self).map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// `waf:` at the top level; `rules` resolves against `base`. A bad value
/// is reported and its default used, so every problem shows at once.
pub(super) fn decode_waf(d: &mut Decoder<'_>, node: &Node<'_>, base: &Path) -> Option<WafConfig> {
    const KEYS: &[&str] =
        &["rules", "mode", "anomaly_threshold", "paranoia", "body_limit", "body_over_limit"];
    let t = d.table(node, KEYS, &[])?;
    let rules = t.get("rules").and_then(|n| d.string(&n)).unwrap_or_else(|| "waf-rules".into());
    let mode = t.get("mode").and_then(|n| decode_mode(d, &n)).unwrap_or(WafMode::Block);
    let anomaly_threshold = t.get("anomaly_threshold").and_then(|n| d.integer(&n, 1, 10_000));
    let paranoia = t.get("paranoia").and_then(|n| d.integer(&n, 1, 4)).unwrap_or(1);
    let body_limit = t.get("body_limit").and_then(|n| {
        let size = d.size(&n)?;
        if !(1..=MAX_BODY_LIMIT).contains(&size) {
            d.invalid(&n, format!("expected a size from 1B to {}MiB", MAX_BODY_LIMIT >> 20));
            return None;
        }
        Some(size)
    });
    let body_over_limit =
        match t.get("body_over_limit").and_then(|n| d.choice(&n, &["inspect_prefix", "reject"])) {
            Some("reject") => OverLimit::Reject,
            _ => OverLimit::InspectPrefix,
        };
    Some(WafConfig {
        rules: base.join(rules.strip_prefix("./").unwrap_or(&rules)),
        mode,
        anomaly_threshold: anomaly_threshold.map_or(DEFAULT_THRESHOLD, |n| n as u32),
        paranoia: paranoia as u8,
        body_limit: body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
        body_over_limit,
        at: node.path.clone(),
    })
}

fn decode_mode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<WafMode> {
    match d.choice(node, &["block", "detect"])? {
        "detect" => Some(WafMode::Detect),
        _ => Some(WafMode::Block),
    }
}

/// A route's `waf:`: `off`, or what it tunes.
pub(super) fn decode_route_waf(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<RouteWaf> {
    match node.value {
        serde_yaml::Value::Bool(false) => return Some(RouteWaf::Off),
        serde_yaml::Value::String(s) if s == "off" => return Some(RouteWaf::Off),
        serde_yaml::Value::Mapping(_) | serde_yaml::Value::Null => {}
        other => {
            d.invalid(
                node,
                format!(
                    "expected `off` or a mapping such as `{{ exclude: [942100] }}`, found {}",
                    super::decode::describe(other)
                ),
            );
            return None;
        }
    }
    let t = d.table(node, &["exclude", "mode", "paranoia", "exclude_args"], &[])?;
    let mut tuning = WafTuning { at: node.path.clone(), ..Default::default() };
    if let Some(n) = t.get("exclude") {
        tuning.exclude = d.list(&n).iter().filter_map(|n| decode_rule_ref(d, n)).collect();
    }
    if let Some(n) = t.get("mode") {
        tuning.mode = decode_mode(d, &n);
    }
    if let Some(n) = t.get("paranoia") {
        tuning.paranoia = d.integer(&n, 1, 4).map(|p| p as u8);
    }
    if let Some(n) = t.get("exclude_args") {
        for item in d.list(&n) {
            let Some(e) = d.table(&item, &["rule", "arg"], &[]) else { continue };
            let rule = e.require(d, "rule").and_then(|n| decode_rule_ref(d, &n));
            let arg = e.require(d, "arg").and_then(|n| d.string(&n));
            if let (Some(rule), Some(arg)) = (rule, arg) {
                tuning.exclude_args.push(ArgExclusion { rule, arg });
            }
        }
    }
    Some(RouteWaf::Tuned(tuning))
}

fn decode_rule_ref(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<RuleRef> {
    match node.value {
        serde_yaml::Value::Number(_) => {
            d.integer(node, 1, u64::from(u32::MAX)).map(|n| RuleRef::Id(n as u32))
        }
        serde_yaml::Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
            d.integer(node, 1, u64::from(u32::MAX)).map(|n| RuleRef::Id(n as u32))
        }
        serde_yaml::Value::String(s) if is_family(s) => Some(RuleRef::Family(s.clone())),
        other => {
            d.invalid(
                node,
                format!("expected a rule id or a family name, found {}", super::decode::describe(other)),
            );
            None
        }
    }
}

fn is_family(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Reads every `*.yaml` / `*.yml` file of `dir` (in name order). Rule ids
/// are unique across files. Problems come located in their own files.
pub fn load_rules(dir: &Path) -> Result<Vec<RuleSpec>, Vec<Problem>> {
    let in_dir = |message: String| {
        let mut p = Problem::at_value(KeyPath::root(), message);
        p.file = Some(Arc::from(dir));
        vec![p]
    };
    let files = rule_files(dir).map_err(|e| in_dir(format!("cannot read the WAF rule directory: {e}")))?;
    if files.is_empty() {
        return Err(in_dir("the WAF rule directory has no rule files (*.yaml)".into()));
    }
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<u32, (Arc<Path>, KeyPath)> = HashMap::new();
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                problems.extend(Problem::in_file(
                    &file,
                    "",
                    vec![Problem::at_value(KeyPath::root(), format!("cannot read the file: {e}"))],
                ));
                continue;
            }
        };
        let (mut specs, mut found) = parse_rule_file(Arc::from(file.as_path()), &source);
        for spec in &specs {
            match seen.get(&spec.id) {
                Some((other, at)) => {
                    let place = if **other == *spec.file {
                        at.to_string()
                    } else {
                        format!("{} ({at})", other.display())
                    };
                    found.push(Problem::at_value(
                        spec.at.key("id"),
                        format!("rule id {} is used twice: also at {place}", spec.id),
                    ));
                }
                None => {
                    seen.insert(spec.id, (spec.file.clone(), spec.at.clone()));
                }
            }
        }
        if found.is_empty() {
            rules.append(&mut specs);
        } else {
            problems.extend(Problem::in_file(&file, &source, found));
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

fn rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// One rule file: `defaults:` (any rule key but `id`, `message` and
/// `patterns`) and `rules:`.
pub fn parse_rule_file(file: Arc<Path>, source: &str) -> (Vec<RuleSpec>, Vec<Problem>) {
    let doc: serde_yaml::Value = match serde_yaml::from_str(source) {
        Ok(v) => v,
        Err(e) => {
            let message = e.to_string();
            let message = message.find(" at line ").map_or(message.clone(), |i| message[..i].to_owned());
            let mut p = Problem::at_value(KeyPath::root(), format!("invalid YAML: {message}"));
            p.location = e.location().map(|l| (l.line(), l.column()));
            return (Vec::new(), vec![p]);
        }
    };
    let mut d = Decoder::new(&|_| None);
    let root = Node { value: &doc, path: KeyPath::root() };
    let mut rules = Vec::new();
    if let Some(t) = d.table(&root, &["defaults", "rules"], &[]) {
        let defaults = match t.get("defaults") {
            Some(n) => decode_defaults(&mut d, &n),
            None => Defaults::default(),
        };
        match t.get("rules") {
            Some(n) => {
                for item in d.list(&n) {
                    if let Some(rule) = decode_rule(&mut d, &item, &defaults, &file) {
                        rules.push(rule);
                    }
                }
            }
            None => d.report(Problem::at_value(KeyPath::root(), "missing required key `rules`")),
        }
    }
    (rules, d.into_problems())
}

const RULE_KEYS: &[&str] = &[
    "id",
    "message",
    "family",
    "severity",
    "score",
    "paranoia",
    "targets",
    "transforms",
    "patterns",
    "negate",
    "action",
];

/// What a file's rules share unless they say otherwise.
#[derive(Default)]
struct Defaults {
    family: Option<String>,
    severity: Option<Severity>,
    score: Option<u32>,
    paranoia: Option<u8>,
    targets: Option<Vec<Target>>,
    transforms: Option<Vec<Transform>>,
    negate: Option<bool>,
    action: Option<RuleAction>,
}

fn decode_defaults(d: &mut Decoder<'_>, node: &Node<'_>) -> Defaults {
    let keys: Vec<&'static str> =
        RULE_KEYS.iter().copied().filter(|k| !matches!(*k, "id" | "message" | "patterns")).collect();
    let Some(t) = d.table(node, &keys, &[]) else { return Defaults::default() };
    Defaults {
        family: t.get("family").and_then(|n| decode_family(d, &n)),
        severity: t.get("severity").and_then(|n| decode_severity(d, &n)),
        score: t.get("score").and_then(|n| d.integer(&n, 0, 1000)).map(|n| n as u32),
        paranoia: t.get("paranoia").and_then(|n| d.integer(&n, 1, 4)).map(|n| n as u8),
        targets: t.get("targets").map(|n| decode_targets(d, &n)),
        transforms: t.get("transforms").map(|n| decode_transforms(d, &n)),
        negate: t.get("negate").and_then(|n| d.bool(&n)),
        action: t.get("action").and_then(|n| decode_action(d, &n)),
    }
}

fn decode_rule(
    d: &mut Decoder<'_>,
    node: &Node<'_>,
    defaults: &Defaults,
    file: &Arc<Path>,
) -> Option<RuleSpec> {
    let t = d.table(node, RULE_KEYS, &[])?;
    let id = t.require(d, "id").and_then(|n| d.integer(&n, 1, u64::from(u32::MAX))).map(|n| n as u32);
    let message = t.require(d, "message").and_then(|n| d.string(&n));
    let family = match t.get("family") {
        Some(n) => decode_family(d, &n),
        None => {
            if defaults.family.is_none() {
                d.report(Problem::at_value(
                    node.path.clone(),
                    "missing required key `family` (here or in `defaults`)",
                ));
            }
            defaults.family.clone()
        }
    };
    let severity = match t.get("severity") {
        Some(n) => decode_severity(d, &n),
        None => Some(defaults.severity.unwrap_or(Severity::Critical)),
    };
    let score = match t.get("score") {
        Some(n) => d.integer(&n, 0, 1000).map(|n| Some(n as u32)),
        None => Some(defaults.score),
    };
    let paranoia = match t.get("paranoia") {
        Some(n) => d.integer(&n, 1, 4).map(|n| n as u8),
        None => Some(defaults.paranoia.unwrap_or(1)),
    };
    let targets = match t.get("targets") {
        Some(n) => decode_targets(d, &n),
        None => defaults.targets.clone().unwrap_or_default(),
    };
    if t.get("targets").is_none() && targets.is_empty() {
        d.report(Problem::at_value(node.path.clone(), "a rule needs `targets` (here or in `defaults`)"));
    }
    let transforms = match t.get("transforms") {
        Some(n) => decode_transforms(d, &n),
        None => defaults.transforms.clone().unwrap_or_default(),
    };
    let patterns = t.require(d, "patterns").map(|n| decode_patterns(d, &n)).unwrap_or_default();
    let negate = match t.get("negate") {
        Some(n) => d.bool(&n),
        None => Some(defaults.negate.unwrap_or(false)),
    };
    let action = match t.get("action") {
        Some(n) => decode_action(d, &n),
        None => Some(defaults.action.unwrap_or(RuleAction::Score)),
    };
    let severity = severity?;
    Some(RuleSpec {
        id: id?,
        message: message?,
        family: family?,
        severity,
        score: score?.unwrap_or(severity.score()),
        paranoia: paranoia?,
        targets,
        transforms,
        patterns,
        negate: negate?,
        action: action?,
        file: file.clone(),
        at: node.path.clone(),
    })
}

fn decode_family(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<String> {
    let s = d.string(node)?;
    if is_family(&s) {
        return Some(s);
    }
    d.invalid(node, format!("`{s}` is not a family name (lower-case letters, digits, `_` and `-`)"));
    None
}

fn decode_severity(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Severity> {
    Some(match d.choice(node, &["critical", "error", "warning", "notice"])? {
        "critical" => Severity::Critical,
        "error" => Severity::Error,
        "warning" => Severity::Warning,
        _ => Severity::Notice,
    })
}

fn decode_action(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<RuleAction> {
    Some(match d.choice(node, &["score", "block", "log"])? {
        "block" => RuleAction::Block,
        "log" => RuleAction::Log,
        _ => RuleAction::Score,
    })
}

fn decode_targets(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<Target> {
    let mut out = Vec::new();
    for n in d.list(node) {
        let Some(s) = d.string(&n) else { continue };
        match Target::parse(&s) {
            Some(t) if !out.contains(&t) => out.push(t),
            Some(_) => d.invalid(&n, format!("`{s}` is listed twice")),
            None => d.invalid(&n, format!("unknown target `{s}`; expected one of: {TARGETS}")),
        }
    }
    out
}

fn decode_transforms(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<Transform> {
    let names: Vec<&'static str> = TRANSFORMS.iter().map(|(n, _)| *n).collect();
    d.list(node)
        .iter()
        .filter_map(|n| d.choice(n, &names))
        .filter_map(|name| TRANSFORMS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t))
        .collect()
}

/// Each pattern must compile on its own (a problem names the rule's line);
/// the sets they are compiled into later then only fail on size.
fn decode_patterns(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<String> {
    let items = d.list(node);
    if items.is_empty() {
        d.invalid(node, "a rule needs at least one pattern");
    }
    let mut out = Vec::with_capacity(items.len());
    for n in items {
        let Some(p) = d.string(&n) else { continue };
        match regex::bytes::RegexBuilder::new(&p).unicode(false).size_limit(PATTERN_SIZE_LIMIT).build() {
            Ok(_) => out.push(p),
            Err(e) => d.invalid(&n, format!("the pattern does not compile: {}", regex_reason(&e))),
        }
    }
    out
}

/// Patterns are compiled without Unicode classes (`\w`, `\b`, `.` and
/// `(?i)` work on bytes and ASCII, which the lazy DFA runs without falling
/// back); a pattern opts in with `(?u)`.
///
/// The compiled size one pattern may take (regex's default is 10 MiB; a
/// rule set holds hundreds).
pub const PATTERN_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// The regex crate's reason, without its drawing of where (the problem's
/// location says that).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// The rule ids and families of `rules`, for checking a route's
/// `exclude` and `exclude_args` against what exists.
pub fn known_refs(rules: &[RuleSpec]) -> (BTreeMap<u32, &str>, Vec<&str>) {
    let ids = rules.iter().map(|r| (r.id, r.family.as_str())).collect();
    let mut families: Vec<&str> = rules.iter().map(|r| r.family.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    (ids, families)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> (Vec<RuleSpec>, Vec<Problem>) {
        parse_rule_file(Arc::from(Path::new("r.yaml")), src)
    }

    #[test]
    fn rules_take_the_file_defaults_and_their_own_keys() {
        let (rules, problems) = parse(
            "defaults: { family: sqli, targets: [args, header:Referer], transforms: [url_decode, lowercase] }\n\
             rules:\n\
             - id: 942100\n  message: tautology\n  patterns: ['(?i)\\bor\\s+1=1']\n\
             - id: 942101\n  message: m\n  severity: notice\n  paranoia: 2\n  targets: [user_agent]\n  patterns: [x]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].family, "sqli");
        assert_eq!(rules[0].score, 5);
        assert_eq!(rules[0].targets, vec![Target::Args, Target::Header("referer".into())]);
        assert_eq!(rules[0].transforms, vec![Transform::UrlDecode, Transform::Lowercase]);
        assert_eq!((rules[1].score, rules[1].paranoia), (2, 2));
        assert_eq!(rules[1].targets, vec![Target::Header("user-agent".into())]);
    }

    #[test]
    fn every_problem_of_a_rule_file_is_reported() {
        let (_, problems) = parse(
            "rules:\n\
             - id: 1\n  message: m\n  family: sqli\n  targets: [argz]\n  transforms: [urldecode]\n  patterns: ['(unclosed']\n  colour: red\n",
        );
        let text: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
        assert_eq!(problems.len(), 4, "{text:#?}");
        assert!(text[0].contains("unknown key `colour`"));
        assert!(text.iter().any(|t| t.contains("unknown target `argz`")));
        assert!(text.iter().any(|t| t.contains("did you mean `url_decode`")));
        assert!(text
            .iter()
            .any(|t| t.ends_with("rules[0].patterns[0]: the pattern does not compile: unclosed group")));
    }
}
