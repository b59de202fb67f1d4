//! Rust source files as tidy reads them: finding them, blanking comments and literals, and cutting test-only code.
//!
//! This is a small lexer, not a parser: it knows just enough Rust (comments, string, raw string and char
//! literals, lifetimes, bracket nesting) that a text search over the result finds code and nothing else.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// One `.rs` file of the workspace.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// The path relative to the workspace root, as violations print it.
    pub(crate) path: PathBuf,
    /// The file's whole text.
    pub(crate) text: String,
}

/// Reads every `.rs` file under `root/dir` for each of `dirs` that exists, sorted by path.
///
/// Build output (`target`), hidden directories and `node_modules` are skipped.
pub(crate) fn rust_files(root: &Path, dirs: &[&str]) -> Result<Vec<SourceFile>> {
    let mut paths = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        if dir.is_dir() {
            collect_rust_paths(&dir, &mut paths)?;
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let path = path.strip_prefix(root).map(Path::to_path_buf).unwrap_or(path);
            Ok(SourceFile { path, text })
        })
        .collect()
}

fn collect_rust_paths(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            if name != "target" && name != "node_modules" && !name.starts_with('.') {
                collect_rust_paths(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The 1-based line of the character at `byte_offset` in `text`.
pub(crate) fn line_of(text: &str, byte_offset: usize) -> usize {
    text[..byte_offset].bytes().filter(|&b| b == b'\n').count() + 1
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte offsets of each occurrence of `pattern` in `code` that is not part of a longer identifier.
///
/// Where the pattern starts (or ends) with an identifier character, the character before (or after) the
/// match must not be one, so `.await` does not match `.awaited` and `Instant::now` does not match `MyInstant::now`.
pub(crate) fn find_token(code: &str, pattern: &str) -> Vec<usize> {
    let starts_ident = pattern.chars().next().is_some_and(is_ident_char);
    let ends_ident = pattern.chars().next_back().is_some_and(is_ident_char);
    code.match_indices(pattern)
        .map(|(at, _)| at)
        .filter(|&at| {
            let before = code[..at].chars().next_back();
            let after = code[at + pattern.len()..].chars().next();
            let joined_before = starts_ident && before.is_some_and(is_ident_char);
            let joined_after = ends_ident && after.is_some_and(is_ident_char);
            !joined_before && !joined_after
        })
        .collect()
}

/// `text` with every comment and the contents of every string and char literal replaced by spaces.
///
/// Newlines are kept, so line numbers in the result are those of `text`.
pub(crate) fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // `r`, the hashes and the opening quote stay; the body up to `"` and as many hashes is blanked.
            let open = i + 1 + hashes + 1;
            out.extend(&chars[i..open]);
            i = open;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    out.extend(&chars[i..i + 1 + hashes]);
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => {
                        blank(&mut out, chars[i]);
                        if let Some(&escaped) = chars.get(i + 1) {
                            blank(&mut out, escaped);
                        }
                        i += 2;
                    }
                    '"' => {
                        out.push('"');
                        i += 1;
                        break;
                    }
                    other => {
                        blank(&mut out, other);
                        i += 1;
                    }
                }
            }
        } else if c == '\'' {
            // A char literal is `'x'` or `'\…'`; anything else after a quote is a lifetime or a label.
            let end = if next == Some('\\') {
                (i + 3..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.push('\'');
                    for &inner in &chars[i + 1..end] {
                        blank(&mut out, inner);
                    }
                    out.push('\'');
                    i = end + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a raw string literal (`r"`, `r#"`, `br"`, `cr#"`, ...) starts with the `r` at `i`, its number of hashes.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != 'r' {
        return None;
    }
    let prefix_ok = match i.checked_sub(1).map(|p| chars[p]) {
        None => true,
        Some('b' | 'c') => i.checked_sub(2).is_none_or(|p| !is_ident_char(chars[p])),
        Some(prev) => !is_ident_char(prev),
    };
    if !prefix_ok {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// Code with its `#[cfg(test)]` items blanked out, and what that revealed about test-only files.
#[derive(Debug)]
pub(crate) struct NonTestCode {
    /// The input with every `#[cfg(test)]` item (attribute included) replaced by spaces, newlines kept.
    pub(crate) code: String,
    /// The whole file is test-only: it has an inner `#![cfg(test)]`.
    pub(crate) file_is_test_only: bool,
    /// Names of out-of-line modules declared test-only here (`#[cfg(test)] mod name;`).
    pub(crate) test_modules: Vec<String>,
}

/// Cuts the `#[cfg(test)]` items out of `code`, which must come from [`code_only`].
pub(crate) fn non_test_code(code: &str) -> NonTestCode {
    let mut out = NonTestCode { code: code.to_owned(), file_is_test_only: false, test_modules: Vec::new() };
    let bytes = code.as_bytes();
    let mut search_from = 0;
    while let Some(found) = code[search_from..].find('#') {
        let start = search_from + found;
        search_from = start + 1;
        let Some((inner, attr_end)) = match_cfg_test(code, start) else { continue };
        if inner {
            out.file_is_test_only = true;
            continue;
        }
        let item_end = item_end(bytes, attr_end);
        let item = &code[attr_end..item_end];
        if let Some(name) = out_of_line_module(item) {
            out.test_modules.push(name);
        }
        // One ASCII character per byte keeps every later offset valid, even past a non-ASCII identifier.
        let blanked: String = bytes[start..item_end].iter().map(|&b| if b == b'\n' { '\n' } else { ' ' }).collect();
        out.code.replace_range(start..item_end, &blanked);
        search_from = item_end;
    }
    out
}

/// Matches `#[cfg(test)]` or `#![cfg(test)]`, with any whitespace between tokens, at `start`.
/// Returns whether it is the inner form and the byte offset just past the closing `]`.
fn match_cfg_test(code: &str, start: usize) -> Option<(bool, usize)> {
    let mut rest = code[start..].strip_prefix('#')?;
    let inner = rest.trim_start().starts_with('!');
    if inner {
        rest = rest.trim_start().strip_prefix('!')?;
    }
    for token in ["[", "cfg", "(", "test", ")", "]"] {
        rest = rest.trim_start().strip_prefix(token)?;
    }
    Some((inner, code.len() - rest.len()))
}

/// The byte offset just past the item that starts at `from`: its first `;` or its matched `{ … }` block, whichever
/// comes first outside brackets (further attributes, generics and array types are passed over).
fn item_end(bytes: &[u8], from: usize) -> usize {
    let mut brackets = 0usize;
    let mut braces = 0usize;
    for (offset, &b) in bytes[from..].iter().enumerate() {
        match b {
            b'(' | b'[' => brackets += 1,
            b')' | b']' => brackets = brackets.saturating_sub(1),
            b'{' => braces += 1,
            b'}' => {
                braces = braces.saturating_sub(1);
                if braces == 0 && brackets == 0 {
                    return from + offset + 1;
                }
            }
            b';' if braces == 0 && brackets == 0 => return from + offset + 1,
            _ => {}
        }
    }
    bytes.len()
}

/// The module name if `item` is an out-of-line module declaration (`mod name;`, with any visibility).
fn out_of_line_module(item: &str) -> Option<String> {
    let item = item.trim();
    let decl = item.strip_suffix(';')?.trim_end();
    let mut words = decl.split_whitespace();
    let mut word = words.next()?;
    if word.starts_with("pub") {
        word = words.next()?;
    }
    let name = words.next()?;
    (word == "mod" && words.next().is_none() && name.chars().all(is_ident_char)).then(|| name.to_owned())
}

/// The directory that holds the files of the out-of-line child modules of the module in `file`.
pub(crate) fn child_module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new(""));
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("lib" | "main" | "mod") | None => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_only_blanks_comments_and_literals_and_keeps_lines() {
        let text = "let a = \"x.await\"; // x.await\n/* a /* nested */ .await */ b.await;\nlet c = '\"'; let d: &'static str = r#\"\".await\"#;\n";
        let code = code_only(text);
        assert_eq!(code.lines().count(), text.lines().count());
        assert_eq!(find_token(&code, ".await"), vec![code.find("b.await").unwrap() + 1]);
        assert!(code.contains("&'static str"), "{code}");
    }

    #[test]
    fn code_only_handles_escapes_and_lifetimes() {
        let code = code_only("fn f<'de>(x: &'de str) { let q = \"x\\\"y.await\"; let e = '\\''; }\nz.await");
        assert_eq!(find_token(&code, ".await").len(), 1, "{code}");
        assert_eq!(line_of(&code, find_token(&code, ".await")[0]), 2);
    }

    #[test]
    fn find_token_respects_identifier_boundaries() {
        assert!(find_token("x.awaited; MyInstant::now()", ".await").is_empty());
        assert!(find_token("MyInstant::now()", "Instant::now").is_empty());
        assert_eq!(find_token("std::time::Instant::now()", "Instant::now").len(), 1);
    }

    #[test]
    fn non_test_code_cuts_cfg_test_items() {
        let code = code_only(
            "fn real() {}\n#[cfg(test)]\nmod tests {\n    fn t() { x.await; }\n}\n#[cfg( test )] mod more;\nfn after() {}\n",
        );
        let cut = non_test_code(&code);
        assert!(!cut.code.contains(".await"), "{}", cut.code);
        assert!(cut.code.contains("fn real") && cut.code.contains("fn after"), "{}", cut.code);
        assert_eq!(cut.code.lines().count(), code.lines().count());
        assert_eq!(cut.test_modules, ["more"]);
        assert!(!cut.file_is_test_only);
        assert!(non_test_code("#![cfg(test)]\nfn f() {}").file_is_test_only);
    }

    #[test]
    fn child_module_dirs_follow_rust_module_paths() {
        assert_eq!(child_module_dir(Path::new("a/src/lib.rs")), Path::new("a/src"));
        assert_eq!(child_module_dir(Path::new("a/src/hub/mod.rs")), Path::new("a/src/hub"));
        assert_eq!(child_module_dir(Path::new("a/src/hub.rs")), Path::new("a/src/hub"));
    }
}
