//! The TaskQueues of one `simulate --taskqueue` file: a single TaskQueue, several
//! YAML documents separated by `---`, or a `kind: List` with `items` (what
//! `kubectl get tq -o yaml` prints), in any mix. Empty documents and documents
//! of another kind (a Deployment beside its TaskQueue in one manifest) are
//! skipped; a document without a `kind` is read as a TaskQueue. A TaskQueue's
//! `status` is ignored: the simulator needs only its name and spec.

use serde::Deserialize;
use serde_yaml::Value;
use thiserror::Error;

use crate::crd::{TaskQueue, TaskQueueSpec};

/// One TaskQueue of a file: its `metadata.name`, when it has one, and its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSpec {
    pub name: Option<String>,
    pub spec: TaskQueueSpec,
}

#[derive(Debug, Error)]
pub enum TaskQueueFileError {
    #[error("document {document} is not YAML")]
    Yaml {
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{place} is not a TaskQueue")]
    NotATaskQueue {
        place: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("no TaskQueue in it (kinds found: {kinds})")]
    Empty { kinds: String },
}

/// Every TaskQueue in `text`, in file order; documents are numbered from 1 in
/// errors, and a List's items from 0 (`document 2, items[3]`).
pub fn parse_taskqueues(text: &str) -> Result<Vec<NamedSpec>, TaskQueueFileError> {
    let mut found = Vec::new();
    let mut other_kinds = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = Value::deserialize(document).map_err(|source| TaskQueueFileError::Yaml {
            document: number,
            source,
        })?;
        if value.is_null() {
            continue;
        }
        match kind_of(&value) {
            Some("List") => {
                let items = value.get("items").and_then(Value::as_sequence);
                for (item_index, item) in items.into_iter().flatten().enumerate() {
                    let place = format!("document {number}, items[{item_index}]");
                    match kind_of(item) {
                        None | Some("TaskQueue") => found.push(named_spec(item, place)?),
                        Some(other) => other_kinds.push(other.to_owned()),
                    }
                }
            }
            None | Some("TaskQueue") => {
                found.push(named_spec(&value, format!("document {number}"))?);
            }
            Some(other) => other_kinds.push(other.to_owned()),
        }
    }
    if found.is_empty() {
        let kinds = if other_kinds.is_empty() {
            "none".to_owned()
        } else {
            other_kinds.join(", ")
        };
        return Err(TaskQueueFileError::Empty { kinds });
    }
    Ok(found)
}

/// The TaskQueues of one file, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQueueFile {
    /// The path as given, for labels that need it.
    pub path: String,
    /// The file's name without its extension: the label of a nameless TaskQueue.
    pub stem: String,
    pub queues: Vec<NamedSpec>,
}

/// A label and spec per TaskQueue of `files`, in order. The label is the
/// TaskQueue's name; one without a name takes its file's stem (`stem #2` for the
/// second of several in a file). A label two TaskQueues would share gets the
/// file's path added, `name (path)`, and its position, `name (path #2)`, when
/// one file holds both.
pub fn labelled(files: &[TaskQueueFile]) -> Vec<(String, TaskQueueSpec)> {
    let named: Vec<(String, &TaskQueueFile, usize)> = files
        .iter()
        .flat_map(|file| {
            let several = file.queues.len() > 1;
            file.queues.iter().enumerate().map(move |(index, queue)| {
                let name = match &queue.name {
                    Some(name) => name.clone(),
                    None if several => format!("{} #{}", file.stem, index + 1),
                    None => file.stem.clone(),
                };
                (name, file, index)
            })
        })
        .collect();
    let count = |name: &str| named.iter().filter(|(n, _, _)| n == name).count();
    named
        .iter()
        .map(|(name, file, index)| {
            let label = if count(name) == 1 {
                name.clone()
            } else if file
                .queues
                .iter()
                .filter(|q| q.name.as_ref() == Some(name))
                .count()
                > 1
            {
                format!("{name} ({} #{})", file.path, index + 1)
            } else {
                format!("{name} ({})", file.path)
            };
            (label, file.queues[*index].spec.clone())
        })
        .collect()
}

fn kind_of(value: &Value) -> Option<&str> {
    value.get("kind").and_then(Value::as_str)
}

