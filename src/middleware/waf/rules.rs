//! A rule set compiled for matching, and a route's view of it.
//!
//! Every pattern over the same target and transform pipeline goes into one
//! `regex::bytes::RegexSet` (a group), so a clean value costs one pass per
//! group that selects it; which patterns matched is asked only when the set
//! says something did. The pipelines form a tree of transform steps, so a
//! value is transformed once per step whatever the number of pipelines
//! sharing it (`url_decode` → `html_entity_decode` → `remove_nulls` is
//! computed once for every pipeline that starts so), and a step only when
//! a group below it selects the value.
//!
//! The cost is per value and group: `cargo run --release --example
//! waf-check -- waf-rules CORPUS --time` measured the benign corpus at
//! 74 µs per request with one walk per target and names formatted for
//! every value, 64 µs with this tree, and 20 µs once the shipped rules
//! shared seven pipelines and clean short values were remembered
//! ([`CleanValues`]); bench/RESULTS.md has the figures.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::config::waf::{
    ArgExclusion, RuleAction, RuleRef, RuleSpec, Target, Transform, WafConfig, WafMode, WafTuning,
    PATTERN_SIZE_LIMIT,
};

use super::inspect::{covers, kinds_of, reads_body, Inspected, Item, Kind, Kinds};
use super::transform;
use crate::worker::PerWorker;

/// The patterns of every rule that reads one target through one pipeline.
struct Group {
    target: Target,
    set: RegexSet,
    /// Pattern index → rule index.
    owners: Vec<usize>,
}

/// A step of the pipeline tree: the transform it applies to its parent's
/// result (none at the root), the groups whose pipeline ends here, and the
/// steps that follow.
#[derive(Default)]
struct Step {
    transform: Option<Transform>,
    groups: Vec<usize>,
    children: Vec<usize>,
}

/// The compiled rules of a configuration, shared by every route.
pub struct RuleSet {
    pub rules: Vec<RuleSpec>,
    groups: Vec<Group>,
    /// The pipeline tree; index 0 is the root (no transform).
    steps: Vec<Step>,
}

/// A set too large to compile.
#[derive(Debug, thiserror::Error)]
#[error("the WAF rules on `{target}` with transforms [{pipeline}] do not compile together: {reason}")]
pub struct CompileError {
    pub target: String,
    pub pipeline: String,
    pub reason: String,
}

impl RuleSet {
    pub fn compile(rules: Vec<RuleSpec>) -> Result<RuleSet, CompileError> {
        // (pipeline, target) → (rule index, pattern) of every rule reading it.
        type Key = (Vec<Transform>, Target);
        let mut by_group: BTreeMap<Key, Vec<(usize, &str)>> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for target in &rule.targets {
                let patterns = by_group.entry((rule.transforms.clone(), target.clone())).or_default();
                patterns.extend(rule.patterns.iter().map(|p| (i, p.as_str())));
            }
        }
        let mut steps = vec![Step::default()];
        let mut groups = Vec::with_capacity(by_group.len());
        for ((pipeline, target), patterns) in by_group {
            let set = RegexSetBuilder::new(patterns.iter().map(|(_, p)| *p))
                .unicode(false)
                .size_limit(PATTERN_SIZE_LIMIT * patterns.len().max(1))
                .dfa_size_limit(8 * 1024 * 1024)
                .build()
                .map_err(|e| CompileError {
                    target: target.to_string(),
                    pipeline: pipeline.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
                    reason: e.to_string(),
                })?;
            let step = step_for(&mut steps, &pipeline);
            steps[step].groups.push(groups.len());
            groups.push(Group { target, set, owners: patterns.iter().map(|(i, _)| *i).collect() });
        }
        Ok(RuleSet { rules, groups, steps })
    }
}

/// The step at the end of `pipeline`, made on the way if need be.
fn step_for(steps: &mut Vec<Step>, pipeline: &[Transform]) -> usize {
    let mut at = 0;
    for t in pipeline {
        let existing = steps[at].children.iter().copied().find(|&c| steps[c].transform == Some(*t));
        at = match existing {
            Some(c) => c,
            None => {
                steps.push(Step { transform: Some(*t), ..Step::default() });
                let c = steps.len() - 1;
                steps[at].children.push(c);
                c
            }
        };
    }
    at
}

