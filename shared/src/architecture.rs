//! The module graph, checked: no import cycles between modules, and the layers point one
//! way (the model imports nothing of the crate's other layers; storage imports nothing
//! from the HTTP layer). Read from the source, so it holds for every build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of the crate (`a::b` for `src/a/b.rs` or `src/a/b/mod.rs`) and its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(stem);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if stem != "mod" && stem != "lib" {
                    p.push(stem);
                }
                out.insert(p.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The modules `module`'s source refers to (`crate::x::y`, `super::x`, `self::x`),
/// each resolved to the longest known module path; references into the module itself,
/// its ancestors' own items, and test code are not edges.
fn edges(module: &str, source: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    // Comments (doc links included) are not imports; test code is not the module's.
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let parent: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let rest = &code[start..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<&str> = match segments.first() {
            Some(&"crate") => Vec::new(),
            Some(&"super") => parent[..parent.len().saturating_sub(1)].to_vec(),
            _ => continue,
        };
        segments.remove(0);
        while segments.first() == Some(&"super") {
            base.pop();
            segments.remove(0);
        }
        base.extend(segments);
        // The longest prefix that is a module.
        while !base.is_empty() && !known.contains(&base.join("::")) {
            base.pop();
        }
        let target = base.join("::");
        let own =
            target == module || module.starts_with(&format!("{target}::")) || target.is_empty();
        if !own {
            out.insert(target);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, src)| (m.clone(), edges(m, src, &known)))
        .collect()
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = graph();
    // Depth-first search; a module met again while on the path closes a cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(
        graph.len() > 20,
        "too few modules found: {:?}",
        graph.keys()
    );
}

#[test]
fn layers_point_one_way() {
    let graph = graph();
    let under = |m: &str, layer: &str| m == layer || m.starts_with(&format!("{layer}::"));
    for (module, targets) in &graph {
        for target in targets {
            let forbidden = (under(module, "model") && !under(target, "model"))
                || (under(module, "store") && (under(target, "api") || under(target, "auth")))
                || (under(module, "auth") && under(target, "api"))
                || (under(module, "config") && (under(target, "api") || under(target, "store")));
            assert!(!forbidden, "{module} must not import {target}");
        }
    }
}

#[test]
fn the_checker_sees_edges() {
    let known: BTreeSet<String> = ["a", "a::b", "c"].iter().map(|s| s.to_string()).collect();
    let e = edges(
        "a::b",
        "use crate::c::Thing;\nuse super::x;\nfn f() { super::super::c::g() }",
        &known,
    );
    assert_eq!(e, BTreeSet::from(["c".to_owned()]));
    let e = edges(
        "c",
        "use crate::a::b::{X, Y}; // crate::c\n/// [`crate::a`]\n#[cfg(test)]\nuse crate::a::Z;",
        &known,
    );
    assert_eq!(e, BTreeSet::from(["a::b".to_owned()]));
}
