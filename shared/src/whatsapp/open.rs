//! Reading Meta's JSON cheaply and without refusing what is new: [`Text`], a string borrowed from
//! the body; `open_object!`, which reads a struct's named fields and keeps the others; and
//! `open_enum!`, a string enum that keeps unknown values. Meta adds fields and values without
//! notice, and a webhook we cannot parse is a webhook Meta redelivers for seven days.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string from the body: borrowed from it when the JSON string had no escapes, owned when it
/// had (a webhook's strings rarely do), so that reading a webhook copies almost nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the string is the body's own bytes, not a decoded copy.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Self(Cow::Borrowed(text))
    }
}

impl From<String> for Text<'_> {
    fn from(text: String) -> Self {
        Self(Cow::Owned(text))
    }
}

impl From<Text<'_>> for String {
    fn from(text: Text<'_>) -> Self {
        text.0.into_owned()
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<String> for Text<'_> {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Reads an object into a struct of named fields and keeps every other field in its `extra`.
///
/// This is what `#[serde(flatten)]` on `extra` would do, but flatten buffers the whole object into
/// serde's generic content before it sorts the fields, and that was most of the cost of reading a
/// webhook. Here each named field is read straight into its type, and only unknown fields become
/// [`serde_json::Value`]s. A field marked `required` must be present; the others default when absent.
macro_rules! open_object {
    ($name:ident { $($field:ident: $json:literal $($required:ident)?),* $(,)? }) => {
        impl<'de> ::serde::Deserialize<'de> for $name<'de> {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;
                impl<'de> ::serde::de::Visitor<'de> for ObjectVisitor {
                    type Value = $name<'de>;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name<'de>, A::Error> {
                        $(let mut $field = None;)*
                        let mut extra = ::serde_json::Map::new();
                        while let Some(key) = map.next_key::<$crate::whatsapp::open::Text>()? {
                            match key.as_str() {
                                $($json => {
                                    if $field.is_some() {
                                        return Err(::serde::de::Error::duplicate_field($json));
                                    }
                                    $field = Some(map.next_value()?);
                                })*
                                _ => {
                                    extra.insert(key.into(), map.next_value()?);
                                }
                            }
                        }
                        Ok($name { $($field: open_object!(@take $field, $json $(, $required)?),)* extra })
                    }
                }
                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
    (@take $field:ident, $json:literal) => {
        $field.unwrap_or_default()
    };
    (@take $field:ident, $json:literal, required) => {
        match $field {
            Some(value) => value,
            None => return Err(::serde::de::Error::missing_field($json)),
        }
    };
}

pub(crate) use open_object;

/// Declares a string-valued enum whose unknown values are kept in `Other` instead of failing.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(text) => text,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <$crate::whatsapp::open::Text as ::serde::Deserialize>::deserialize(deserializer)?;
                Ok(Self::from(text.as_str()))
            }
        }
    };
}

pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    #[derive(Debug, Default, Serialize)]
    struct Probe<'a> {
        id: Text<'a>,
        title: Option<Text<'a>>,
        count: Vec<u32>,
        extra: Map<String, Value>,
    }

    open_object!(Probe { id: "id" required, title: "title", count: "count" });

    fn probe(body: &str) -> Result<Probe<'_>, serde_json::Error> {
        serde_json::from_str(body)
    }

    #[test]
    fn named_fields_are_read_and_the_others_kept() {
        let read = probe(r#"{"id":"a","title":"caf\u00e9","shiny":[1,2],"count":[3]}"#).unwrap();
        assert!(read.id.is_borrowed());
        assert_eq!(read.title.as_deref(), Some("café"));
        assert!(!read.title.unwrap().is_borrowed());
        assert_eq!(read.count, [3]);
        assert_eq!(read.extra["shiny"], serde_json::json!([1, 2]));
    }

    #[test]
    fn optional_fields_default_and_required_ones_do_not() {
        let read = probe(r#"{"id":"a","title":null}"#).unwrap();
        assert_eq!((read.title, read.count, read.extra.len()), (None, Vec::new(), 0));
        assert!(probe(r#"{"title":"t"}"#).unwrap_err().to_string().contains("missing field `id`"));
        assert!(probe(r#"{"id":"a","id":"b"}"#).unwrap_err().to_string().contains("duplicate field `id`"));
        assert!(probe(r#"["a"]"#).is_err(), "an object only");
    }
}