/// How a route uses the rule set: which rules are on, what is excluded
/// where, what the score must reach.
pub struct Policy {
    pub set: Arc<RuleSet>,
    /// Per rule: on for this route.
    enabled: Vec<bool>,
    /// The rules on for this route that match by their patterns' absence.
    negated: Vec<usize>,
    /// Per group: has a rule on.
    group_on: Vec<bool>,
    /// Per step: the kinds of value some group on, at or below it, selects.
    reach: Vec<Kinds>,
    /// Per rule: argument names (globs) it does not apply to.
    arg_exclusions: Vec<Vec<String>>,
    pub mode: WafMode,
    pub threshold: u32,
    /// Whether any enabled rule reads the body.
    pub reads_body: bool,
    /// Short values no pattern of the route matched.
    clean: CleanValues,
}

/// Values no pattern matched before, so that a value seen again (a header
/// every client sends, a client's token, an argument's or cookie's name, a
/// `sort=price`) costs a lookup instead of a walk through every group.
/// Header values up to [`CleanValues::LONGEST_HEADER`] bytes are kept (a
/// client sends the same ones request after request), other values up to
/// [`CleanValues::LONGEST`] (arguments vary; short ones repeat). Entries
/// are kept whole: a lookup compares the bytes, so no collision can pass a
/// value that was never checked (the hash only spreads the entries). A
/// shard is emptied when it holds [`CleanValues::SHARD_BYTES`]: memory
/// stays bounded, and a client that sends only new values pays what it
/// would without the cache.
///
/// Each data-plane worker has its own shards: a lookup takes a lock no
/// other thread touches, so the lock's cache line stays on that core (with
/// shared shards, the two workers of `bench/waf.sh` passed the same header
/// values' shards back and forth on every request).
struct CleanValues {
    shards: PerWorker<Shards>,
    seed: u64,
}

struct Shards(Box<[Mutex<Shard>]>);

impl Default for Shards {
    fn default() -> Self {
        Shards((0..CleanValues::SHARDS).map(|_| Mutex::new(Shard::default())).collect())
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Box<[u8]>, BuildHasherDefault<Spread>>,
    bytes: usize,
}

impl CleanValues {
    const LONGEST: usize = 128;
    const LONGEST_HEADER: usize = 2048;
    const SHARDS: usize = 16;
    /// Bytes of values a shard holds (4 MiB per worker, with the map's own).
    const SHARD_BYTES: usize = 256 * 1024;

    fn new(workers: usize) -> Self {
        Self { shards: PerWorker::new(workers), seed: RandomState::new().hash_one(0u64) | 1 }
    }

    /// What identifies a value: its kind, the header's name (`header:NAME`
    /// targets depend on it) and the bytes; `None` for one too long to keep.
    fn parts<'a>(kind: Kind, item: &'a Item<'_>, bytes: &'a [u8]) -> Option<(u8, &'a [u8], &'a [u8])> {
        let (header, longest) = match kind {
            Kind::HeaderValue => (item.key.as_bytes(), Self::LONGEST_HEADER),
            _ => (&b""[..], Self::LONGEST),
        };
        (bytes.len() <= longest && header.len() <= Self::LONGEST).then_some((kind as u8, header, bytes))
    }

