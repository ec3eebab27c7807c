//! A rule set compiled for matching, and a route's view of it.
//!
//! Every pattern over the same target and transform pipeline goes into one
//! `regex::bytes::RegexSet`, so a clean request costs one pass per
//! (target, pipeline) and value; which patterns matched is asked only when
//! the set says something did. Each pipeline is computed once per value
//! and shared by every rule that names it.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::config::waf::{
    ArgExclusion, RuleAction, RuleRef, RuleSpec, Target, Transform, WafConfig, WafMode, WafTuning,
    PATTERN_SIZE_LIMIT,
};

use super::inspect::{reads_body, Inspected};
use super::transform;

/// One (target, pipeline) and the patterns of every rule that reads it.
struct Group {
    target: Target,
    pipeline: Vec<Transform>,
    set: RegexSet,
    /// Pattern index → rule index.
    owners: Vec<usize>,
}

/// The compiled rules of a configuration, shared by every route.
pub struct RuleSet {
    pub rules: Vec<RuleSpec>,
    groups: Vec<Group>,
}

/// A set too large to compile, or a pattern that compiled alone and not in
/// its set.
#[derive(Debug, thiserror::Error)]
#[error("the WAF rules on `{target}` with transforms [{pipeline}] do not compile together: {reason}")]
pub struct CompileError {
    pub target: String,
    pub pipeline: String,
    pub reason: String,
}

impl RuleSet {
    pub fn compile(rules: Vec<RuleSpec>) -> Result<RuleSet, CompileError> {
        // (target, pipeline) → (rule index, pattern) of every rule reading it.
        type Key = (Target, Vec<Transform>);
        let mut by_group: BTreeMap<Key, Vec<(usize, &str)>> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for target in &rule.targets {
                let patterns = by_group.entry((target.clone(), rule.transforms.clone())).or_default();
                patterns.extend(rule.patterns.iter().map(|p| (i, p.as_str())));
            }
        }
        let mut groups = Vec::with_capacity(by_group.len());
        for ((target, pipeline), patterns) in by_group {
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
            groups.push(Group { target, pipeline, set, owners: patterns.iter().map(|(i, _)| *i).collect() });
        }
        Ok(RuleSet { rules, groups })
    }
}

/// How a route uses the rule set: which rules are on, what is excluded
/// where, what the score must reach.
pub struct Policy {
    pub set: Arc<RuleSet>,
    /// Per rule: on for this route.
    enabled: Vec<bool>,
    /// Groups with at least one enabled rule.
    groups: Vec<usize>,
    /// Per rule: argument names (globs) it does not apply to.
    arg_exclusions: Vec<Vec<String>>,
    pub mode: WafMode,
    pub threshold: u32,
    /// Whether any enabled rule reads the body.
    pub reads_body: bool,
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
    pub fn new(set: Arc<RuleSet>, top: &WafConfig, tuning: Option<&WafTuning>) -> Policy {
        let paranoia = tuning.and_then(|t| t.paranoia).unwrap_or(top.paranoia);
        let excluded = |r: &RuleSpec| tuning.is_some_and(|t| t.exclude.iter().any(|e| e.covers(r)));
        let enabled: Vec<bool> = set.rules.iter().map(|r| r.paranoia <= paranoia && !excluded(r)).collect();
        let groups: Vec<usize> =
            (0..set.groups.len()).filter(|&g| set.groups[g].owners.iter().any(|&r| enabled[r])).collect();
        let reads_body = groups.iter().any(|&g| reads_body(&set.groups[g].target));
        let arg_exclusions = set
            .rules
            .iter()
            .map(|r| {
                let all: &[ArgExclusion] = tuning.map_or(&[], |t| &t.exclude_args);
                all.iter().filter(|e| e.rule.covers(r)).map(|e| e.arg.clone()).collect()
            })
            .collect();
        Policy {
            mode: tuning.and_then(|t| t.mode).unwrap_or(top.mode),
            threshold: top.anomaly_threshold,
            set,
            enabled,
            groups,
            arg_exclusions,
            reads_body,
        }
    }

    /// Whether any rule is on for the route.
    pub fn has_rules(&self) -> bool {
        self.enabled.iter().any(|&on| on)
    }

    /// Runs the route's rules over `request`.
    pub fn evaluate(&self, request: &Inspected<'_>) -> Verdict {
        let mut verdict = Verdict::default();
        // Negated rules fire when none of their patterns matched anywhere.
        let mut negated_seen: Vec<usize> = Vec::new();
        for &g in &self.groups {
            let group = &self.set.groups[g];
            request.each(&group.target, |name, value| {
                let value = transform::apply(&group.pipeline, value);
                if !group.set.is_match(&value) {
                    return;
                }
                for p in group.set.matches(&value).iter() {
                    let r = group.owners[p];
                    if !self.enabled[r] || self.excluded_arg(r, name) {
                        continue;
                    }
                    if self.set.rules[r].negate {
                        negated_seen.push(r);
                    } else if !verdict.hits.iter().any(|h| h.rule == r && h.target == name) {
                        verdict.hits.push(Hit { rule: r, target: name.to_owned() });
                    }
                }
            });
        }
        for (r, rule) in self.set.rules.iter().enumerate() {
            if rule.negate && self.enabled[r] && !negated_seen.contains(&r) {
                verdict.hits.push(Hit { rule: r, target: rule.targets[0].to_string() });
            }
        }
        self.score(&mut verdict);
        verdict
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
        let p = Policy::new(set(RULES), &top(), None);
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
        let p = Policy::new(set(RULES), &top(), None);
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
        let p = Policy::new(set(RULES), &top(), Some(&tuning));
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
    fn globs() {
        assert!(glob_match(b"json:items[*].note", b"json:items[12].note"));
        assert!(glob_match(b"*", b"anything"));
        assert!(!glob_match(b"query:q", b"query:qq"));
    }
}
