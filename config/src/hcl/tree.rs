//! A value tree that remembers where every key came from.
//!
//! The file is parsed with `hcl-edit`, which keeps byte spans, and turned into
//! a [`Node`] tree following HCL 1 semantics, which is what SPIRE reads:
//!
//! * `key = value` and `key { ... }` both make `key` an object entry;
//! * `key "a" "b" { ... }` is `key = { a = { b = { ... } } }`, and blocks
//!   with the same key but different labels merge;
//! * an unlabeled block repeated (`key { } key { }`) makes a list;
//! * strings are literal: `"${X}"` stays `${X}` (use `-expandEnv` for
//!   substitution); variables, function calls and operators are rejected.
//!
//! Deserialization goes through [`hcl::Value`] with `serde_path_to_error`,
//! and the failing path is walked back through the tree to find its line.

use std::path::Path;

use hcl::edit::expr::{Expression, ObjectKey, UnaryOperator};
use hcl::edit::structure::{Block, Body, Structure};
use hcl::edit::template::{Element, Template};
use hcl::edit::Span;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde_path_to_error::Segment;

use super::error::{join_key, ConfigError};
use super::source::LineIndex;

/// A configuration value and the line of the key that holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// One-based line of the key (or of the element, in a list).
    pub(crate) line: usize,
    /// `true` when the node is the object made by labeled blocks
    /// (`NodeAttestor "a" {}` makes `NodeAttestor` such an object).
    pub(crate) from_labels: bool,
    /// The value.
    pub(crate) value: NodeValue,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    /// A string, number, boolean or null.
    Scalar(hcl::Value),
    /// A list, from `[...]` or from a repeated unlabeled block.
    Array(Vec<Node>),
    /// An object or block body, in file order.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// An empty object at `line`.
    pub(crate) fn empty_object(line: usize) -> Node {
        Node {
            line,
            from_labels: false,
            value: NodeValue::Object(Vec::new()),
        }
    }

    /// The entry `key` of an object node.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// The plain value, for deserialization.
    pub(crate) fn to_value(&self) -> hcl::Value {
        match &self.value {
            NodeValue::Scalar(v) => v.clone(),
            NodeValue::Array(items) => {
                hcl::Value::Array(items.iter().map(Node::to_value).collect())
            }
            NodeValue::Object(entries) => hcl::Value::Object(
                entries
                    .iter()
                    .map(|(k, n)| (k.clone(), n.to_value()))
                    .collect(),
            ),
        }
    }

    /// The line of the deepest node `path` reaches.
    fn line_at(&self, path: &serde_path_to_error::Path) -> usize {
        let mut node = self;
        for segment in path.iter() {
            let next = match (segment, &node.value) {
                (Segment::Map { key }, _) => node.get(key),
                (Segment::Seq { index }, NodeValue::Array(items)) => items.get(*index),
                _ => continue,
            };
            match next {
                Some(child) => node = child,
                None => break,
            }
        }
        node.line
    }

    /// Deserializes this node into `T`; errors name `file:line` and the dotted
    /// path, starting with `prefix`.
    pub(crate) fn deserialize<T: DeserializeOwned>(
        &self,
        file: &Path,
        prefix: &str,
    ) -> Result<T, ConfigError> {
        let deserializer = IntoDeserializer::<hcl::Error>::into_deserializer(self.to_value());
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let line = self.line_at(err.path());
            let key_path = dotted(prefix, err.path());
            ConfigError::from_serde(file.to_owned(), line, key_path, err.inner().to_string())
        })
    }
}

/// `prefix` followed by the map keys and list indexes of `path`.
fn dotted(prefix: &str, path: &serde_path_to_error::Path) -> String {
    let mut out = prefix.to_owned();
    for segment in path.iter() {
        match segment {
            Segment::Map { key } => out = join_key(&out, key),
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            _ => {}
        }
    }
    out
}

/// How an object entry was written, to apply HCL 1 merge rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `key = value`.
    Attribute,
    /// One unlabeled `key { }`.
    Block,
    /// Several unlabeled `key { }`: the node is a list.
    Blocks,
    /// One or more `key "label" { }`.
    Labeled,
}