    /// A multiply-rotate hash under a per-process seed (fast for short
    /// values; the bytes are compared on a hit, so it need not be more).
    fn hash(&self, (kind, header, bytes): (u8, &[u8], &[u8])) -> u64 {
        let mut h = self.seed ^ u64::from(kind) ^ ((header.len() as u64) << 8) ^ ((bytes.len() as u64) << 24);
        for part in [header, bytes] {
            let mut chunks = part.chunks_exact(8);
            for c in &mut chunks {
                let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                h = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
            }
            let mut tail = [0u8; 8];
            tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
            h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(31);
        }
        h ^ (h >> 32)
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards.get().0[(hash >> 60) as usize % Self::SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn contains(&self, hash: u64, (kind, header, bytes): (u8, &[u8], &[u8])) -> bool {
        let shard = self.shard(hash);
        let Some(entry) = shard.map.get(&hash) else { return false };
        entry.len() == 2 + header.len() + bytes.len()
            && entry[0] == kind
            && &entry[1..1 + header.len()] == header
            && entry[1 + header.len()] == 0
            && &entry[2 + header.len()..] == bytes
    }

    fn insert(&self, hash: u64, (kind, header, bytes): (u8, &[u8], &[u8])) {
        let mut entry = Vec::with_capacity(2 + header.len() + bytes.len());
        entry.push(kind);
        entry.extend_from_slice(header);
        entry.push(0);
        entry.extend_from_slice(bytes);
        let mut shard = self.shard(hash);
        if shard.bytes + entry.len() > Self::SHARD_BYTES {
            shard.map.clear();
            shard.bytes = 0;
        }
        shard.bytes += entry.len() + 32;
        if let Some(old) = shard.map.insert(hash, entry.into_boxed_slice()) {
            shard.bytes -= old.len() + 32;
        }
    }
}

/// The hasher of a map whose keys are already hashes.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A rule that matched, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: usize,
    /// The value's name (`query:q`, `json:user.name`, `header:user-agent`).
    pub target: String,
}

/// What the rules said about one request.
#[derive(Debug, Default)]
pub struct Verdict {
    pub hits: Vec<Hit>,
    pub score: u32,
    /// A `block` rule matched, or the score reached the threshold.
    pub blocked: bool,
}

impl Policy {
    /// The route's policy; `workers`: the data-plane workers (each keeps
    /// its own memory of clean values).
    pub fn new(set: Arc<RuleSet>, top: &WafConfig, tuning: Option<&WafTuning>, workers: usize) -> Policy {
        let paranoia = tuning.and_then(|t| t.paranoia).unwrap_or(top.paranoia);
        let excluded = |r: &RuleSpec| tuning.is_some_and(|t| t.exclude.iter().any(|e| e.covers(r)));
        let enabled: Vec<bool> = set.rules.iter().map(|r| r.paranoia <= paranoia && !excluded(r)).collect();
        let group_on: Vec<bool> = set.groups.iter().map(|g| g.owners.iter().any(|&r| enabled[r])).collect();
        let mut reach = vec![0; set.steps.len()];
        fill_reach(&set, &group_on, 0, &mut reach);
        let reads_body = set.groups.iter().zip(&group_on).any(|(g, on)| *on && reads_body(&g.target));
        let arg_exclusions = set
            .rules
            .iter()
            .map(|r| {
                let all: &[ArgExclusion] = tuning.map_or(&[], |t| &t.exclude_args);
                all.iter().filter(|e| e.rule.covers(r)).map(|e| e.arg.clone()).collect()
            })
            .collect();
        let negated = (0..set.rules.len()).filter(|&r| enabled[r] && set.rules[r].negate).collect();
        Policy {
            negated,
            mode: tuning.and_then(|t| t.mode).unwrap_or(top.mode),
            threshold: top.anomaly_threshold,
            set,
            enabled,
            group_on,
            reach,
            arg_exclusions,
            reads_body,
            clean: CleanValues::new(workers),
        }
    }

    /// Whether any rule is on for the route.
    pub fn has_rules(&self) -> bool {
        self.enabled.iter().any(|&on| on)
    }

    /// Runs the route's rules over `request`.
    pub fn evaluate(&self, request: &Inspected<'_>) -> Verdict {
        let mut scan = Scan { verdict: Verdict::default(), negated_seen: Vec::new(), matched: false };
        for item in request.items() {
            self.check(item.kind, &item.bytes, item, &mut scan);
            if let Some(kind) = item.name_kind() {
                self.check(kind, item.key.as_bytes(), item, &mut scan);
            }
        }
        let mut verdict = scan.verdict;
        // Negated rules fire when none of their patterns matched anywhere.
        for &r in &self.negated {
            if !scan.negated_seen.contains(&r) {
                verdict.hits.push(Hit { rule: r, target: self.set.rules[r].targets[0].to_string() });
            }
        }
        self.score(&mut verdict);
        verdict
    }

    /// Runs every group that selects `bytes`, unless the value was clean
    /// before.
    fn check(&self, kind: Kind, bytes: &[u8], item: &Item<'_>, scan: &mut Scan) {
        if self.reach[0] & kind.bit() == 0 {
            return;
        }
        let parts = CleanValues::parts(kind, item, bytes);
        let hash = parts.map(|p| self.clean.hash(p));
        if let (Some(p), Some(h)) = (parts, hash) {
            if self.clean.contains(h, p) {
                return;
            }
        }
        scan.matched = false;
        self.walk(0, kind, bytes, item, scan);
        if let (false, Some(p), Some(h)) = (scan.matched, parts, hash) {
            self.clean.insert(h, p);
        }
    }

