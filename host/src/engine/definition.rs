//! The workflow definition format and its validation.
//!
//! In this version a definition is an ordered list of steps, each `{id,
//! step, input?}`. A step's input is its `input` when given, otherwise the
//! previous step's output; the first step gets the execution's `input_data`.
//! The workflow's output is the last step's output.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::model::{StepName, check_name};

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The workflow's id; optional in the body, and must match the path when
    /// given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the workflow is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The steps, run in order.
    pub steps: Vec<StepDef>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Unique within the workflow.
    pub id: String,
    /// The registered step to run.
    pub step: String,
    /// A fixed input; without it the step gets the previous output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
}

/// One problem in a definition, with the JSON path it is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// JSON path such as `$.steps[1].id`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Definition {
    /// Parses JSON or YAML text, reporting a parse failure as one problem.
    pub fn parse(text: &str, yaml: bool) -> Result<Self, Vec<Problem>> {
        let parsed = if yaml {
            serde_yaml_ng::from_str::<serde_json::Value>(text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string())
        };
        let value = parsed.map_err(|message| {
            vec![Problem {
                path: "$".into(),
                message: format!(
                    "the body is not valid {}: {message}",
                    if yaml { "YAML" } else { "JSON" }
                ),
            }]
        })?;
        Self::from_value(value)
    }

    /// Reads a definition from a JSON value, listing every shape problem.
    pub fn from_value(value: serde_json::Value) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(obj) = value.as_object() else {
            return Err(vec![Problem {
                path: "$".into(),
                message: "a workflow definition must be an object".into(),
            }]);
        };
        for key in obj.keys() {
            if !matches!(key.as_str(), "id" | "description" | "steps") {
                problems.push(Problem {
                    path: format!("$.{key}"),
                    message: format!(
                        "unknown field `{key}`; expected `id`, `description` or `steps`"
                    ),
                });
            }
        }
        match obj.get("steps") {
            None => problems.push(Problem {
                path: "$.steps".into(),
                message: "missing field `steps`".into(),
            }),
            Some(serde_json::Value::Array(steps)) => {
                for (i, step) in steps.iter().enumerate() {
                    check_step_shape(i, step, &mut problems);
                }
            }
            Some(_) => problems.push(Problem {
                path: "$.steps".into(),
                message: "`steps` must be an array".into(),
            }),
        }
        for key in ["id", "description"] {
            if obj.get(key).is_some_and(|v| !v.is_string()) {
                problems.push(Problem {
                    path: format!("$.{key}"),
                    message: format!("`{key}` must be a string"),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        serde_json::from_value(value).map_err(|e| {
            vec![Problem {
                path: "$".into(),
                message: e.to_string(),
            }]
        })
    }

    /// Checks the meaning of a well-shaped definition: at least one step,
    /// unique valid ids, valid step names, an `id` that matches the path.
    /// `registered` says whether a step name is registered for the tenant.
    pub fn validate(&self, path_id: &str, registered: impl Fn(&str) -> bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(id) = &self.id
            && id != path_id
        {
            problems.push(Problem {
                path: "$.id".into(),
                message: format!("`{id}` does not match the workflow id `{path_id}` in the path"),
            });
        }
        if self.steps.is_empty() {
            problems.push(Problem {
                path: "$.steps".into(),
                message: "a workflow needs at least one step".into(),
            });
        }
        let mut seen = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            if let Err(m) = check_name("step id", &step.id) {
                problems.push(Problem {
                    path: format!("$.steps[{i}].id"),
                    message: m,
                });
            } else if !seen.insert(step.id.as_str()) {
                problems.push(Problem {
                    path: format!("$.steps[{i}].id"),
                    message: format!("duplicate step id `{}`", step.id),
                });
            }
            match step.step.parse::<StepName>() {
                Err(m) => problems.push(Problem {
                    path: format!("$.steps[{i}].step"),
                    message: m,
                }),
                Ok(_) if !registered(&step.step) => problems.push(Problem {
                    path: format!("$.steps[{i}].step"),
                    message: format!("no step named `{}` is registered", step.step),
                }),
                Ok(_) => {}
            }
        }
        problems
    }
}

fn check_step_shape(i: usize, step: &serde_json::Value, problems: &mut Vec<Problem>) {
    let Some(obj) = step.as_object() else {
        problems.push(Problem {
            path: format!("$.steps[{i}]"),
            message: "a step must be an object `{id, step, input?}`".into(),
        });
        return;
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "id" | "step" | "input") {
            problems.push(Problem {
                path: format!("$.steps[{i}].{key}"),
                message: format!("unknown field `{key}`; expected `id`, `step` or `input`"),
            });
        }
    }
    for key in ["id", "step"] {
        match obj.get(key) {
            None => problems.push(Problem {
                path: format!("$.steps[{i}].{key}"),
                message: format!("missing field `{key}`"),
            }),
            Some(v) if !v.is_string() => problems.push(Problem {
                path: format!("$.steps[{i}].{key}"),
                message: format!("`{key}` must be a string"),
            }),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let err = Definition::from_value(json!({
            "steps": [{"id": "a"}, {"id": 3, "step": "x", "extra": 1}, "nope"],
            "bogus": true
        }))
        .unwrap_err();
        let paths: Vec<_> = err.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.bogus",
                "$.steps[0].step",
                "$.steps[1].extra",
                "$.steps[1].id",
                "$.steps[2]"
            ]
        );
    }

    #[test]
    fn meaning_is_checked() {
        let d = Definition::from_value(json!({
            "id": "other",
            "steps": [{"id": "a", "step": "known"}, {"id": "a", "step": "unknown"}, {"id": "b c", "step": "bad name!"}]
        }))
        .unwrap();
        let problems = d.validate("wf", |s| s == "known");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.id",
                "$.steps[1].id",
                "$.steps[1].step",
                "$.steps[2].id",
                "$.steps[2].step"
            ]
        );
    }

    #[test]
    fn yaml_is_accepted() {
        let d = Definition::parse("steps:\n  - id: a\n    step: echo\n", true).unwrap();
        assert_eq!(d.steps[0].step, "echo");
    }
}
