//! Update and condition expressions, built clause by clause.
//!
//! Every attribute name goes through a `#name` placeholder (DynamoDB reserves hundreds of words,
//! `status` and `data` among them) and every value through a `:vN` placeholder, so the clauses
//! read like the attributes they touch.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{self, AttributeValue, TransactWriteItem};

/// One UpdateItem's `SET`, `REMOVE` and `ADD` clauses and its condition (clauses joined by AND).
#[derive(Debug, Default)]
pub(super) struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    /// The placeholder path of `path` (`attempts.a1t1.wamid` → `#attempts.#a1t1.#wamid`).
    pub fn name(&mut self, path: &str) -> String {
        path.split('.')
            .map(|segment| {
                let placeholder = if segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    format!("#{segment}")
                } else {
                    // Names such as `delivered#<id>` cannot be part of a placeholder; no attribute
                    // of ours starts with `_`, so `#_N` never meets a name's own placeholder.
                    match self.names.iter().find(|(_, name)| *name == segment) {
                        Some((placeholder, _)) => placeholder.clone(),
                        None => format!("#_{}", self.names.len()),
                    }
                };
                self.names.insert(placeholder.clone(), segment.to_owned());
                placeholder
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The placeholder of a value.
    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub fn set(&mut self, path: &str, value: AttributeValue) {
        let clause = format!("{} = {}", self.name(path), self.value(value));
        self.set.push(clause);
    }

    /// A whole `SET` clause built from placeholders of [`Self::name`] and [`Self::value`], for
    /// what `path = value` cannot say (`list_append`, `if_not_exists`).
    pub fn set_expression(&mut self, clause: &str) {
        self.set.push(clause.to_owned());
    }

    pub fn remove(&mut self, path: &str) {
        let clause = self.name(path);
        self.remove.push(clause);
    }

    pub fn add(&mut self, path: &str, value: AttributeValue) {
        let clause = format!("{} {}", self.name(path), self.value(value));
        self.add.push(clause);
    }

    /// Requires `clause` (built with [`Self::compare`], [`Self::exists`], …) to hold.
    pub fn require(&mut self, clause: String) {
        self.conditions.push(clause);
    }

    /// `path <op> value`.
    pub fn compare(&mut self, path: &str, op: &str, value: AttributeValue) -> String {
        format!("{} {op} {}", self.name(path), self.value(value))
    }

    /// `path IN (values…)`.
    pub fn one_of(&mut self, path: &str, values: impl IntoIterator<Item = AttributeValue>) -> String {
        let name = self.name(path);
        let values: Vec<String> = values.into_iter().map(|value| self.value(value)).collect();
        format!("{name} IN ({})", values.join(", "))
    }

    pub fn exists(&mut self, path: &str) -> String {
        format!("attribute_exists({})", self.name(path))
    }

    pub fn missing(&mut self, path: &str) -> String {
        format!("attribute_not_exists({})", self.name(path))
    }

    /// The update expression, the condition (if any), and the placeholders (if any).
    fn expressions(self) -> Expressions {
        let mut clauses = Vec::new();
        for (keyword, parts, separator) in
            [("SET", &self.set, ", "), ("REMOVE", &self.remove, ", "), ("ADD", &self.add, ", ")]
        {
            if !parts.is_empty() {
                clauses.push(format!("{keyword} {}", parts.join(separator)));
            }
        }
        let condition = (!self.conditions.is_empty())
            .then(|| self.conditions.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" AND "));
        Expressions {
            update: clauses.join(" "),
            condition,
            names: (!self.names.is_empty()).then_some(self.names),
            values: (!self.values.is_empty()).then_some(self.values),
        }
    }

    /// Hands the expressions to a request.
    pub fn apply(self, request: UpdateItemFluentBuilder) -> UpdateItemFluentBuilder {
        let Expressions { update, condition, names, values } = self.expressions();
        request
            .update_expression(update)
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
    }

    /// The same update of item `key` in `table`, as one of a TransactWriteItems.
    pub fn transact(self, table: &str, key: HashMap<String, AttributeValue>) -> Result<TransactWriteItem, BuildError> {
        let Expressions { update, condition, names, values } = self.expressions();
        let update = types::Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(update)
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// An [`Update`]'s expressions, as a request takes them.
struct Expressions {
    update: String,
    condition: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_become_placeholders() {
        let mut update = Update::default();
        assert_eq!(update.name("attempts.a1t1.wamid"), "#attempts.#a1t1.#wamid");
        let odd = update.name("delivered#0123");
        assert!(odd.starts_with("#_"), "{odd}");
        assert_eq!(update.name("delivered#0123"), odd, "one placeholder per name");
        assert_eq!(update.compare("phase", "=", AttributeValue::S("waiting".into())), "#phase = :v0");
        assert_eq!(update.one_of("phase", [AttributeValue::N("1".into())]), "#phase IN (:v1)");
    }
}