    /// Runs the groups at `step` that select `bytes` (a value of `kind`
    /// from `item`), then the steps below it that lead to one.
    fn walk(&self, step: usize, kind: Kind, bytes: &[u8], item: &Item<'_>, scan: &mut Scan) {
        if self.reach[step] & kind.bit() == 0 {
            return;
        }
        let here = &self.set.steps[step];
        for &g in &here.groups {
            let group = &self.set.groups[g];
            if self.group_on[g] && covers(&group.target, kind, item) && group.set.is_match(bytes) {
                scan.matched = true;
                self.record(group, bytes, item, scan);
            }
        }
        for &next in &here.children {
            if self.reach[next] & kind.bit() == 0 {
                continue;
            }
            let t = self.set.steps[next].transform.expect("only the root has no transform");
            match transform::step(t, bytes) {
                Some(changed) => self.walk(next, kind, &changed, item, scan),
                None => self.walk(next, kind, bytes, item, scan),
            }
        }
    }

    /// Which of `group`'s rules matched `bytes`.
    fn record(&self, group: &Group, bytes: &[u8], item: &Item<'_>, scan: &mut Scan) {
        let name = item.name();
        for p in group.set.matches(bytes).iter() {
            let r = group.owners[p];
            if !self.enabled[r] || self.excluded_arg(r, &name) {
                continue;
            }
            let hits = &mut scan.verdict.hits;
            if self.set.rules[r].negate {
                scan.negated_seen.push(r);
            } else if !hits.iter().any(|h| h.rule == r && h.target == name) {
                hits.push(Hit { rule: r, target: name.clone() });
            }
        }
    }

    fn score(&self, verdict: &mut Verdict) {
        let mut counted: Vec<usize> = Vec::new();
        for hit in &verdict.hits {
            let rule = &self.set.rules[hit.rule];
            match rule.action {
                RuleAction::Block => verdict.blocked = true,
                // A rule adds its score once, however many values it matched.
                RuleAction::Score if !counted.contains(&hit.rule) => {
                    counted.push(hit.rule);
                    verdict.score += rule.score;
                }
                RuleAction::Score | RuleAction::Log => {}
            }
        }
        if verdict.score >= self.threshold {
            verdict.blocked = true;
        }
    }

    fn excluded_arg(&self, rule: usize, name: &str) -> bool {
        self.arg_exclusions[rule].iter().any(|glob| glob_match(glob.as_bytes(), name.as_bytes()))
    }

