//! The meaning checks of a well-shaped definition: ids, step references,
//! `needs` (unknown ids, cycles), templates and conditions (syntax, roots,
//! ancestors), limits against the ceilings, retry policies and the input
//! schema. Every problem is listed with its JSON path.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{
    Definition, FUNCTIONS, MAX_ATTEMPTS, Problem, ROOTS, RetryPolicy, StepLimits, parse_bytes,
    parse_duration, problem,
};
use crate::engine::template;
use crate::model::Overrides;
use crate::model::{Digest, StepName, check_name};

/// What validation needs to know about the tenant and the server.
pub struct Context<'a> {
    /// The workflow id in the request path.
    pub path_id: &'a str,
    /// The tenant's registered steps with their version digests.
    pub steps: &'a HashMap<String, Vec<Digest>>,
    /// Checks per-step limits against the server's ceilings.
    pub ceilings: &'a dyn Fn(&Overrides) -> Result<(), String>,
    /// The server's HTTP caps, which a step's `limits.http_*` may lower.
    pub http_caps: crate::model::HttpCaps,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("path_id", &self.path_id)
            .finish_non_exhaustive()
    }
}

impl Definition {
    /// Checks the meaning of a well-shaped definition.
    pub fn validate(&self, cx: &Context<'_>) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(id) = &self.id
            && id != cx.path_id
        {
            problems.push(problem(
                "$.id",
                format!(
                    "`{id}` does not match the workflow id `{}` in the path",
                    cx.path_id
                ),
            ));
        }
        if self.steps.is_empty() {
            problems.push(problem("$.steps", "a workflow needs at least one step"));
        }
        if let Some(t) = &self.timeout {
            match parse_duration(t) {
                Err(m) => problems.push(problem("$.timeout", m)),
                Ok(d) if d.is_zero() => {
                    problems.push(problem("$.timeout", "the timeout must be above zero"))
                }
                Ok(_) => {}
            }
        }
        if let Some(r) = &self.retry {
            check_retry(r, "$.retry", &mut problems);
        }
        if let Some(schema) = &self.input_schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            problems.push(problem(
                format!(
                    "$.input_schema{}",
                    json_path(&e.instance_path().to_string())
                ),
                format!("`input_schema` is not a valid JSON Schema: {e}"),
            ));
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("$.steps[{i}]");
            if let Err(m) = check_name("step id", &step.id) {
                problems.push(problem(format!("{at}.id"), m));
            } else if ids.insert(step.id.as_str(), i).is_some() {
                problems.push(problem(
                    format!("{at}.id"),
                    format!("duplicate step id `{}`", step.id),
                ));
            }
            if let Some(r) = &step.step {
                check_step_ref(r, cx, &format!("{at}.step"), &mut problems);
            }
            if let Some(r) = &step.retry {
                check_retry(r, &format!("{at}.retry"), &mut problems);
            }
            if let Some(l) = &step.limits {
                check_limits(l, cx, &format!("{at}.limits"), &mut problems);
                check_http_limits(l, &cx.http_caps, &format!("{at}.limits"), &mut problems);
            }
            for (j, text) in step.allow_http.iter().flatten().enumerate() {
                if let Err(e) = text.parse::<crate::model::egress::HostPattern>() {
                    problems.push(problem(format!("{at}.allow_http[{j}]"), e.to_string()));
                }
            }
            for (k, v) in &step.config {
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    problems.push(problem(
                        format!("{at}.config.{k}"),
                        "a config value must be a string, number or boolean",
                    ));
                }
            }
        }
        // `needs`: known ids, no self-reference, no cycles.
        for (i, step) in self.steps.iter().enumerate() {
            for (j, need) in step.needs.iter().flatten().enumerate() {
                let at = format!("$.steps[{i}].needs[{j}]");
                match ids.get(need.as_str()) {
                    None => problems.push(problem(at, format!("no step has the id `{need}`"))),
                    Some(&k) if k == i => problems.push(problem(at, "a step cannot need itself")),
                    Some(_) => {}
                }
            }
        }
        let needs = self.needs();
        let cyclic = cycle_members(&needs);
        for &i in &cyclic {
            problems.push(problem(
                format!("$.steps[{i}].needs"),
                format!("step `{}` is part of a cycle in `needs`", self.steps[i].id),
            ));
        }
        let ancestors = ancestors(&needs, &cyclic);
        // Templates and conditions: they parse, and they refer only to
        // known roots and to ancestor steps.
        let all: BTreeSet<usize> = (0..self.steps.len()).collect();
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("$.steps[{i}]");
            let mut found = Vec::new();
            if let Some(input) = &step.input {
                template::strings_in(input, &format!("{at}.input"), &mut found);
            }
            if let Some(until) = step.wait.as_ref().and_then(|w| w.until.as_ref()) {
                found.push((format!("{at}.wait.until"), until.as_str()));
            }
            self.check_templates(&found, &ancestors[i], false, false, &mut problems);
            let mut found = Vec::new();
            for (k, v) in &step.config {
                template::strings_in(v, &format!("{at}.config.{k}"), &mut found);
            }
            self.check_templates(&found, &ancestors[i], true, false, &mut problems);
            if let Some(cond) = &step.condition {
                let found = vec![(format!("{at}.if"), cond.as_str())];
                self.check_templates(&found, &ancestors[i], false, true, &mut problems);
            }
        }
        if let Some(output) = &self.output {
            let mut found = Vec::new();
            template::strings_in(output, "$.output", &mut found);
            self.check_templates(&found, &all, false, false, &mut problems);
        }
        problems.sort_by_key(|p| natural(&p.path));
        problems.dedup();
        problems
    }

    fn check_templates(
        &self,
        found: &[(String, &str)],
        visible: &BTreeSet<usize>,
        secrets: bool,
        condition: bool,
        problems: &mut Vec<Problem>,
    ) {
        for (path, source) in found {
            let refs = match template::references(source, condition) {
                Ok(r) => r,
                Err(m) => {
                    problems.push(problem(
                        path.clone(),
                        format!("`{source}` does not parse: {m}"),
                    ));
                    continue;
                }
            };
            for r in refs {
                let mut parts = r.split('.');
                let root = parts.next().unwrap_or_default();
                match root {
                    "steps" => {
                        let Some(id) = parts.next() else { continue };
                        match self.steps.iter().position(|s| s.id == id) {
                            None => problems.push(problem(
                                path.clone(),
                                format!("`{source}` refers to `steps.{id}`, but no step has that id"),
                            )),
                            Some(k) if !visible.contains(&k) => problems.push(problem(
                                path.clone(),
                                format!(
                                    "`{source}` refers to step `{id}`, which is not an ancestor of this step (add it to `needs`)"
                                ),
                            )),
                            Some(_) => {}
                        }
                    }
                    "secrets" if secrets => {}
                    "secrets" => problems.push(problem(
                        path.clone(),
                        format!("`{source}`: secrets may only be used in a step's `config`"),
                    )),
                    r if ROOTS.contains(&r) || FUNCTIONS.contains(&r) => {}
                    other => problems.push(problem(
                        path.clone(),
                        format!(
                            "`{source}` uses the unknown variable `{other}`; templates can use {}",
                            ROOTS.join(", ")
                        ),
                    )),
                }
            }
        }
    }
}

