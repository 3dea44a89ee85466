//! The import rule: no file under `src/` reaches itself through the files it names.
//!
//! Every `.rs` file under `src/` is a node. A file has an edge to another when it names, in a
//! `use` or in a path anywhere in its code (macro bodies included), an item through a module path
//! that resolves to that file: `crate::a::b::C`, `super::x`, `self::x`, a child module declared
//! in the file (`mod hub;` … `hub::Hub`), or `vcs_agent::…` from a binary. A path resolves to the
//! deepest module that has a file of its own; inline modules belong to their file, so a file's
//! `#[cfg(test)] mod tests { use super::*; }` names the file itself and is no edge. `mod x;`
//! declarations are not edges. Comments and string literals are not code: the files are parsed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The library crate's name, as the binaries name it.
const LIBRARY: &str = "vcs_agent";

#[test]
fn no_file_under_src_imports_itself_through_others() {
    let sources = read_sources(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let graph = Graph::build(&sources).unwrap_or_else(|error| panic!("{error}"));
    let cycles = graph.cycles();
    let listed: Vec<String> = cycles.iter().map(|cycle| graph.describe(cycle)).collect();
    assert!(
        listed.is_empty(),
        "{} import cycles under src/:\n{}",
        listed.len(),
        listed.join("\n")
    );
}

/// Every `.rs` file under `root`, by its path relative to `root` with `/` separators.
fn read_sources(root: &Path) -> BTreeMap<String, String> {
    let mut sources = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read a folder under src") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(root).expect("under src");
                let name = relative.to_string_lossy().replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("read a source file");
                sources.insert(name, text);
            }
        }
    }
    sources
}

/// A module: the crate root file it belongs to and its path below that root.
type ModulePath = (String, Vec<String>);

/// The file graph, with for each edge the first path that made it.
struct Graph {
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

/// Where each file sits in its crate's module tree.
struct Tree {
    /// Module (root, path) → the file that holds it.
    files: BTreeMap<ModulePath, String>,
    /// File → its module.
    modules: BTreeMap<String, ModulePath>,
}

impl Graph {
    fn build(sources: &BTreeMap<String, String>) -> Result<Graph, String> {
        let mut parsed = BTreeMap::new();
        for (name, text) in sources {
            let file = syn::parse_file(text).map_err(|error| format!("{name}: {error}"))?;
            parsed.insert(name.clone(), file);
        }
        let tree = Tree::build(&parsed);
        let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, file) in &parsed {
            let Some(module) = tree.modules.get(name) else {
                continue;
            };
            let mut collector = Collector {
                tree: &tree,
                file: name,
                root: &module.0,
                scope: module.1.clone(),
                children: vec![declared_modules(&file.items)],
                found: BTreeMap::new(),
            };
            collector.visit_file(file);
            edges.insert(name.clone(), collector.found);
        }
        Ok(Graph { edges })
    }

    /// Cycles covering every edge that lies on one: for each such edge, the shortest way back.
    /// Each cycle starts at its smallest file and is listed once.
    fn cycles(&self) -> Vec<Vec<String>> {
        let components = self.components();
        let mut found = BTreeSet::new();
        for component in components.iter().filter(|c| c.len() > 1) {
            for from in component {
                for to in self.targets(from).filter(|to| component.contains(*to)) {
                    if let Some(back) = self.shortest(to, from, component) {
                        let mut cycle = vec![from.clone()];
                        cycle.extend(back);
                        cycle.pop();
                        let start = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
                        cycle.rotate_left(start);
                        found.insert(cycle);
                    }
                }
            }
        }
        found.into_iter().collect()
    }

    /// `a.rs → b.rs → a.rs`, then the path behind each arrow.
    fn describe(&self, cycle: &[String]) -> String {
        let mut ring: Vec<&String> = cycle.iter().collect();
        ring.push(&cycle[0]);
        let names: Vec<&str> = ring.iter().map(|file| file.as_str()).collect();
        let why: Vec<String> = ring
            .windows(2)
            .map(|pair| format!("{} names {}", pair[0], self.edges[pair[0]][pair[1]]))
            .collect();
        format!("{}\n    ({})", names.join(" → "), why.join("; "))
    }

