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
//! Most transforms change nothing in most values (no `%`, no `&`, no
//! backslash, no `/*`): then pipelines that differ only by such transforms
//! give the same bytes, and passing them through each group in turn is the
//! same pass repeated. Groups on one target whose pipelines keep the same
//! transforms once those are left out (their *skeleton*: `lowercase`,
//! `cmd_line`, `base64_decode` are kept, being what changes most values)
//! form a [`Lane`], whose patterns are also compiled together; a value for
//! which every left-out transform on the way to the lane's groups changed
//! nothing takes one pass through the lane instead of one per group. On
//! the 1 KiB review POST of `bench/waf.sh`, the long text went from six
//! passes to three.
//!
//! The cost is per value and group: `cargo run --release --example
//! waf-check -- waf-rules CORPUS --time` measured the benign corpus at
//! 74 µs per request with one walk per target and names formatted for
//! every value, 64 µs with this tree, and 20 µs once the shipped rules
//! shared seven pipelines and clean short values were remembered
//! ([`CleanValues`]); bench/RESULTS.md has the figures.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::config::waf::{
    ArgExclusion, RuleAction, RuleRef, RuleSpec, Target, Transform, WafConfig, WafMode, WafTuning,
    PATTERN_SIZE_LIMIT,
};

use super::inspect::{covers, kinds_of, reads_body, Head, Inspected, Item, Kind, Kinds, Split, Whole};
use super::transform;
use crate::middleware::prehashed::PrehashedMap;
use crate::worker::PerWorker;

/// The patterns of every rule that reads one target through one pipeline.
struct Group {
    target: Target,
    set: RegexSet,
    /// Pattern index → rule index.
    owners: Vec<usize>,
    /// The step its pipeline ends at.
    step: usize,
    /// The lane it is part of, if it shares one with other groups.
    lane: Option<usize>,
}

/// Groups on one target whose pipelines have the same skeleton, compiled
/// together: for a value whose left-out transforms changed nothing, they
/// all see the same bytes.
struct Lane {
    set: RegexSet,
    owners: Vec<usize>,
    groups: Vec<usize>,
}

/// Whether a transform stays in a pipeline's skeleton: it changes most
/// values, so leaving it out would rarely let lanes merge anything.
fn in_skeleton(t: Transform) -> bool {
    matches!(t, Transform::Lowercase | Transform::CmdLine | Transform::Base64Decode)
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
    lanes: Vec<Lane>,
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
        Self::compile_with(rules, true)
    }

    /// `lanes: false` compiles no lanes (every group runs on its own), for
    /// checking that lanes change no verdict.
    fn compile_with(rules: Vec<RuleSpec>, lanes_on: bool) -> Result<RuleSet, CompileError> {
        // (pipeline, target) → (rule index, pattern) of every rule reading it.
        type Key = (Vec<Transform>, Target);
        type Patterns<'a> = Vec<(usize, &'a str)>;
        let mut by_group: BTreeMap<Key, Patterns> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for target in &rule.targets {
                let patterns = by_group.entry((rule.transforms.clone(), target.clone())).or_default();
                patterns.extend(rule.patterns.iter().map(|p| (i, p.as_str())));
            }
        }
        let mut steps = vec![Step::default()];
        let mut groups = Vec::with_capacity(by_group.len());
        // (skeleton, target) → the groups of a would-be lane, and their patterns.
        let mut by_lane: BTreeMap<Key, (Vec<usize>, Patterns)> = BTreeMap::new();
        for ((pipeline, target), patterns) in by_group {
            let set = regex_set(&patterns, &target, &pipeline)?;
            let step = step_for(&mut steps, &pipeline);
            steps[step].groups.push(groups.len());
            let skeleton = pipeline.iter().copied().filter(|&t| in_skeleton(t)).collect();
            let lane = by_lane.entry((skeleton, target.clone())).or_default();
            lane.0.push(groups.len());
            lane.1.extend(&patterns);
            groups.push(Group {
                target,
                set,
                owners: patterns.iter().map(|(i, _)| *i).collect(),
                step,
                lane: None,
            });
        }
        let mut lanes = Vec::new();
        for ((skeleton, target), (members, patterns)) in by_lane {
            if members.len() < 2 || !lanes_on {
                continue;
            }
            // The groups compiled one by one, so a lane too large to compile
            // only costs its passes.
            let Ok(set) = regex_set(&patterns, &target, &skeleton) else { continue };
            for &g in &members {
                groups[g].lane = Some(lanes.len());
            }
            lanes.push(Lane { set, owners: patterns.iter().map(|(i, _)| *i).collect(), groups: members });
        }
        Ok(RuleSet { rules, groups, lanes, steps })
    }
}