/// A sort key in which `[10]` comes after `[2]`.
fn natural(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    let mut digits = String::new();
    for c in path.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push_str(&format!("{digits:0>10}"));
                digits.clear();
            }
            out.push(c);
        }
    }
    out.push_str(&digits);
    out
}

/// A JSON pointer (`/a/0`) as a path suffix (`.a[0]`).
pub(crate) fn json_path(pointer: &str) -> String {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit()) {
                format!("[{s}]")
            } else {
                format!(".{s}")
            }
        })
        .collect()
}

fn check_step_ref(step: &str, cx: &Context<'_>, at: &str, problems: &mut Vec<Problem>) {
    let (name, digest) = match step.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (step, None),
    };
    if let Err(m) = name.parse::<StepName>() {
        problems.push(problem(at, m));
        return;
    }
    let Some(versions) = cx.steps.get(name) else {
        problems.push(problem(at, format!("no step named `{name}` is registered")));
        return;
    };
    if let Some(d) = digest {
        match d.parse::<Digest>() {
            Err(m) => problems.push(problem(at, format!("`{d}`: {m}"))),
            Ok(d) if !versions.contains(&d) => problems.push(problem(
                at,
                format!("step `{name}` has no version with digest `{d}`"),
            )),
            Ok(_) => {}
        }
    }
}

fn check_retry(r: &RetryPolicy, at: &str, problems: &mut Vec<Problem>) {
    if r.max_attempts == 0 || r.max_attempts > MAX_ATTEMPTS {
        problems.push(problem(
            format!("{at}.max_attempts"),
            format!("`max_attempts` must be from 1 to {MAX_ATTEMPTS}"),
        ));
    }
    for (key, value) in [
        ("initial_delay", &r.initial_delay),
        ("max_delay", &r.max_delay),
    ] {
        if let Err(m) = parse_duration(value) {
            problems.push(problem(format!("{at}.{key}"), m));
        }
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        problems.push(problem(
            format!("{at}.jitter"),
            "`jitter` must be a fraction from 0 to 1",
        ));
    }
}