    fn targets<'a>(&'a self, from: &str) -> impl Iterator<Item = &'a String> {
        self.edges.get(from).into_iter().flat_map(|to| to.keys())
    }

    /// The files from `from` to `to` (both included) along the fewest edges inside `within`.
    fn shortest(&self, from: &str, to: &str, within: &BTreeSet<String>) -> Option<Vec<String>> {
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(file) = queue.pop_front() {
            if file == to {
                let mut path = vec![to.to_string()];
                let mut at = to;
                while let Some(&before) = previous.get(at) {
                    path.push(before.to_string());
                    at = before;
                }
                path.reverse();
                return Some(path);
            }
            for next in self.targets(file).filter(|next| within.contains(*next)) {
                if seen.insert(next) {
                    previous.insert(next, file);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Strongly connected components (Tarjan).
    fn components(&self) -> Vec<BTreeSet<String>> {
        struct State<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            components: Vec<BTreeSet<String>>,
        }
        fn visit<'a>(state: &mut State<'a>, file: &'a str) {
            let n = state.index.len();
            state.index.insert(file, n);
            state.low.insert(file, n);
            state.stack.push(file);
            state.on_stack.insert(file);
            for next in state.graph.targets(file) {
                let next = next.as_str();
                if !state.index.contains_key(next) {
                    visit(state, next);
                    let low = state.low[file].min(state.low[next]);
                    state.low.insert(file, low);
                } else if state.on_stack.contains(next) {
                    let low = state.low[file].min(state.index[next]);
                    state.low.insert(file, low);
                }
            }
            if state.low[file] == state.index[file] {
                let mut component = BTreeSet::new();
                while let Some(member) = state.stack.pop() {
                    state.on_stack.remove(member);
                    component.insert(member.to_string());
                    if member == file {
                        break;
                    }
                }
                state.components.push(component);
            }
        }
        let mut state = State {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            components: Vec::new(),
        };
        for file in self.edges.keys() {
            if !state.index.contains_key(file.as_str()) {
                visit(&mut state, file);
            }
        }
        state.components
    }
}

impl Tree {
    /// Walks each crate root's `mod x;` declarations down to the files they load.
    fn build(parsed: &BTreeMap<String, syn::File>) -> Tree {
        let mut tree = Tree {
            files: BTreeMap::new(),
            modules: BTreeMap::new(),
        };
        let roots = parsed.keys().filter(|name| is_crate_root(name));
        let mut pending: Vec<(String, String, Vec<String>)> = roots
            .map(|root| (root.clone(), root.clone(), Vec::new()))
            .collect();
        while let Some((file, root, path)) = pending.pop() {
            if tree.modules.contains_key(&file) {
                continue;
            }
            tree.files
                .insert((root.clone(), path.clone()), file.clone());
            tree.modules
                .insert(file.clone(), (root.clone(), path.clone()));
            let folder = child_folder(&file, file == root);
            let mut found = Vec::new();
            loaded_modules(&parsed[&file].items, &folder, &path, &mut found);
            for (child_path, candidates) in found {
                if let Some(child) = candidates.into_iter().find(|c| parsed.contains_key(c)) {
                    pending.push((child, root.clone(), child_path));
                }
            }
        }
        tree
    }

    /// The file of the deepest module along `path` that has one.
    fn resolve(&self, root: &str, path: &[String]) -> Option<&String> {
        (0..=path.len())
            .rev()
            .find_map(|len| self.files.get(&(root.to_string(), path[..len].to_vec())))
    }
}

fn is_crate_root(name: &str) -> bool {
    let in_bin = name.strip_prefix("bin/");
    matches!(name, "lib.rs" | "main.rs" | "build.rs")
        || in_bin.is_some_and(|rest| !rest.contains('/') || rest.ends_with("/main.rs"))
}

/// The folder in which `mod x;` of this file looks for `x.rs` or `x/mod.rs`.
fn child_folder(file: &str, is_root: bool) -> String {
    let (folder, name) = file.rsplit_once('/').unwrap_or(("", file));
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    if is_root || name == "mod.rs" {
        prefix
    } else {
        format!("{prefix}{}/", name.trim_end_matches(".rs"))
    }
}

/// Each `mod x;` (also inside inline modules): its module path and the files it may load.
fn loaded_modules(
    items: &[syn::Item],
    folder: &str,
    path: &[String],
    found: &mut Vec<(Vec<String>, Vec<String>)>,
) {
    for item in items {
        let syn::Item::Mod(module) = item else {
            continue;
        };
        let name = module.ident.to_string();
        let mut child_path = path.to_vec();
        child_path.push(name.clone());
        match &module.content {
            Some((_, inner)) => {
                loaded_modules(inner, &format!("{folder}{name}/"), &child_path, found);
            }
            None => {
                let candidates = match path_attribute(&module.attrs) {
                    Some(file) => vec![format!("{folder}{file}")],
                    None => vec![
                        format!("{folder}{name}.rs"),
                        format!("{folder}{name}/mod.rs"),
                    ],
                };
                found.push((child_path, candidates));
            }
        }
    }
}

fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(pair) if pair.path.is_ident("path") => match &pair.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) => Some(text.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The names of the modules these items declare, inline or not.
fn declared_modules(items: &[syn::Item]) -> BTreeSet<String> {
    let modules = items.iter().filter_map(|item| match item {
        syn::Item::Mod(module) => Some(module.ident.to_string()),
        _ => None,
    });
    modules.collect()
}

/// Walks one file, resolving every module path it names.
struct Collector<'a> {
    tree: &'a Tree,
    file: &'a str,
    root: &'a str,
    /// The module the code being visited is in (the file's, plus inline modules).
    scope: Vec<String>,
    /// For each level of `scope` from the file's own: the modules declared there.
    children: Vec<BTreeSet<String>>,
    found: BTreeMap<String, String>,
}

