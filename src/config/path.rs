//! The JSON path of a config value (`lanes[2].match.any[0].regex`), built
//! step by step as reading and compiling walk down the config.

use std::fmt;

/// A JSON path. Each step borrows its parent on the stack, so walking down
/// costs nothing; the path is written out only when an error or a warning
/// names it.
#[derive(Debug, Clone, Copy)]
pub enum JsonPath<'a> {
    /// The configuration itself (written as the empty string).
    Root,
    /// A member of the object at the parent path.
    Field(&'a JsonPath<'a>, &'a str),
    /// An element of the array at the parent path.
    Index(&'a JsonPath<'a>, usize),
}

impl<'a> JsonPath<'a> {
    /// The path of member `name` under this one.
    pub fn field<'b>(&'b self, name: &'b str) -> JsonPath<'b>
    where
        'a: 'b,
    {
        JsonPath::Field(self, name)
    }

    /// The path of element `index` under this one.
    pub fn index<'b>(&'b self, index: usize) -> JsonPath<'b>
    where
        'a: 'b,
    {
        JsonPath::Index(self, index)
    }
}

impl fmt::Display for JsonPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonPath::Root => Ok(()),
            JsonPath::Field(JsonPath::Root, name) => f.write_str(name),
            JsonPath::Field(parent, name) => write!(f, "{parent}.{name}"),
            JsonPath::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JsonPath;

    #[test]
    fn paths_read_as_json_paths() {
        let root = JsonPath::Root;
        assert_eq!(root.to_string(), "");
        let lanes = root.field("lanes");
        let lane = lanes.index(2);
        let regex = lane
            .field("match")
            .field("any")
            .index(0)
            .field("regex")
            .to_string();
        assert_eq!(regex, "lanes[2].match.any[0].regex");
        assert_eq!(root.index(0).field("name").to_string(), "[0].name");
        assert_eq!(
            root.field("services").field("svc.ns").to_string(),
            "services.svc.ns"
        );
    }
}