fn check_limits(l: &StepLimits, cx: &Context<'_>, at: &str, problems: &mut Vec<Problem>) {
    // Each limit is checked on its own, so that every one above its
    // ceiling is reported.
    let check = |problems: &mut Vec<Problem>, key: &str, o: Overrides| {
        if let Err(m) = (cx.ceilings)(&o) {
            problems.push(problem(format!("{at}.{key}"), m));
        }
    };
    if let Some(fuel) = l.fuel {
        if fuel == 0 {
            check_zero(problems, at, "fuel");
        } else {
            check(
                problems,
                "fuel",
                Overrides {
                    fuel: Some(fuel),
                    ..Overrides::default()
                },
            );
        }
    }
    if let Some(t) = &l.timeout {
        match parse_duration(t) {
            Ok(d) if d.is_zero() => check_zero(problems, at, "timeout"),
            Ok(d) => check(
                problems,
                "timeout",
                Overrides {
                    timeout: Some(d),
                    ..Overrides::default()
                },
            ),
            Err(m) => problems.push(problem(format!("{at}.timeout"), m)),
        }
    }
    if let Some(m) = &l.memory {
        match parse_bytes(m) {
            Ok(0) => check_zero(problems, at, "memory"),
            Ok(b) => check(
                problems,
                "memory",
                Overrides {
                    memory_bytes: Some(b),
                    ..Overrides::default()
                },
            ),
            Err(m) => problems.push(problem(format!("{at}.memory"), m)),
        }
    }
}

/// A step's HTTP caps: above zero, and at most the server's.
fn check_http_limits(
    l: &StepLimits,
    server: &crate::model::HttpCaps,
    at: &str,
    problems: &mut Vec<Problem>,
) {
    let mut check = |key: &str, asked: Option<u64>, most: u64, config: &str| match asked {
        Some(0) => check_zero(problems, at, key),
        Some(n) if n > most => problems.push(problem(
            format!("{at}.{key}"),
            format!("limit `{key}` of {n} is above the server's `{config}` of {most}"),
        )),
        _ => {}
    };
    check(
        "http_requests",
        l.http_requests.map(u64::from),
        u64::from(server.max_requests),
        "step-http-max-requests",
    );
    check(
        "http_concurrent",
        l.http_concurrent.map(u64::from),
        u64::from(server.max_concurrent),
        "step-http-max-concurrent",
    );
    if let Some(b) = &l.http_response_bytes {
        match parse_bytes(b) {
            Ok(n) => check(
                "http_response_bytes",
                Some(n),
                server.max_response_bytes,
                "step-http-max-response-bytes",
            ),
            Err(m) => problems.push(problem(format!("{at}.http_response_bytes"), m)),
        }
    }
}

fn check_zero(problems: &mut Vec<Problem>, at: &str, key: &str) {
    problems.push(problem(
        format!("{at}.{key}"),
        format!("`{key}` must be above zero"),
    ));
}

/// Steps on a cycle of `needs`, by index.
fn cycle_members(needs: &[Vec<usize>]) -> BTreeSet<usize> {
    // Kahn's algorithm: whatever cannot be ordered is on or after a cycle;
    // keep only those that can reach themselves.
    let n = needs.len();
    let mut indegree: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ns) in needs.iter().enumerate() {
        for &d in ns {
            dependents[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut ordered = HashSet::new();
    while let Some(i) = ready.pop() {
        ordered.insert(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    (0..n)
        .filter(|i| !ordered.contains(i))
        .filter(|&i| reaches(needs, i, i))
        .collect()
}

fn reaches(needs: &[Vec<usize>], from: usize, target: usize) -> bool {
    let mut seen = HashSet::new();
    let mut stack = needs[from].clone();
    while let Some(i) = stack.pop() {
        if i == target {
            return true;
        }
        if seen.insert(i) {
            stack.extend(needs[i].iter().copied());
        }
    }
    false
}

/// The transitive `needs` of every step (cyclic steps see nothing extra).
pub fn ancestors(needs: &[Vec<usize>], cyclic: &BTreeSet<usize>) -> Vec<BTreeSet<usize>> {
    (0..needs.len())
        .map(|i| {
            let mut seen = BTreeSet::new();
            if cyclic.contains(&i) {
                return seen;
            }
            let mut stack = needs[i].clone();
            while let Some(j) = stack.pop() {
                if j != i && seen.insert(j) {
                    stack.extend(needs[j].iter().copied());
                }
            }
            seen
        })
        .collect()
}