    /// Whether `rule` names a rule or family this set has (for checking a
    /// route's exclusions).
    pub fn knows(set: &RuleSet, rule: &RuleRef) -> bool {
        set.rules.iter().any(|r| rule.covers(r))
    }
}

/// What a request's walk has found so far.
struct Scan {
    verdict: Verdict,
    negated_seen: Vec<usize>,
    /// Whether a pattern matched the value being checked.
    matched: bool,
}

/// `reach[step]`: the kinds the groups on at `step` and below select.
fn fill_reach(set: &RuleSet, group_on: &[bool], step: usize, reach: &mut [Kinds]) -> Kinds {
    let here = &set.steps[step];
    let mut kinds =
        here.groups.iter().filter(|&&g| group_on[g]).fold(0, |k, &g| k | kinds_of(&set.groups[g].target));
    for &c in &here.children {
        kinds |= fill_reach(set, group_on, c, reach);
    }
    reach[step] = kinds;
    kinds
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(glob: &[u8], name: &[u8]) -> bool {
    match glob.iter().position(|&b| b == b'*') {
        None => glob == name,
        Some(star) => {
            let (head, tail) = (&glob[..star], &glob[star + 1..]);
            if !name.starts_with(head) {
                return false;
            }
            let rest = &name[head.len()..];
            (0..=rest.len()).any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::waf::{parse_rule_file, OverLimit};
    use crate::config::KeyPath;

    fn set(src: &str) -> Arc<RuleSet> {
        let (rules, problems) = parse_rule_file(Arc::from(Path::new("t.yaml")), src);
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(RuleSet::compile(rules).unwrap())
    }

    fn top() -> WafConfig {
        WafConfig {
            rules: "r".into(),
            mode: WafMode::Block,
            anomaly_threshold: 5,
            paranoia: 1,
            body_limit: 1024,
            body_over_limit: OverLimit::InspectPrefix,
            at: KeyPath::root(),
        }
    }

    const RULES: &str = "defaults: { family: sqli, targets: [args], transforms: [url_decode, lowercase] }\n\
        rules:\n\
        - { id: 1, message: union, patterns: ['union\\s+select'] }\n\
        - { id: 2, message: quote, severity: notice, patterns: [\"'\"] }\n\
        - { id: 3, message: pl2, paranoia: 2, patterns: ['select'] }\n\
        - { id: 4, message: no ua, family: protocol, targets: [user_agent], transforms: [], negate: true, patterns: ['.'] }\n\
        - { id: 5, message: log4j, family: java, action: block, score: 0, targets: [headers], transforms: [], patterns: ['\\$\\{jndi:'] }\n";

    fn run(policy: &Policy, uri: &str, headers: &[(&str, &str)]) -> Verdict {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let path = parts.uri.path().to_owned();
        let i = Inspected::new((&parts.method, &parts.uri, &parts.headers), &path, None);
        policy.evaluate(&i)
    }

    fn ids(policy: &Policy, v: &Verdict) -> Vec<u32> {
        v.hits.iter().map(|h| policy.set.rules[h.rule].id).collect()
    }

    #[test]
    fn scores_add_up_to_the_threshold() {
        let p = Policy::new(set(RULES), &top(), None, 1);
        let ua = [("user-agent", "t")];
        let v = run(&p, "/?q=1%27%20UNION%20%20SELECT%20x", &ua);
        assert_eq!(ids(&p, &v), [1, 2]);
        assert_eq!((v.score, v.blocked), (7, true));
        assert_eq!(v.hits[0].target, "query:q");
        let v = run(&p, "/?name=O%27Brien", &ua);
        assert_eq!((v.score, v.blocked), (2, false), "one quote is a notice, not a block");
        let v = run(&p, "/?q=select", &ua);
        assert!(v.hits.is_empty(), "paranoia 2 rules are off at 1");
    }

    #[test]
    fn negated_and_blocking_rules() {
        let p = Policy::new(set(RULES), &top(), None, 1);
        let v = run(&p, "/", &[]);
        assert_eq!((ids(&p, &v), v.score, v.blocked), (vec![4], 5, true));
        let v = run(&p, "/", &[("user-agent", "t"), ("x-api-version", "${jndi:ldap://x/a}")]);
        assert_eq!((ids(&p, &v), v.score, v.blocked), (vec![5], 0, true));
    }

    #[test]
    fn routes_tune_paranoia_exclusions_and_arguments() {
        let tuning = WafTuning {
            exclude: vec![RuleRef::Family("protocol".into())],
            paranoia: Some(2),
            exclude_args: vec![ArgExclusion { rule: RuleRef::Id(1), arg: "query:comment*".into() }],
            ..Default::default()
        };
        let p = Policy::new(set(RULES), &top(), Some(&tuning), 1);
        let v = run(&p, "/?comment_body=union%20select", &[]);
        assert_eq!(
            ids(&p, &v),
            [3],
            "rule 1 is excluded on that argument, 4 by family; 3 is on at paranoia 2"
        );
        let v = run(&p, "/?other=union%20select", &[]);
        assert_eq!(ids(&p, &v), [1, 3]);
    }

    #[test]
    fn a_value_clean_before_is_still_checked_where_it_means_more() {
        let rules = "rules:\n  - { id: 9, message: m, family: f, targets: ['header:x-probe'], patterns: ['marker'] }\n";
        let p = Policy::new(set(rules), &top(), None, 1);
        assert!(run(&p, "/", &[("user-agent", "t"), ("x-other", "marker")]).hits.is_empty());
        // The same bytes, now in the header the rule reads.
        assert_eq!(ids(&p, &run(&p, "/", &[("user-agent", "t"), ("x-probe", "marker")])), [9]);
        // And a value that matched is never taken for clean.
        assert_eq!(ids(&p, &run(&p, "/", &[("user-agent", "t"), ("x-probe", "marker")])), [9]);
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"json:items[*].note", b"json:items[12].note"));
        assert!(glob_match(b"*", b"anything"));
        assert!(!glob_match(b"query:q", b"query:qq"));
    }
}