/// Builds [`Node`] trees from `hcl-edit` syntax of one file.
pub(crate) struct Builder<'a> {
    file: &'a Path,
    source: &'a str,
    lines: LineIndex,
}

impl<'a> Builder<'a> {
    /// A builder for `source`, read from `file`.
    pub(crate) fn new(file: &'a Path, source: &'a str) -> Self {
        Builder {
            file,
            source,
            lines: LineIndex::new(source),
        }
    }

    /// Parses the whole source into an object node at line 1.
    pub(crate) fn parse(&self) -> Result<Node, ConfigError> {
        let body =
            hcl::edit::parser::parse_body(self.source).map_err(|err| ConfigError::Syntax {
                path: self.file.to_owned(),
                line: err.location().line(),
                column: err.location().column(),
                message: err.message().to_owned(),
            })?;
        self.body(&body, 1, "")
    }

    fn line_of(&self, item: &impl Span, fallback: usize) -> usize {
        item.span()
            .map_or(fallback, |span| self.lines.line(span.start))
    }

    fn body(&self, body: &Body, line: usize, path: &str) -> Result<Node, ConfigError> {
        let mut entries: Vec<(String, Node, Origin)> = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let key = attr.key.as_str();
                    let key_line = self.line_of(&attr.key, line);
                    let key_path = join_key(path, key);
                    if let Some((_, first, _)) = entries.iter().find(|(k, _, _)| k == key) {
                        return Err(self.duplicate(key_line, first.line, key_path));
                    }
                    let mut node = self.expr(&attr.value, key_line, &key_path)?;
                    node.line = key_line;
                    entries.push((key.to_owned(), node, Origin::Attribute));
                }
                Structure::Block(block) => self.block(block, &mut entries, line, path)?,
            }
        }
        let entries = entries.into_iter().map(|(k, n, _)| (k, n)).collect();
        Ok(Node {
            line,
            from_labels: false,
            value: NodeValue::Object(entries),
        })
    }

    fn block(
        &self,
        block: &Block,
        entries: &mut Vec<(String, Node, Origin)>,
        line: usize,
        path: &str,
    ) -> Result<(), ConfigError> {
        let key = block.ident.as_str();
        let key_line = self.line_of(&block.ident, line);
        let mut key_path = join_key(path, key);
        for label in &block.labels {
            key_path = join_key(&key_path, label.as_str());
        }
        let body = self.body(&block.body, key_line, &key_path)?;
        let position = entries.iter().position(|(k, _, _)| k == key);
        if block.labels.is_empty() {
            match position {
                None => entries.push((key.to_owned(), body, Origin::Block)),
                Some(i) => match &mut entries[i] {
                    (_, node, origin @ Origin::Block) => {
                        let first = std::mem::replace(node, Node::empty_object(node.line));
                        node.value = NodeValue::Array(vec![first, body]);
                        *origin = Origin::Blocks;
                    }
                    (
                        _,
                        Node {
                            value: NodeValue::Array(items),
                            ..
                        },
                        Origin::Blocks,
                    ) => items.push(body),
                    (_, node, _) => return Err(self.duplicate(key_line, node.line, key_path)),
                },
            }
            return Ok(());
        }
        let index = match position {
            None => {
                let node = Node {
                    from_labels: true,
                    ..Node::empty_object(key_line)
                };
                entries.push((key.to_owned(), node, Origin::Labeled));
                entries.len() - 1
            }
            Some(i) if entries[i].2 == Origin::Labeled => i,
            Some(i) => return Err(self.duplicate(key_line, entries[i].1.line, key_path)),
        };
        let mut current = &mut entries[index].1;
        let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
        for (i, label) in labels.iter().enumerate() {
            let current_line = current.line;
            let NodeValue::Object(children) = &mut current.value else {
                return Err(self.duplicate(key_line, current_line, key_path));
            };
            let position = children.iter().position(|(k, _)| k == label);
            if i + 1 == labels.len() {
                if let Some(position) = position {
                    let first_line = children[position].1.line;
                    return Err(self.duplicate(key_line, first_line, key_path));
                }
                children.push(((*label).to_owned(), body));
                return Ok(());
            }
            let position = position.unwrap_or_else(|| {
                let node = Node {
                    from_labels: true,
                    ..Node::empty_object(key_line)
                };
                children.push(((*label).to_owned(), node));
                children.len() - 1
            });
            current = &mut children[position].1;
        }
        Ok(())
    }

    fn duplicate(&self, line: usize, first_line: usize, key_path: String) -> ConfigError {
        ConfigError::DuplicateKey {
            path: self.file.to_owned(),
            line,
            first_line,
            key_path,
        }
    }

    fn unsupported(&self, line: usize, key_path: &str, what: &'static str) -> ConfigError {
        ConfigError::UnsupportedExpression {
            path: self.file.to_owned(),
            line,
            key_path: key_path.to_owned(),
            what,
        }
    }

    fn expr(&self, expr: &Expression, line: usize, path: &str) -> Result<Node, ConfigError> {
        let line = self.line_of(expr, line);
        let scalar = |v: hcl::Value| Node {
            line,
            from_labels: false,
            value: NodeValue::Scalar(v),
        };
        Ok(match expr {
            Expression::Null(_) => scalar(hcl::Value::Null),
            Expression::Bool(b) => scalar(hcl::Value::Bool(*b.value())),
            Expression::Number(n) => scalar(hcl::Value::Number(*n.value())),
            Expression::String(s) => scalar(hcl::Value::String(s.value().clone())),
            Expression::StringTemplate(t) => scalar(hcl::Value::String(self.template(t))),
            Expression::HeredocTemplate(h) => {
                scalar(hcl::Value::String(self.template(&h.template)))
            }
            Expression::Parenthesis(p) => self.expr(p.inner(), line, path)?,
            Expression::UnaryOp(op) => match (op.operator.value(), &op.expr) {
                (UnaryOperator::Neg, Expression::Number(n)) => {
                    scalar(hcl::Value::Number(-*n.value()))
                }
                _ => return Err(self.unsupported(line, path, "operators")),
            },
            Expression::Array(array) => {
                let items = array
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.expr(item, line, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?;
                Node {
                    line,
                    from_labels: false,
                    value: NodeValue::Array(items),
                }
            }
            Expression::Object(object) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                for (key, value) in object.iter() {
                    let key_line = self.line_of(key, line);
                    let key = match key {
                        ObjectKey::Ident(ident) => ident.as_str().to_owned(),
                        ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
                        ObjectKey::Expression(_) => {
                            return Err(self.unsupported(key_line, path, "computed object keys"))
                        }
                    };
                    let key_path = join_key(path, &key);
                    if let Some((_, first)) = entries.iter().find(|(k, _)| *k == key) {
                        return Err(self.duplicate(key_line, first.line, key_path));
                    }
                    let mut node = self.expr(value.expr(), key_line, &key_path)?;
                    node.line = key_line;
                    entries.push((key, node));
                }
                Node {
                    line,
                    from_labels: false,
                    value: NodeValue::Object(entries),
                }
            }
            Expression::Variable(_) | Expression::Traversal(_) => {
                return Err(self.unsupported(line, path, "variables"))
            }
            Expression::FuncCall(_) => return Err(self.unsupported(line, path, "function calls")),
            Expression::Conditional(_) | Expression::BinaryOp(_) => {
                return Err(self.unsupported(line, path, "operators"))
            }
            Expression::ForExpr(_) => return Err(self.unsupported(line, path, "for expressions")),
        })
    }

    /// The literal text of a template: HCL 1 has no interpolation, so
    /// `${...}` sequences are kept as written.
    fn template(&self, template: &Template) -> String {
        let mut out = String::new();
        for element in template.iter() {
            match element {
                Element::Literal(literal) => out.push_str(literal.value()),
                other => {
                    let raw = other.span().and_then(|span| self.source.get(span));
                    out.push_str(raw.unwrap_or_default());
                }
            }
        }
        out
    }
}