/// A TaskQueue's name and spec; its status, whatever shape it has, is dropped.
fn named_spec(value: &Value, place: String) -> Result<NamedSpec, TaskQueueFileError> {
    let mut value = value.clone();
    if let Some(mapping) = value.as_mapping_mut() {
        mapping.remove("status");
    }
    let queue = TaskQueue::deserialize(value)
        .map_err(|source| TaskQueueFileError::NotATaskQueue { place, source })?;
    Ok(NamedSpec {
        name: queue.metadata.name,
        spec: queue.spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "apiVersion: warren.dev/v1alpha1\nkind: TaskQueue\nmetadata:\n  name: worker-a\n\
        spec:\n  queue: queue_a\n  scaleTargetRef: {name: worker-a}\n  maxReplicas: 6\n";

    fn names(found: &[NamedSpec]) -> Vec<(Option<&str>, &str)> {
        found
            .iter()
            .map(|n| (n.name.as_deref(), n.spec.queue.as_str()))
            .collect()
    }

    #[test]
    fn reads_a_single_taskqueue() {
        let found = parse_taskqueues(A).expect("a TaskQueue");
        assert_eq!(names(&found), [(Some("worker-a"), "queue_a")]);
        assert_eq!(found[0].spec.max_replicas, 6);
    }

    #[test]
    fn reads_every_document_of_a_stream() {
        let b = A
            .replace("worker-a", "worker-b")
            .replace("queue_a", "queue_b");
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: worker-a}\n";
        let text = format!("---\n{A}---\n{deployment}---\n{b}---\n");
        let found = parse_taskqueues(&text).expect("two TaskQueues");
        assert_eq!(
            names(&found),
            [(Some("worker-a"), "queue_a"), (Some("worker-b"), "queue_b")]
        );
    }

    #[test]
    fn reads_the_items_of_a_list_as_kubectl_prints_it() {
        let text = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n\
            - apiVersion: warren.dev/v1alpha1\n  kind: TaskQueue\n  metadata: {name: worker-a, uid: x}\n  \
              spec: {queue: queue_a, scaleTargetRef: {name: worker-a}, maxReplicas: 6}\n  \
              status: {desiredReplicas: 3, someFieldOfAnotherVersion: [1]}\n\
            - apiVersion: warren.dev/v1alpha1\n  kind: TaskQueue\n  metadata: {name: worker-b}\n  \
              spec: {queue: queue_b, scaleTargetRef: {name: worker-b}, maxReplicas: 6}\n";
        let found = parse_taskqueues(text).expect("a List");
        assert_eq!(
            names(&found),
            [(Some("worker-a"), "queue_a"), (Some("worker-b"), "queue_b")]
        );
    }

    #[test]
    fn a_document_without_a_name_or_kind_is_still_a_taskqueue() {
        let text = "metadata: {}\nspec: {queue: q, scaleTargetRef: {name: w}, maxReplicas: 1}\n";
        let found = parse_taskqueues(text).expect("a TaskQueue");
        assert_eq!(names(&found), [(None, "q")]);
    }

    #[test]
    fn labels_are_names_made_distinct_by_their_file() {
        let spec = parse_taskqueues(A).expect("a TaskQueue")[0].spec.clone();
        let queue = |name: Option<&str>| NamedSpec {
            name: name.map(str::to_owned),
            spec: spec.clone(),
        };
        let file = |path: &str, stem: &str, queues| TaskQueueFile {
            path: path.into(),
            stem: stem.into(),
            queues,
        };
        let files = [
            file(
                "a.yaml",
                "a",
                vec![queue(Some("worker-a")), queue(Some("worker-b"))],
            ),
            file("variant.yaml", "variant", vec![queue(Some("worker-a"))]),
            file("two.yaml", "two", vec![queue(None), queue(None)]),
            file("one.yaml", "one", vec![queue(None)]),
            file(
                "same.yaml",
                "same",
                vec![queue(Some("x")), queue(Some("x"))],
            ),
        ];
        let labels: Vec<String> = labelled(&files).into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            labels,
            [
                "worker-a (a.yaml)",
                "worker-b",
                "worker-a (variant.yaml)",
                "two #1",
                "two #2",
                "one",
                "x (same.yaml #1)",
                "x (same.yaml #2)",
            ]
        );
    }

    #[test]
    fn errors_name_the_document_and_what_is_missing() {
        let text = format!("{A}---\nkind: List\nitems:\n- kind: TaskQueue\n  spec: {{queue: q}}\n");
        let error = parse_taskqueues(&text).expect_err("no scaleTargetRef");
        assert_eq!(error.to_string(), "document 2, items[0] is not a TaskQueue");
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert!(
            source
                .as_deref()
                .is_some_and(|s| s.contains("scaleTargetRef")),
            "{source:?}"
        );
        let error = parse_taskqueues("kind: Deployment\n---\n").expect_err("no TaskQueue");
        assert_eq!(
            error.to_string(),
            "no TaskQueue in it (kinds found: Deployment)"
        );
        assert!(matches!(
            parse_taskqueues("a: [\n"),
            Err(TaskQueueFileError::Yaml { document: 1, .. })
        ));
    }
}
