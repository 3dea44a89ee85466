//! Query and form parameters the way the VCS servers read them.
//!
//! The allowlist looks at two kinds of parameters: `_method`, which Rails (GitLab) and other
//! frameworks honour as a method override, and parameters that name another project
//! (GitLab's `from_project_id`). A server decodes names and values (`%5F` is `_`, `+` is a
//! space in `application/x-www-form-urlencoded`), Rack splits a query at `;` as well as `&`,
//! and it reads `name[]`, `name[key]`, `name]` and `[name]` as the parameter `name` (leading
//! brackets dropped, the name ending at the next bracket); so pairs are split at both
//! separators, names are decoded and cut the same way before they are compared, and every
//! occurrence of a repeated parameter is returned.

/// The method-override parameter of Rails' `Rack::MethodOverride` and others.
pub(crate) const METHOD_PARAM: &str = "_method";

/// Decoded `(name, value)` pairs of a query or a form body, in order.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// `query` is what follows `?` (or a whole form body); `None` has no parameters.
    pub(crate) fn parse(query: Option<&str>) -> Params {
        let pairs = query
            .unwrap_or_default()
            .split(['&', ';'])
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (base_name(&decode(name)).to_owned(), decode(value))
            })
            .collect();
        Params { pairs }
    }

    /// Whether some parameter is called `name` (after decoding; `name[]` counts).
    pub(crate) fn any_named(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// Every value of `name`, decoded.
    pub(crate) fn values(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// `+` is a space, then percent-decoding; invalid UTF-8 is replaced (the canonical checks
/// already refused it in queries).
fn decode(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// `name[]`, `name[key]`, `name]` and `[name]` are the parameter `name` to Rack.
fn base_name(name: &str) -> &str {
    let name = name.trim().trim_start_matches(['[', ']']);
    name.split(['[', ']']).next().unwrap_or(name).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_decoded_and_cut_at_brackets() {
        let p = Params::parse(Some(
            "a=1&%5Fmethod=DELETE&from_project_id[]=9&from%5fproject%5fid=group%2Fx&x",
        ));
        assert!(p.any_named("_method"));
        assert!(p.any_named("x"));
        assert_eq!(p.values("from_project_id"), vec!["9", "group/x"]);
        assert!(!Params::parse(None).any_named("_method"));
        assert!(Params::parse(Some("_method+=x")).any_named("_method"));
    }

    #[test]
    fn semicolons_separate_and_stray_brackets_name_the_same_parameter() {
        let p = Params::parse(Some("from=a&to=b;from_project_id=99"));
        assert_eq!(p.values("from_project_id"), vec!["99"]);
        for query in [
            "from_project_id]=99",
            "[from_project_id]=99",
            "]]from_project_id[x]=99",
        ] {
            let p = Params::parse(Some(query));
            assert_eq!(p.values("from_project_id"), vec!["99"], "{query}");
        }
        assert!(Params::parse(Some("_method]=DELETE")).any_named("_method"));
        assert!(Params::parse(Some("[_method]=DELETE")).any_named("_method"));
    }
}
