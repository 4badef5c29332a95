//! Notifier entries: a name, a `kind`, and that kind's settings beside them.
//!
//! ```yaml
//! notifiers:
//!   - name: ops
//!     kind: webhook
//!     url: https://hooks.example.com/telltale
//!   - name: console
//!     kind: console
//! ```
//!
//! [`NotifierKind`] has one arm per kind, each holding the settings struct of the kind's own
//! module ([`console`], [`webhook`]), which also owns the kind's semantic checks. Adding a
//! kind is a module here, an arm in [`NotifierKind`] (the compiler then points at every
//! `match` to extend) and the notifier that delivers it in `telltale-notify`.
//!
//! The entry is read by hand, not by serde's internally tagged enums: those buffer the whole
//! entry before looking at `kind`, which loses serde_yaml's positions (a misspelled key would
//! be reported at the entry, not at its line) and turns `x-id: 42` into a number a string
//! setting then refuses. Here every setting after `kind` goes straight from serde_yaml into
//! the kind's struct, so each error keeps the line and column of what it is about. Settings
//! written before `kind` have to wait for it and are replayed from a `serde_yaml::Value`;
//! their errors quote the key (or the value), and the config loader finds its line from that.

pub mod console;
pub mod webhook;

use std::collections::HashSet;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, VariantAccess,
    Visitor,
};
use serde::{Deserialize, forward_to_deserialize_any};

use crate::Seg;
pub use console::ConsoleConfig;
pub use webhook::WebhookConfig;

/// One notifier: a unique name and what delivers its notifications.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// A unique name, used by routes.
    pub name: String,
    /// The kind (`kind: webhook`) with its settings, written beside `name`.
    pub kind: NotifierKind,
}

/// What delivers a notifier's notifications: one arm per kind, holding the kind's settings.
///
/// Read through [`NotifierConfig`], which takes the arm from the entry's `kind` and its
/// settings from the keys beside it (the derived `Deserialize` is only the means).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(tag = "kind")]
pub enum NotifierKind {
    /// `kind: console`: print notifications to standard output.
    Console(ConsoleConfig),
    /// `kind: webhook`: POST signed JSON to a URL, retrying transient failures.
    Webhook(WebhookConfig),
}

/// The keys notifiers had before `kind` existed (`webhook: { url: ... }`), refused with the
/// rewrite instead of a bare "unknown field".
const OLD_SHAPE: &[&str] = &["console", "webhook"];

/// A problem in one notifier's settings, found by its kind's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The offending key, relative to the notifier entry (`[timeout]`, `[headers, x-id]`).
    pub path: Vec<Seg>,
    /// What is wrong.
    pub message: String,
    /// How to fix it; may be empty.
    pub hint: String,
}

impl Problem {
    pub(crate) fn new(path: Vec<Seg>, message: String, hint: &str) -> Problem {
        Problem {
            path,
            message,
            hint: hint.to_string(),
        }
    }
}

impl NotifierKind {
    /// Everything wrong with the settings that their types cannot express.
    fn problems(&self) -> Vec<Problem> {
        match self {
            NotifierKind::Console(c) => c.problems(),
            NotifierKind::Webhook(w) => w.problems(),
        }
    }
}

/// The notifier part of the config's semantic check: names present and unique, and every
/// kind's own checks. Each problem goes to `report(path, message, hint)` with its path from
/// the top of the file. Returns the notifier names, for the routes' check.
pub(crate) fn check<'c>(
    notifiers: &'c [NotifierConfig],
    report: &mut dyn FnMut(&[Seg], String, &str),
) -> HashSet<&'c str> {
    let mut names = HashSet::new();
    for (i, n) in notifiers.iter().enumerate() {
        let at = |rest: &[Seg]| {
            let mut path = vec![Seg::key("notifiers"), Seg::Index(i)];
            path.extend_from_slice(rest);
            path
        };
        if n.name.trim().is_empty() {
            report(
                &at(&[Seg::key("name")]),
                "a notifier's name must not be empty".into(),
                "routes name notifiers by it, e.g. `name: ops`",
            );
        } else if !names.insert(n.name.as_str()) {
            report(
                &at(&[Seg::key("name")]),
                format!("the notifier name `{}` is used twice", n.name),
                "notifier names must be unique",
            );
        }
        for p in n.kind.problems() {
            report(&at(&p.path), p.message, &p.hint);
        }
    }
    names
}

