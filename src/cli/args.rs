//! The options of `graylane explain`, and the request they describe.

use crate::engine::HeaderList;

/// `graylane explain` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExplainArgs {
    pub config: String,
    pub plugin: Option<String>,
    /// `-H` headers other than the ones that set the fields below.
    pub headers: Vec<(String, String)>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub authority: Option<String>,
    pub cookies: Vec<String>,
    pub queries: Vec<String>,
    pub baggage: Option<String>,
    pub random: Option<u64>,
    pub json: bool,
}

/// Splits `NAME: VALUE` (the name may be a pseudo-header such as `:path`).
fn split_header(text: &str) -> Option<(String, String)> {
    let (pseudo, body) = match text.strip_prefix(':') {
        Some(rest) => (":", rest),
        None => ("", text),
    };
    let (name, value) = body.split_once(':')?;
    let name = name.trim();
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    Some((
        format!("{pseudo}{}", name.to_ascii_lowercase()),
        value.trim().to_string(),
    ))
}

/// Parses the arguments after `explain`.
pub fn parse_explain(args: &[String]) -> Result<ExplainArgs, String> {
    let mut out = ExplainArgs::default();
    let mut config = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // `--name=value` is the same as `--name value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "--json" {
            if inline.is_some() {
                return Err("--json takes no value".into());
            }
            out.json = true;
            continue;
        }
        if !flag.starts_with('-') || flag == "-" {
            if config.replace(arg.clone()).is_some() {
                return Err(format!("unexpected argument {arg:?}: give one CONFIG"));
            }
            continue;
        }
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "-H" | "--header" => {
                let text = value()?;
                let (name, v) = split_header(&text)
                    .ok_or_else(|| format!("-H {text:?}: write a header as 'name: value'"))?;
                match name.as_str() {
                    ":path" => out.path = Some(v),
                    ":method" => out.method = Some(v),
                    ":authority" | "host" => out.authority = Some(v),
                    _ => out.headers.push((name, v)),
                }
            }
            "--path" => out.path = Some(value()?),
            "--method" => out.method = Some(value()?),
            "--host" => out.authority = Some(value()?),
            "--cookie" => {
                let c = value()?;
                if !c.contains('=') {
                    return Err(format!("--cookie {c:?}: write a cookie as 'name=value'"));
                }
                out.cookies.push(c);
            }
            "--query" => out.queries.push(value()?),
            "--baggage" => out.baggage = Some(value()?),
            "--random" => {
                let n = value()?;
                out.random = Some(
                    n.trim()
                        .parse()
                        .map_err(|_| format!("--random {n:?}: give a non-negative integer"))?,
                );
            }
            "--plugin" => out.plugin = Some(value()?),
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    out.config = config.ok_or("explain needs CONFIG")?;
    Ok(out)
}

impl ExplainArgs {
    /// The `:path` with the `--query` parameters appended.
    pub fn full_path(&self) -> String {
        let mut path = self.path.clone().unwrap_or_else(|| "/".to_string());
        for (i, q) in self.queries.iter().enumerate() {
            let sep = if i == 0 && !path.contains('?') {
                '?'
            } else {
                '&'
            };
            path.push(sep);
            path.push_str(q);
        }
        path
    }

    /// The request headers, pseudo-headers first, as Envoy hands them to
    /// the filter.
    pub fn request(&self) -> HeaderList {
        let mut list: Vec<(String, Vec<u8>)> = Vec::new();
        let mut push =
            |name: &str, value: &str| list.push((name.to_string(), value.as_bytes().to_vec()));
        if let Some(a) = &self.authority {
            push(":authority", a);
        }
        push(":path", &self.full_path());
        push(":method", self.method.as_deref().unwrap_or("GET"));
        for (name, value) in &self.headers {
            push(name, value);
        }
        if !self.cookies.is_empty() {
            push("cookie", &self.cookies.join("; "));
        }
        if let Some(b) = &self.baggage {
            push("baggage", b);
        }
        HeaderList(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builds_the_request() {
        let a = parse_explain(&args(&[
            "c.json",
            "-H",
            "X-Tier: 4",
            "-H",
            ":method: POST",
            "--host=db.internal:8080",
            "--path",
            "/a?x=1",
            "--query",
            "beta=on",
            "--cookie",
            "a=1",
            "--cookie",
            "b=2",
            "--baggage",
            "tenant=acme",
            "-H",
            "Host: h",
        ]))
        .unwrap();
        assert_eq!(a.config, "c.json");
        let h = a.request();
        let pairs: Vec<(&str, &str)> =
            h.0.iter()
                .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
                .collect();
        assert_eq!(
            pairs,
            vec![
                (":authority", "h"),
                (":path", "/a?x=1&beta=on"),
                (":method", "POST"),
                ("x-tier", "4"),
                ("cookie", "a=1; b=2"),
                ("baggage", "tenant=acme"),
            ]
        );
    }

    #[test]
    fn defaults_and_errors() {
        let a = parse_explain(&args(&[
            "c.json", "--query", "q=1", "--query", "r", "--json",
        ]))
        .unwrap();
        assert_eq!(a.full_path(), "/?q=1&r");
        assert!(a.json);
        assert!(parse_explain(&args(&[])).is_err());
        assert!(parse_explain(&args(&["a", "b"])).is_err());
        assert!(parse_explain(&args(&["a", "-H", "novalue"])).is_err());
        assert!(parse_explain(&args(&["a", "-H"])).is_err());
        assert!(parse_explain(&args(&["a", "--cookie", "x"])).is_err());
        assert!(parse_explain(&args(&["a", "--random", "-1"])).is_err());
        assert!(parse_explain(&args(&["a", "--bogus"])).is_err());
    }
}