impl Collector<'_> {
    /// Resolves a path written in the current scope and records the edge it makes.
    fn name(&mut self, segments: &[String]) {
        let Some((root, module)) = self.absolute(segments) else {
            return;
        };
        if let Some(target) = self.tree.resolve(&root, &module) {
            if target != self.file {
                self.found
                    .entry(target.clone())
                    .or_insert_with(|| segments.join("::"));
            }
        }
    }

    /// The crate root and module path a path names, if it names one of this repository's.
    fn absolute(&self, segments: &[String]) -> Option<ModulePath> {
        let first = segments.first()?;
        let root = self.root.to_string();
        match first.as_str() {
            "crate" => Some((root, segments[1..].to_vec())),
            LIBRARY if self.root != "lib.rs" => Some(("lib.rs".into(), segments[1..].to_vec())),
            "self" | "super" => {
                let mut scope = self.scope.clone();
                let mut rest = segments;
                if rest[0] == "self" {
                    rest = &rest[1..];
                }
                while rest.first().is_some_and(|s| s == "super") {
                    scope.pop()?;
                    rest = &rest[1..];
                }
                scope.extend(rest.iter().cloned());
                Some((root, scope))
            }
            name if self.children.last().is_some_and(|c| c.contains(name)) => {
                let mut scope = self.scope.clone();
                scope.extend(segments.iter().cloned());
                Some((root, scope))
            }
            _ => None,
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.name_with(prefix, name.ident.to_string()),
            syn::UseTree::Rename(rename) => self.name_with(prefix, rename.ident.to_string()),
            syn::UseTree::Glob(_) => self.name(&prefix.clone()),
            syn::UseTree::Group(group) => {
                for item in &group.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    fn name_with(&mut self, prefix: &[String], last: String) {
        let mut segments = prefix.to_vec();
        if last != "self" {
            segments.push(last);
        }
        self.name(&segments);
    }

    /// Paths in a macro's tokens: runs of identifiers joined by `::`.
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let colon =
            |i: usize| matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ':');
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident) if !(i >= 2 && colon(i - 1) && colon(i - 2)) => {
                    let mut run = vec![ident.to_string()];
                    while colon(i + 1) && colon(i + 2) {
                        let Some(TokenTree::Ident(next)) = tokens.get(i + 3) else {
                            break;
                        };
                        run.push(next.to_string());
                        i += 3;
                    }
                    if run.len() > 1 {
                        self.name(&run);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        let Some((_, items)) = &module.content else {
            return;
        };
        self.scope.push(module.ident.to_string());
        self.children.push(declared_modules(items));
        for item in items {
            self.visit_item(item);
        }
        self.children.pop();
        self.scope.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_none() {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.name(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }
}

#[cfg(test)]
mod resolver {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let sources = files
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect();
        Graph::build(&sources).expect("synthetic sources parse")
    }

    fn edges(graph: &Graph, from: &str) -> Vec<String> {
        graph.targets(from).cloned().collect()
    }

    #[test]
    fn grouped_use_reaches_the_deepest_module_file() {
        let graph = graph(&[
            ("lib.rs", "mod a; mod b;"),
            ("a/mod.rs", "mod c; mod d;"),
            ("a/c.rs", ""),
            ("a/d.rs", ""),
            ("b.rs", "use crate::a::{c::{Thing, Other}, d::{self}};"),
        ]);
        assert_eq!(edges(&graph, "b.rs"), ["a/c.rs", "a/d.rs"]);
        assert!(graph.cycles().is_empty());
    }

    #[test]
    fn items_of_a_folder_resolve_to_its_mod_file() {
        let graph = graph(&[
            ("lib.rs", "pub mod a;"),
            ("a/mod.rs", "mod c; pub struct Shared;"),
            ("a/c.rs", "fn f() -> super::Shared { crate::a::Shared }"),
        ]);
        assert_eq!(edges(&graph, "a/c.rs"), ["a/mod.rs"]);
        assert!(graph.cycles().is_empty(), "mod c; is no edge");
    }

    #[test]
    fn a_parent_wiring_its_child_and_the_child_naming_the_parent_is_a_cycle() {
        let graph = graph(&[
            ("lib.rs", "mod a;"),
            ("a.rs", "mod c; use c::Hub; pub struct Shared;"),
            ("a/c.rs", "pub struct Hub(super::Shared);"),
        ]);
        assert_eq!(graph.cycles(), [vec!["a.rs".to_string(), "a/c.rs".into()]]);
        let text = graph.describe(&graph.cycles()[0]);
        assert!(text.starts_with("a.rs → a/c.rs → a.rs\n"), "{text}");
    }

    #[test]
    fn comments_strings_and_own_tests_make_no_edges() {
        let graph = graph(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "pub fn f() {}"),
            (
                "b.rs",
                r#"// crate::a::f
                /// see [`crate::a::f`]
                fn g() -> &'static str { "crate::a::f" }
                #[cfg(test)] mod tests { use super::*; fn h() { super::g(); } }"#,
            ),
        ]);
        assert!(edges(&graph, "b.rs").is_empty());
    }

    #[test]
    fn macro_bodies_and_code_paths_make_edges() {
        let graph = graph(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "pub fn f() {}"),
            ("b.rs", "fn g() { let _ = vec![crate::a::f()]; }"),
            ("c.rs", "fn h() { self::super::b::g(); }"),
        ]);
        assert_eq!(edges(&graph, "b.rs"), ["a.rs"]);
        assert_eq!(edges(&graph, "c.rs"), ["b.rs"]);
    }

    #[test]
    fn a_separate_test_file_names_its_parent_and_three_file_rings_are_found() {
        let graph = graph(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::b::B; #[cfg(test)] mod a_tests;"),
            ("a/a_tests.rs", "use super::*;"),
            ("b.rs", "pub struct B(crate::c::C);"),
            ("c.rs", "pub struct C(Option<Box<crate::a::A>>);"),
            ("bin/tool.rs", "use vcs_agent::a::A;"),
        ]);
        assert_eq!(edges(&graph, "a/a_tests.rs"), ["a.rs"]);
        assert_eq!(edges(&graph, "bin/tool.rs"), ["a.rs"]);
        let cycles: Vec<String> = graph.cycles().iter().map(|c| c.join(" ")).collect();
        assert_eq!(cycles, ["a.rs b.rs c.rs"]);
    }
}