/// One `RegexSet` of `patterns` (of the rules reading `target` through
/// `pipeline`).
fn regex_set(
    patterns: &[(usize, &str)],
    target: &Target,
    pipeline: &[Transform],
) -> Result<RegexSet, CompileError> {
    RegexSetBuilder::new(patterns.iter().map(|(_, p)| *p))
        .unicode(false)
        .size_limit(PATTERN_SIZE_LIMIT * patterns.len().max(1))
        .dfa_size_limit(8 * 1024 * 1024)
        .build()
        .map_err(|e| CompileError {
            target: target.to_string(),
            pipeline: pipeline.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
            reason: e.to_string(),
        })
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
    /// Values no pattern of the route matched.
    clean: CleanValues,
}

/// Values no pattern matched before, so that a value seen again (a header
/// every client sends, a client's token, an argument's or cookie's name, a
/// `sort=price`, a GraphQL query document, the same JSON an API client
/// posts every minute) costs a lookup instead of a walk through every
/// group. Values up to [`CleanValues::LONGEST`] bytes are kept: short ones
/// (up to [`CleanValues::SHORT`], header values up to
/// [`CleanValues::SHORT_HEADER`]) from their first check, longer ones from
/// their second (free text is mostly new on every request, and copying it
/// into the memory would only push out what repeats: a small table of
/// hashes, [`Memory::seen`], admits a long value once it comes back).
/// Entries are kept whole: a lookup compares the bytes, so no collision can
/// pass a value that was never checked (the hash only spreads the entries
/// and admits them). A shard is emptied when it holds
/// [`CleanValues::SHARD_BYTES`]: memory stays bounded, and a client that
/// sends only new values pays what it would without the cache.
///
/// A value read as several (a query string, a `Cookie` header, a body under
/// its content type: a [`Whole`]) is kept the same way once none of the
/// values it gave matched, with the number of arguments it held; the next
/// request with the same bytes is not taken apart again
/// ([`Policy::inspect`]).
///
/// Each data-plane worker has its own memory, locked once per request: the
/// lock is one no other thread takes, so its cache line stays on that core
/// (with memory shared by the workers, the two workers of `bench/waf.sh`
/// passed the same header values' shards back and forth on every lookup,
/// ~40 per request).
struct CleanValues {
    memory: PerWorker<Mutex<Memory>>,
    seed: u64,
}

/// One worker's clean values, in shards emptied one at a time.
struct Memory {
    shards: Box<[Shard]>,
    /// The hashes of long values checked once and found clean, by the
    /// hash's low bits (a newer one takes the slot): the second check of
    /// the same value admits it.
    seen: Box<[u64]>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            shards: (0..CleanValues::SHARDS).map(|_| Shard::default()).collect(),
            seen: vec![0; CleanValues::SEEN].into_boxed_slice(),
        }
    }
}

#[derive(Default)]
struct Shard {
    map: PrehashedMap<Box<[u8]>>,
    bytes: usize,
}

/// What identifies a value in the memory: its kind (or, for a value read
/// as several, [`WHOLE`] and its [`Split`]), the header's name (`header:NAME`
/// targets depend on it) or a body's content type, and the bytes.
type ValueId<'a> = (u8, &'a [u8], &'a [u8]);

/// The tag of a value read as several, above every [`Kind`].
const WHOLE: u8 = 0x80;

impl CleanValues {
    /// Values up to this long are remembered from their first check;
    /// header values (a client sends the same ones request after request)
    /// up to [`CleanValues::SHORT_HEADER`].
    const SHORT: usize = 128;
    const SHORT_HEADER: usize = 2048;
    const LONGEST: usize = 4096;
    /// Header names up to this long (`header:NAME` values are kept with it).
    const LONGEST_NAME: usize = 128;
    /// Slots of [`Memory::seen`] (32 KiB per worker).
    const SEEN: usize = 4096;
    const SHARDS: usize = 16;
    /// Bytes of values a shard holds (4 MiB per worker, with the map's own).
    const SHARD_BYTES: usize = 256 * 1024;