impl<'de> Deserialize<'de> for NotifierConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntryVisitor)
    }
}

/// Reads one entry: `name`, then the kind through [`NotifierKind`]'s derived (externally
/// tagged) `Deserialize`, fed by [`Entry`] as if the entry were `{ <kind>: { settings } }`.
struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = NotifierConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a notifier: `name`, `kind` and the kind's settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NotifierConfig, A::Error> {
        let mut name = None;
        let kind = NotifierKind::deserialize(Entry {
            map: &mut map,
            name: &mut name,
            early: Vec::new(),
            kinds: &[],
        })?;
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        Ok(NotifierConfig { name, kind })
    }
}

/// The entry's map seen as an enum: the variant is the value of `kind`, its content the
/// other keys. `name` is taken out wherever it appears.
struct Entry<'a, A> {
    map: &'a mut A,
    name: &'a mut Option<String>,
    /// Settings written before `kind`, replayed once the kind is known.
    early: Vec<(String, serde_yaml::Value)>,
    /// The kinds there are, for the message when `kind` is missing.
    kinds: &'static [&'static str],
}

impl<'de, A: MapAccess<'de>> Entry<'_, A> {
    fn take_name(&mut self) -> Result<(), A::Error> {
        if self.name.is_some() {
            return Err(de::Error::duplicate_field("name"));
        }
        *self.name = Some(self.map.next_value()?);
        Ok(())
    }
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Entry<'_, A> {
    type Error = A::Error;

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.kinds = variants;
        visitor.visit_enum(self)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, A::Error> {
        // Only `NotifierKind` (an enum) is read through an `Entry`.
        Err(de::Error::custom(
            "internal error: a notifier entry is read as an enum",
        ))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for Entry<'_, A> {
    type Error = A::Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        mut self,
        seed: V,
    ) -> Result<(V::Value, Self), A::Error> {
        loop {
            let mut plain = Some(std::marker::PhantomData::<String>);
            match self.map.next_key_seed(KeySeed(&mut plain))? {
                None => {
                    let kinds: Vec<String> = self.kinds.iter().map(|k| format!("`{k}`")).collect();
                    return Err(de::Error::custom(format_args!(
                        "missing field `kind` (one of {})",
                        kinds.join(", ")
                    )));
                }
                Some(Key::Name) => self.take_name()?,
                // serde_yaml reads the kind's value, so an unknown kind is reported at it.
                Some(Key::Kind) => {
                    let kind = self.map.next_value_seed(seed)?;
                    return Ok((kind, self));
                }
                Some(Key::Setting(key)) => {
                    let value = self.map.next_value()?;
                    self.early.push((key, value));
                }
            }
        }
    }
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for Entry<'_, A> {
    type Error = A::Error;

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        seed.deserialize(de::value::MapAccessDeserializer::new(Settings {
            map: self.map,
            name: self.name,
            early: self.early.into_iter(),
            replayed: None,
        }))
    }

    fn unit_variant(self) -> Result<(), A::Error> {
        Err(not_newtype())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, A::Error> {
        Err(not_newtype())
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, A::Error> {
        Err(not_newtype())
    }
}

/// Every arm of [`NotifierKind`] holds a settings struct (an empty one for a kind without
/// settings), so that settings can be added later without changing the arm's shape.
fn not_newtype<E: de::Error>() -> E {
    E::custom("internal error: every notifier kind holds a settings struct")
}

/// The kind's settings as a map: first those written before `kind`, then the rest of the
/// entry straight from serde_yaml (`name` still taken out; a second `kind` refused).
struct Settings<'a, A> {
    map: &'a mut A,
    name: &'a mut Option<String>,
    early: std::vec::IntoIter<(String, serde_yaml::Value)>,
    /// The replayed key just handed out, and its value.
    replayed: Option<(String, serde_yaml::Value)>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Settings<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.early.next() {
            let field = seed
                .deserialize(key.as_str().into_deserializer())
                .map_err(|e: de::value::Error| de::Error::custom(e))?;
            self.replayed = Some((key, value));
            return Ok(Some(field));
        }
        let mut seed = Some(seed);
        loop {
            match self.map.next_key_seed(KeySeed(&mut seed))? {
                None => return Ok(None),
                Some(Key::Name) => {
                    if self.name.is_some() {
                        return Err(de::Error::duplicate_field("name"));
                    }
                    *self.name = Some(self.map.next_value()?);
                }
                Some(Key::Kind) => return Err(de::Error::duplicate_field("kind")),
                Some(Key::Setting(field)) => return Ok(Some(field)),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.replayed.take() {
            // serde_yaml places this error at the entry, having no position for a replayed
            // value; the key, quoted, lets the loader find its line.
            Some((key, value)) => seed
                .deserialize(value)
                .map_err(|e| de::Error::custom(format_args!("{e} (in `{key}`)"))),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A key of a notifier entry.
enum Key<T> {
    Name,
    Kind,
    /// Any other key, as `seed` made it (a field of the kind's struct, or the text).
    Setting(T),
}

/// Reads one key of the entry. Runs inside serde_yaml's reading of the key, so the errors it
/// raises (an old-shape key, a field the kind does not have) carry the key's line and column.
/// The seed for other keys is lent, not given: `name` and `kind` do not use it up.
struct KeySeed<'s, S>(&'s mut Option<S>);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, S> {
    type Value = Key<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for KeySeed<'_, S> {
    type Value = Key<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key: `name`, `kind` or a setting of the kind")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        match key {
            "name" => Ok(Key::Name),
            "kind" => Ok(Key::Kind),
            old if OLD_SHAPE.contains(&old) => Err(E::custom(format_args!(
                "`{old}:` is now `kind: {old}`, with its settings beside `name`: replace \
                 `{old}:` by `kind: {old}` and move the settings under it up one level"
            ))),
            other => {
                let seed = self
                    .0
                    .take()
                    .ok_or_else(|| E::custom("internal error: a key seed used twice"))?;
                seed.deserialize(other.into_deserializer())
                    .map(Key::Setting)
            }
        }
    }
}

impl JsonSchema for NotifierConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NotifierConfig".into()
    }

    /// [`NotifierKind`]'s schema (one `oneOf` branch per kind, each with its `kind` constant
    /// and settings) with `name` added to every branch: the branches refuse unknown keys, so
    /// `name` must be one of each branch's own properties.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = NotifierKind::json_schema(generator);
        let name = schemars::json_schema!({
            "description": "A unique name, used by routes.",
            "type": "string",
        });
        let branches = schema
            .get_mut("oneOf")
            .and_then(serde_json::Value::as_array_mut);
        for branch in branches.into_iter().flatten() {
            let Some(branch) = branch.as_object_mut() else {
                continue;
            };
            if let Some(props) = branch
                .get_mut("properties")
                .and_then(serde_json::Value::as_object_mut)
            {
                props.insert("name".into(), name.clone().into());
            }
            if let Some(required) = branch
                .get_mut("required")
                .and_then(serde_json::Value::as_array_mut)
            {
                required.insert(0, "name".into());
            }
        }
        schema.insert(
            "description".into(),
            "One notifier: `name`, `kind` and the kind's settings beside them.".into(),
        );
        schema
    }
}

#[cfg(test)]
mod tests;
