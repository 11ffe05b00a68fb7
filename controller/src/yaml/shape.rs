//! A lenient first pass over a YAML file: every unknown key and every value of the wrong kind
//! (a list where a map belongs, a map where one value belongs), all at once.
//!
//! serde stops at its first error, so a suite with three misspelt keys would take three runs to
//! fix. This pass reads the file into a schema-free tree of [`Node`]s (with positions) and walks
//! it against a [`Shape`] whose key lists come from the very structs the strict pass fills
//! (`serde_introspect`), so the two cannot drift apart. Only when it finds nothing does the
//! strict pass run, and that one reports what remains (one problem at a time).

use super::{Diagnostic, Pos};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::Path;

/// What the file holds, without a schema.
#[derive(Debug)]
pub enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    List(Vec<Spanned<Node>>),
    /// A scalar, or nothing (`key:`).
    Value,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Value)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<Spanned<Node>>()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a value must look like.
pub enum Shape {
    /// Not checked here (the strict pass and the validator say what is wrong with it).
    Any,
    /// One value: a scalar or nothing.
    Value,
    /// A list whose items have this shape.
    ListOf(Box<Shape>),
    /// A map with only these keys; the listed ones have their own shape, others are [`Shape::Any`].
    Map {
        keys: &'static [&'static str],
        children: Vec<(&'static str, Shape)>,
    },
}

impl Shape {
    /// The keys of the struct `T` deserializes (its serde field names).
    pub fn map_of<'de, T: Deserialize<'de>>(children: Vec<(&'static str, Shape)>) -> Shape {
        Shape::Map {
            keys: serde_aux::serde_introspection::serde_introspect::<T>(),
            children,
        }
    }

    pub fn list_of(item: Shape) -> Shape {
        Shape::ListOf(Box::new(item))
    }
}

/// Every unknown key and wrongly shaped value in `text`; empty when the file is not YAML at all
/// (the strict pass reports that).
pub fn check(file: &Path, text: &str, shape: &Shape) -> Vec<Diagnostic> {
    let options = serde_saphyr::options! {
        strict_indentation: true,
    };
    // A file that is not YAML, or not a map at all (empty, a list), is the strict pass's to
    // report: its messages for those are the ones users know.
    let Ok(root) = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options) else {
        return Vec::new();
    };
    if !matches!(root.value, Node::Map(_)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    walk(&root, shape, "the file", text, &mut |pos, message| {
        out.push(Diagnostic {
            file: file.to_path_buf(),
            pos: Some(pos),
            message,
        })
    });
    out.sort_by_key(|d| d.pos);
    out
}

fn walk(
    node: &Spanned<Node>,
    shape: &Shape,
    what: &str,
    text: &str,
    say: &mut dyn FnMut(Pos, String),
) {
    let pos = Pos::of(node);
    let found = || match &node.value {
        Node::Map(_) => "a map".to_string(),
        Node::List(_) => "a list".to_string(),
        Node::Value => format!(
            "'{}'",
            super::source_text(text, node.referenced).unwrap_or_default()
        ),
    };
    let empty = matches!(node.value, Node::Value)
        && matches!(
            super::source_text(text, node.referenced).as_deref(),
            None | Some("" | "~" | "null")
        );
    match (shape, &node.value) {
        // `key:` with nothing: the validator says "has no value" (or takes the default).
        _ if empty => {}
        (Shape::Any, _) | (Shape::Value, Node::Value) => {}
        (Shape::Value, _) => say(pos, format!("{what} takes one value, found {}", found())),
        (Shape::ListOf(item), Node::List(items)) => {
            for (i, it) in items.iter().enumerate() {
                walk(it, item, &format!("item {} of {what}", i + 1), text, say);
            }
        }
        (Shape::ListOf(_), _) => say(
            pos,
            format!("expected a list for {what}, found {}", found()),
        ),
        (Shape::Map { keys, children }, Node::Map(entries)) => {
            for (k, v) in entries {
                if !keys.contains(&k.value.as_str()) {
                    say(
                        Pos::of(k),
                        format!(
                            "unknown key '{}' (allowed: {}){}",
                            k.value,
                            keys.join(", "),
                            suggestion(&k.value, keys)
                        ),
                    );
                    continue;
                }
                if let Some((_, s)) = children.iter().find(|(name, _)| *name == k.value) {
                    walk(v, s, &format!("'{}'", k.value), text, say);
                }
            }
        }
        (Shape::Map { keys, .. }, _) => say(
            pos,
            format!(
                "expected a map (`key: value` lines with keys {}) for {what}, found {}",
                keys.join(", "),
                found()
            ),
        ),
    }
}

/// `; did you mean 'x'?` for a key one or two edits from an allowed one.
fn suggestion(key: &str, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!("; did you mean '{k}'?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        size: u32,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        title: String,
        items: Vec<Item>,
        tags: Vec<String>,
    }

    fn shape() -> Shape {
        Shape::map_of::<Doc>(vec![
            ("title", Shape::Value),
            ("items", Shape::list_of(Shape::map_of::<Item>(vec![]))),
            ("tags", Shape::list_of(Shape::Value)),
        ])
    }

    #[test]
    fn every_unknown_key_and_misshapen_value_is_reported_at_once() {
        let text = "title: [a]\nitmes: []\nitems:\n  - {name: a, sise: 1}\n  - name: b\n    colour: red\ntags: x\nextra: 1\n";
        let found: Vec<String> = check(Path::new("d.yaml"), text, &shape())
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "d.yaml:1:8: 'title' takes one value, found a list",
                "d.yaml:2:1: unknown key 'itmes' (allowed: title, items, tags); did you mean 'items'?",
                "d.yaml:4:15: unknown key 'sise' (allowed: name, size); did you mean 'size'?",
                "d.yaml:6:5: unknown key 'colour' (allowed: name, size)",
                "d.yaml:7:7: expected a list for 'tags', found 'x'",
                "d.yaml:8:1: unknown key 'extra' (allowed: title, items, tags)",
            ]
        );
    }

    #[test]
    fn keys_that_are_numbers_or_booleans_are_keys_too() {
        let found: Vec<String> = check(Path::new("d.yaml"), "title: t\n1: x\ntrue: y\n", &shape())
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "d.yaml:2:1: unknown key '1' (allowed: title, items, tags)",
                "d.yaml:3:1: unknown key 'true' (allowed: title, items, tags)",
            ]
        );
    }

    #[test]
    fn a_well_shaped_file_and_a_broken_one_give_nothing_here() {
        let ok = "title: t\nitems:\n  - {name: a, size: 1}\ntags: [x, y]\n";
        assert!(check(Path::new("d.yaml"), ok, &shape()).is_empty());
        assert!(check(Path::new("d.yaml"), "a: [unclosed", &shape()).is_empty());
    }
}