    fn new(workers: usize) -> Self {
        Self { memory: PerWorker::new(workers), seed: RandomState::new().hash_one(0u64) | 1 }
    }

    /// This thread's memory, for one request.
    fn local(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.get().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value's identity, or `None` for one too long to keep.
    fn parts<'a>(kind: Kind, item: &'a Item<'_>, bytes: &'a [u8]) -> Option<ValueId<'a>> {
        let header = match kind {
            Kind::HeaderValue => item.key.as_bytes(),
            _ => &b""[..],
        };
        (bytes.len() <= Self::LONGEST && header.len() <= Self::LONGEST_NAME)
            .then_some((kind as u8, header, bytes))
    }

    /// The identity of a value read as several, or `None` for one too
    /// long to keep.
    fn whole(w: Whole<'_>) -> Option<ValueId<'_>> {
        (w.bytes.len() <= Self::LONGEST && w.context.len() <= Self::LONGEST_NAME).then_some((
            WHOLE | w.split as u8,
            w.context,
            w.bytes,
        ))
    }

    /// How long a value may be and still be remembered from its first
    /// check: header values (a `Cookie` header too) are sent again and
    /// again, whatever their length.
    fn short(tag: u8) -> usize {
        if tag == Kind::HeaderValue as u8 || tag == WHOLE | Split::Cookies as u8 {
            Self::SHORT_HEADER
        } else {
            Self::SHORT
        }
    }

    /// A multiply-rotate hash under a per-process seed (fast for short
    /// values; the bytes are compared on a hit, so it need not be more).
    fn hash(&self, (kind, header, bytes): ValueId<'_>) -> u64 {
        let mut h = self.seed ^ u64::from(kind) ^ ((header.len() as u64) << 8) ^ ((bytes.len() as u64) << 24);
        for part in [header, bytes] {
            let mut chunks = part.chunks_exact(8);
            for c in &mut chunks {
                h = (h ^ word(c)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
            }
            // The last 8 bytes again when there are that many (the lengths
            // are in the seed), or the few there are.
            let tail = match part.len() {
                n if n >= 8 => word(&part[n - 8..]),
                _ => part.iter().rev().fold(0, |t, &b| t << 8 | u64::from(b)),
            };
            h = (h ^ tail).wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(31);
        }
        h ^ (h >> 32)
    }
}

/// The first 8 bytes of `c`, little-endian.
fn word(c: &[u8]) -> u64 {
    u64::from_le_bytes(c[..8].try_into().expect("8 bytes"))
}

impl Memory {
    fn shard(&mut self, hash: u64) -> &mut Shard {
        &mut self.shards[(hash >> 60) as usize % CleanValues::SHARDS]
    }

    /// Remembers a value found clean (with, for one read as several, the
    /// number of arguments it held): a short one now, a long one when this
    /// is its second check.
    fn remember(&mut self, hash: u64, id: ValueId<'_>, args: usize) {
        let Ok(args) = u16::try_from(args) else { return };
        if id.2.len() > CleanValues::short(id.0) {
            let slot = &mut self.seen[hash as usize % CleanValues::SEEN];
            if std::mem::replace(slot, hash) != hash {
                return;
            }
        }
        self.insert(hash, id, args);
    }

    fn contains(&mut self, hash: u64, id: ValueId<'_>) -> bool {
        self.recall(hash, id).is_some()
    }

    /// Whether the value was found clean before, and the arguments it held.
    fn recall(&mut self, hash: u64, (kind, header, bytes): ValueId<'_>) -> Option<usize> {
        let entry = self.shard(hash).map.get(&hash)?;
        let (h, b) = (header.len(), bytes.len());
        let same = entry.len() == 4 + h + b
            && entry[0] == kind
            && &entry[1..1 + h] == header
            && entry[1 + h] == 0
            && &entry[2 + h..2 + h + b] == bytes;
        same.then(|| usize::from(u16::from_le_bytes([entry[2 + h + b], entry[3 + h + b]])))
    }

    /// Entries are `kind, header, 0, bytes, args` (`args` in two bytes).
    fn insert(&mut self, hash: u64, (kind, header, bytes): ValueId<'_>, args: u16) {
        let mut entry = Vec::with_capacity(4 + header.len() + bytes.len());
        entry.push(kind);
        entry.extend_from_slice(header);
        entry.push(0);
        entry.extend_from_slice(bytes);
        entry.extend_from_slice(&args.to_le_bytes());
        let shard = self.shard(hash);
        if shard.bytes + entry.len() > CleanValues::SHARD_BYTES {
            shard.map.clear();
            shard.bytes = 0;
        }
        shard.bytes += entry.len() + 32;
        if let Some(old) = shard.map.insert(hash, entry.into_boxed_slice()) {
            shard.bytes -= old.len() + 32;
        }
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

    /// Takes a request apart and runs the route's rules over it. A query
    /// string, `Cookie` header or body whose values were all clean before
    /// is not taken apart again (a browser sends the same cookies with
    /// every request of a session; a client polling an API, the same
    /// query).
    pub fn inspect<'r>(&self, head: impl Into<Head<'r>>, path: &'r str, body: Option<&'r [u8]>) -> Verdict {
        let mut clean = self.clean.local();
        let request = Inspected::read(head, path, body, |whole| {
            let id = CleanValues::whole(whole)?;
            clean.recall(self.clean.hash(id), id)
        });
        self.evaluate_in(&request, &mut clean)
    }

    /// Runs the route's rules over `request`.
    pub fn evaluate(&self, request: &Inspected<'_>) -> Verdict {
        self.evaluate_in(request, &mut self.clean.local())
    }

    fn evaluate_in(&self, request: &Inspected<'_>, clean: &mut Memory) -> Verdict {
        let mut scan = Scan { verdict: Verdict::default(), negated_seen: Vec::new(), matched: false };
        let mut outputs = Outputs::new(self.set.steps.len(), self.set.lanes.len());
        let items = request.items();
        let mut next = 0;
        for parsed in request.parsed() {
            self.check_all(&items[next..parsed.items.start], clean, &mut outputs, &mut scan);
            let matched = self.check_all(&items[parsed.items.clone()], clean, &mut outputs, &mut scan);
            if let (false, Some(id)) = (matched, CleanValues::whole(parsed.whole)) {
                clean.remember(self.clean.hash(id), id, parsed.args);
            }
            next = parsed.items.end;
        }
        self.check_all(&items[next..], clean, &mut outputs, &mut scan);
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

    /// Checks each item's value and name; whether a pattern matched any.
    fn check_all(
        &self,
        items: &[Item<'_>],
        clean: &mut Memory,
        outputs: &mut Outputs,
        scan: &mut Scan,
    ) -> bool {
        let mut matched = false;
        for item in items {
            if item.kind == Kind::HeaderValue {
                matched |= self.check_header(item, clean, outputs, scan);
                continue;
            }
            matched |= self.check(item.kind, &item.bytes, item, clean, outputs, scan);
            if let Some(kind) = item.name_kind() {
                matched |= self.check(kind, item.key.as_bytes(), item, clean, outputs, scan);
            }
        }
        matched
    }

    /// A header's value and name. A header value's entry in the memory
    /// holds its header's name already (`header:NAME` targets need it), so
    /// it is kept only once neither the value nor the name matched, and
    /// then answers for both: a header seen before costs one lookup.
    fn check_header(
        &self,
        item: &Item<'_>,
        clean: &mut Memory,
        outputs: &mut Outputs,
        scan: &mut Scan,
    ) -> bool {
        if self.reach[0] & (Kind::HeaderValue.bit() | Kind::HeaderName.bit()) == 0 {
            return false;
        }
        let id = CleanValues::parts(Kind::HeaderValue, item, &item.bytes).map(|p| (p, self.clean.hash(p)));
        if let Some((p, h)) = id {
            if clean.contains(h, p) {
                return false;
            }
        }
        let matched = self.scan_value(Kind::HeaderValue, &item.bytes, item, outputs, scan)
            | self.check(Kind::HeaderName, item.key.as_bytes(), item, clean, outputs, scan);
        if let (false, Some((p, h))) = (matched, id) {
            clean.remember(h, p, 0);
        }
        matched
    }

    /// Runs every group that selects `value`, unless it was clean before;
    /// whether a pattern matched.
    fn check(
        &self,
        kind: Kind,
        value: &[u8],
        item: &Item<'_>,
        clean: &mut Memory,
        outputs: &mut Outputs,
        scan: &mut Scan,
    ) -> bool {
        if self.reach[0] & kind.bit() == 0 {
            return false;
        }
        let id = CleanValues::parts(kind, item, value).map(|p| (p, self.clean.hash(p)));
        if let Some((p, h)) = id {
            if clean.contains(h, p) {
                return false;
            }
        }
        let matched = self.scan_value(kind, value, item, outputs, scan);
        if let (false, Some((p, h))) = (matched, id) {
            clean.remember(h, p, 0);
        }
        matched
    }

    /// Runs every group that selects `value`; whether a pattern matched.
    fn scan_value(
        &self,
        kind: Kind,
        value: &[u8],
        item: &Item<'_>,
        outputs: &mut Outputs,
        scan: &mut Scan,
    ) -> bool {
        if self.reach[0] & kind.bit() == 0 {
            return false;
        }
        scan.matched = false;
        outputs.reset();
        self.transform(0, kind, value, outputs);
        self.run(kind, value, item, outputs, scan);
        scan.matched
    }

    /// Fills in the outputs of the steps below `step` that lead to a group
    /// selecting values of `kind`.
    fn transform(&self, step: usize, kind: Kind, value: &[u8], outputs: &mut Outputs) {
        for &next in &self.set.steps[step].children {
            if self.reach[next] & kind.bit() == 0 {
                continue;
            }
            let t = self.set.steps[next].transform.expect("only the root has no transform");
            let changed = transform::step(t, outputs.bytes(step, value));
            outputs.follow(step, next, changed, in_skeleton(t));
            self.transform(next, kind, value, outputs);
        }
    }

    /// Runs each group on its step's output, or, where every group of its
    /// lane saw the lane's bytes, the lane once.
    fn run(&self, kind: Kind, value: &[u8], item: &Item<'_>, outputs: &mut Outputs, scan: &mut Scan) {
        for (g, group) in self.set.groups.iter().enumerate() {
            if !self.group_on[g] || !outputs.reached(group.step) || !covers(&group.target, kind, item) {
                continue;
            }
            match group.lane {
                Some(l) if self.lane_whole(l, outputs) => {
                    if !std::mem::replace(&mut outputs.lane_run[l], true) {
                        let lane = &self.set.lanes[l];
                        self.match_set(&lane.set, &lane.owners, outputs.bytes(group.step, value), item, scan);
                    }
                }
                _ => self.match_set(&group.set, &group.owners, outputs.bytes(group.step, value), item, scan),
            }
        }
    }

    /// Whether every group on in lane `l` reads the lane's own bytes (no
    /// transform left out of the skeleton changed the value on its way).
    fn lane_whole(&self, l: usize, outputs: &Outputs) -> bool {
        let lane = &self.set.lanes[l];
        let whole = |step: usize| outputs.reached(step) && outputs.pure[step];
        lane.groups.iter().all(|&g| !self.group_on[g] || whole(self.set.groups[g].step))
    }

    /// Runs `set` over `bytes`, and records which rules matched.
    fn match_set(&self, set: &RegexSet, owners: &[usize], bytes: &[u8], item: &Item<'_>, scan: &mut Scan) {
        if !set.is_match(bytes) {
            return;
        }
        scan.matched = true;
        let name = item.name();
        for p in set.matches(bytes).iter() {
            let r = owners[p];
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

/// Each step's output for the value being checked: the value itself, or
/// what a transform wrote (a step whose transform changed nothing has its
/// parent's); and whether only skeleton transforms changed it on the way
/// (`pure`: then it is its lane's output).
struct Outputs {
    src: Vec<Source>,
    pure: Vec<bool>,
    written: Vec<Vec<u8>>,
    /// Per lane: run for this value already.
    lane_run: Vec<bool>,
}

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Unreached,
    Value,
    Written(usize),
}

impl Outputs {
    fn new(steps: usize, lanes: usize) -> Self {
        Outputs {
            src: vec![Source::Unreached; steps],
            pure: vec![false; steps],
            written: Vec::new(),
            lane_run: vec![false; lanes],
        }
    }

    /// Ready for a new value: only the root (the value) reached.
    fn reset(&mut self) {
        self.src.fill(Source::Unreached);
        self.src[0] = Source::Value;
        self.pure.fill(false);
        self.pure[0] = true;
        self.written.clear();
        self.lane_run.fill(false);
    }

    fn reached(&self, step: usize) -> bool {
        self.src[step] != Source::Unreached
    }

    fn bytes<'a>(&'a self, step: usize, value: &'a [u8]) -> &'a [u8] {
        match self.src[step] {
            Source::Written(i) => &self.written[i],
            Source::Value | Source::Unreached => value,
        }
    }

    /// `next`'s output: `changed`, or (`None`) its parent `step`'s.
    fn follow(&mut self, step: usize, next: usize, changed: Option<Vec<u8>>, skeleton: bool) {
        match changed {
            Some(bytes) => {
                self.written.push(bytes);
                self.src[next] = Source::Written(self.written.len() - 1);
                self.pure[next] = self.pure[step] && skeleton;
            }
            None => {
                self.src[next] = self.src[step];
                self.pure[next] = self.pure[step];
            }
        }
    }
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
    fn a_header_is_remembered_only_when_its_name_was_clean_too() {
        let rules =
            "rules:\n  - { id: 9, message: m, family: f, targets: [header_names], patterns: ['^x-evil$'] }\n";
        let p = Policy::new(set(rules), &top(), None, 1);
        for _ in 0..3 {
            assert_eq!(
                ids(&p, &run(&p, "/", &[("x-evil", "plain")])),
                [9],
                "the clean value does not hide the name"
            );
            assert!(run(&p, "/", &[("x-good", "plain")]).hits.is_empty());
        }
    }

    #[test]
    fn long_values_are_remembered_from_their_second_check() {
        let clean = CleanValues::new(1);
        let mut memory = clean.local();
        let item = Item::plain(Kind::ArgValue, "q", b"");
        let id = |bytes: &'static [u8]| {
            let id = CleanValues::parts(Kind::ArgValue, &item, bytes).expect("kept");
            (id, clean.hash(id))
        };
        let (short, h) = id(b"price");
        memory.remember(h, short, 0);
        assert!(memory.contains(h, short), "a short value, from its first check");
        let text: &'static [u8] = "a review with nothing in it. ".repeat(10).leak().as_bytes();
        let (long, h) = id(text);
        memory.remember(h, long, 0);
        assert!(!memory.contains(h, long), "a long value, not from its first check");
        memory.remember(h, long, 0);
        assert!(memory.contains(h, long), "but from its second");
        let huge: &'static [u8] = vec![b'a'; CleanValues::LONGEST + 1].leak();
        assert!(CleanValues::parts(Kind::ArgValue, &item, huge).is_none());
    }

    #[test]
    fn the_memory_stays_bounded_and_answers_only_for_the_same_bytes() {
        let clean = CleanValues::new(1);
        let mut memory = clean.local();
        let item = Item::plain(Kind::ArgValue, "q", b"");
        let values: Vec<Vec<u8>> = (0..100_000).map(|i| format!("value-{i}").into_bytes()).collect();
        for v in &values {
            let id = CleanValues::parts(Kind::ArgValue, &item, v).expect("short");
            let h = clean.hash(id);
            memory.insert(h, id, 0);
            assert!(memory.contains(h, id));
        }
        let bytes: usize = memory.shards.iter().map(|s| s.bytes).sum();
        assert!(bytes <= CleanValues::SHARDS * CleanValues::SHARD_BYTES, "{bytes}");
        // Other bytes under the same hash, another kind or header: no.
        let id = |v: &'static [u8]| CleanValues::parts(Kind::ArgValue, &item, v).expect("short");
        let (a, b) = (id(b"price"), id(b"prize"));
        memory.insert(7, a, 0);
        assert!(memory.contains(7, a) && !memory.contains(7, b));
        assert!(!memory.contains(7, (Kind::ArgName as u8, b"", b"price")));
        assert!(!memory.contains(7, (Kind::HeaderValue as u8, b"x", b"price")));
        memory.insert(7, b, 0);
        assert!(memory.contains(7, b) && !memory.contains(7, a), "the newer value takes the slot");
    }

    /// `run`, through the layer's way in (the memory of whole query
    /// strings, cookie headers and bodies on).
    fn inspect(policy: &Policy, uri: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Verdict {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        policy.inspect((&parts.method, &parts.uri, &parts.headers), parts.uri.path(), body)
    }

    #[test]
    fn a_query_or_cookie_header_is_remembered_only_when_all_its_values_were_clean() {
        let rules =
            "rules:\n  - { id: 9, message: m, family: f, targets: [args, cookies], patterns: ['marker'] }\n";
        let p = Policy::new(set(rules), &top(), None, 1);
        for _ in 0..3 {
            let v = inspect(&p, "/?a=1&b=2&q=marker", &[("cookie", "s=1; t=2")], None);
            assert_eq!(v.hits[0].target, "query:q", "the clean arguments beside it do not hide it");
            let v = inspect(&p, "/?a=1&b=2", &[("cookie", "s=1; t=marker")], None);
            assert_eq!(v.hits[0].target, "cookie:t");
        }
        let clean = inspect(&p, "/?a=1&b=2&c=3", &[("cookie", "s=1; t=2")], None);
        assert!(clean.hits.is_empty());
        let mut memory = p.clean.local();
        let query = (WHOLE | Split::Query as u8, &b""[..], &b"a=1&b=2&c=3"[..]);
        assert_eq!(memory.recall(p.clean.hash(query), query), Some(3), "three arguments");
        let cookies = (WHOLE | Split::Cookies as u8, &b""[..], &b"s=1; t=2"[..]);
        assert_eq!(memory.recall(p.clean.hash(cookies), cookies), Some(0));
        let dirty = (WHOLE | Split::Query as u8, &b""[..], &b"a=1&b=2&q=marker"[..]);
        assert_eq!(memory.recall(p.clean.hash(dirty), dirty), None);
    }

    #[test]
    fn a_body_is_remembered_under_its_content_type() {
        let rules = "rules:\n  - { id: 9, message: m, family: f, targets: [args], patterns: ['marker'] }\n";
        let p = Policy::new(set(rules), &top(), None, 1);
        // The same bytes read as a form hold `marker` as a value; read as
        // JSON (which they are not), they are only looked at whole, which
        // no rule here does.
        let body = b"x=marker";
        for _ in 0..3 {
            let v = inspect(&p, "/", &[("content-type", "text/plain")], Some(body));
            assert!(v.hits.is_empty());
            let v = inspect(&p, "/", &[("content-type", "application/x-www-form-urlencoded")], Some(body));
            assert_eq!(ids(&p, &v), [9]);
        }
    }

    /// Each request of the corpora three times through one policy (so the
    /// second and third find its values, query, cookies and body in the
    /// memory), against a policy that has seen only that request.
    #[test]
    fn the_memory_changes_no_verdict_on_the_corpora() {
        let warm = shipped(true);
        for r in corpus() {
            let (method, uri, headers, body) = (&r.method[..], &r.uri[..], &r.headers[..], r.body.as_deref());
            let fresh = Policy::new(warm.set.clone(), &top(), None, 1);
            let Some(expected) = hits(&fresh, method, uri, headers, body) else { continue };
            for _ in 0..3 {
                assert_eq!(inspected_hits(&warm, method, uri, headers, body), expected, "{}", r.line);
            }
        }
    }

    /// A request of the WAF corpora (`tests/waf/*.jsonl`), with its line.
    struct CorpusRequest {
        line: String,
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    }

    /// Every request of the attack and benign corpora.
    fn corpus() -> Vec<CorpusRequest> {
        let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        let mut out = Vec::new();
        for file in ["tests/waf/attacks.jsonl", "tests/waf/benign.jsonl"] {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                out.push(CorpusRequest {
                    line: line.to_owned(),
                    method: text(&v["method"]),
                    uri: text(&v["target"]),
                    headers: v["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| (text(&h[0]), text(&h[1])))
                        .collect(),
                    body: v["body"].as_str().map(|b| b.as_bytes().to_vec()),
                });
            }
        }
        out
    }

    /// The head of a request, or `None` if the `http` crate does not take it
    /// (a raw test of the corpus).
    fn request_parts(method: &str, uri: &str, headers: &[(String, String)]) -> Option<http::request::Parts> {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        Some(b.body(()).ok()?.into_parts().0)
    }

    fn sorted(mut hits: Vec<Hit>) -> Vec<Hit> {
        hits.sort_by(|a, b| (a.rule, &a.target).cmp(&(b.rule, &b.target)));
        hits
    }

    fn inspected_hits(
        policy: &Policy,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Vec<Hit> {
        let parts = request_parts(method, uri, headers).unwrap();
        let path = parts.uri.path().to_owned();
        sorted(policy.inspect((&parts.method, &parts.uri, &parts.headers), &path, body).hits)
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"json:items[*].note", b"json:items[12].note"));
        assert!(glob_match(b"*", b"anything"));
        assert!(!glob_match(b"query:q", b"query:qq"));
    }

    /// The shipped rules, with and without lanes.
    fn shipped(lanes: bool) -> Policy {
        let specs = crate::config::waf::load_rules(Path::new("waf-rules")).unwrap();
        let set = Arc::new(RuleSet::compile_with(specs, lanes).unwrap());
        assert!(!lanes || !set.lanes.is_empty());
        Policy::new(set, &top(), None, 1)
    }

    /// The rules `policy` finds matching, or `None` for a request the
    /// `http` crate does not take (a raw test of the corpus).
    fn hits(
        policy: &Policy,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Option<Vec<Hit>> {
        let parts = request_parts(method, uri, headers)?;
        let path = parts.uri.path().to_owned();
        let head = (&parts.method, &parts.uri, &parts.headers);
        Some(sorted(policy.evaluate(&Inspected::new(head, &path, body)).hits))
    }

    #[test]
    fn lanes_change_no_verdict_on_the_corpora() {
        let (with, without) = (shipped(true), shipped(false));
        let mut seen = 0;
        for r in corpus() {
            let (method, uri, headers, body) = (&r.method[..], &r.uri[..], &r.headers[..], r.body.as_deref());
            let Some(expected) = hits(&without, method, uri, headers, body) else { continue };
            assert_eq!(hits(&with, method, uri, headers, body), Some(expected.clone()), "{}", r.line);
            seen += usize::from(!expected.is_empty());
        }
        assert!(seen > 1000, "{seen} requests with hits");
    }

    proptest::proptest! {
        /// Values made of what the left-out transforms act on (escapes,
        /// entities, comments, NULs, whitespace) and what rules look for.
        #[test]
        fn lanes_change_no_verdict_on_any_value(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "%27", "%2527", "+", "&lt;", "&#x3c;", "\\x3c", "\\", "/*", "*/", "/*!50000", "%00", "\t\t", "  ",
                "%c0%ae", "'", "\"", " OR ", "1=1", "UNION", " select ", "<script>", "alert(1)", "../", "etc/passwd",
                ";", "|", "$(", "`id`", "${jndi:", "{{7*7}}", "a", "Z", "9", "--", "#",
            ]), 0..12)
        ) {
            let value: String = parts.concat();
            let uri = format!("/p?q={}", value.replace(' ', "%20").replace('"', "%22").replace('<', "%3C").replace('>', "%3E").replace('`', "%60").replace('{', "%7B").replace('}', "%7D").replace('|', "%7C").replace('\\', "%5C").replace('\t', "%09"));
            let body = serde_json::json!({ "v": value }).to_string();
            let headers = vec![("content-type".to_owned(), "application/json".to_owned()), ("x-v".to_owned(), uri.clone())];
            let (with, without) = (&*WITH, &*WITHOUT);
            let expected = hits(without, "POST", &uri, &headers, Some(body.as_bytes()));
            proptest::prop_assert!(expected.is_some(), "{uri}");
            proptest::prop_assert_eq!(hits(with, "POST", &uri, &headers, Some(body.as_bytes())), expected);
        }
    }

    static WITH: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| shipped(true));
    static WITHOUT: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| shipped(false));
}
