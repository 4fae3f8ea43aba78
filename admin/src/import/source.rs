//! Reading the vendor's export, streaming: a `.jsonl` file (one record a line, each
//! read on its own, so a line that is not JSON is refused with its number and the next
//! is read), a JSON array, `{"results": [...]}` (the REST answers' shape), or the
//! console's `.tar.gz` holding any of these. Records go to a callback one at a time; no
//! file is held in memory whole.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The longest line a `.jsonl` record may be (a 5,000-member conversation with 64-char
/// ids is about 350 KB).
const MAX_LINE_BYTES: usize = 16 << 20;

/// One record read, or why what was there is not one, and where.
#[derive(Debug)]
pub struct Read1 {
    /// `file[!member]:line N` (or `record N` in an array).
    pub source: String,
    pub record: Result<Value, String>,
}

/// Which shape a file turned out to have (the report names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    JsonLines,
    Array,
    Results,
    Empty,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::JsonLines => "JSON lines",
            Shape::Array => "a JSON array",
            Shape::Results => "{\"results\": [...]}",
            Shape::Empty => "empty",
        })
    }
}

/// Reads every record of `path` (a gzip stream is read as a `.tar.gz`, whatever its
/// name), calling `each` for each; answers what was read, by
/// file (and archive member), for the report. An error here is one the whole file
/// cannot be read past (it cannot be opened, an archive is cut short): reported by the
/// caller as a refusal of the rest of that file, and the run goes on.
pub fn read_path(path: &Path, each: &mut dyn FnMut(Read1)) -> Result<Vec<(String, Shape)>, String> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|e| format!("{name}: cannot be opened: {e}"))?;
    // A gzip stream, whatever the file is called (the console's download may be renamed).
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    use std::io::Seek;
    file.rewind()
        .map_err(|e| format!("{name}: cannot be read: {e}"))?;
    if gzip {
        return read_archive(&name, file, each);
    }
    let shape = read_stream(&name, BufReader::new(file), each);
    Ok(vec![(name, shape)])
}

/// The regular files of a `.tar.gz`. When some are named for the class
/// (`_Conversation...`), only those are read (an export holds every class); otherwise
/// every one.
fn read_archive(
    name: &str,
    file: File,
    each: &mut dyn FnMut(Read1),
) -> Result<Vec<(String, Shape)>, String> {
    // First the names (a cut archive lists what comes before the cut), then the reading.
    let names = {
        let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(&file)));
        let mut names = Vec::new();
        if let Ok(entries) = archive.entries() {
            for entry in entries {
                let Ok(entry) = entry else { break };
                if let (true, Ok(path)) = (entry.header().entry_type().is_file(), entry.path()) {
                    names.push(path.display().to_string());
                }
            }
        }
        names
    };
    let by_class = names.iter().any(|n| is_conversation_file(n));
    let mut file = file;
    std::io::Seek::rewind(&mut file).map_err(|e| cut(name, e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut read = Vec::new();
    for entry in archive.entries().map_err(|e| cut(name, e))? {
        let entry = entry.map_err(|e| cut(name, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry
            .path()
            .map_err(|e| cut(name, e))?
            .display()
            .to_string();
        let base = member.rsplit('/').next().unwrap_or(&member);
        if base.starts_with("._") || (by_class && !is_conversation_file(&member)) {
            continue;
        }
        let label = format!("{name}!{member}");
        let shape = read_stream(&label, BufReader::new(entry), each);
        read.push((label, shape));
    }
    Ok(read)
}

fn is_conversation_file(member: &str) -> bool {
    member
        .rsplit('/')
        .next()
        .unwrap_or(member)
        .starts_with("_Conversation")
}

fn cut(name: &str, e: std::io::Error) -> String {
    format!("{name}: the archive cannot be read past here ({e}): a truncated or damaged .tar.gz?")
}

/// One file's records, whichever of the three shapes it has: a first `[` is an array,
/// an object whose first key is `results` or `cursor` (no column of the class has those
/// names) the REST shape, anything else JSON lines.
fn read_stream<R: BufRead>(label: &str, mut input: R, each: &mut dyn FnMut(Read1)) -> Shape {
    let start = match peek(&mut input) {
        Ok(s) => s,
        Err(e) => {
            each(Read1 {
                source: label.to_owned(),
                record: Err(format!("cannot be read: {e}")),
            });
            return Shape::Empty;
        }
    };
    let trimmed = start.trim_start();
    if trimmed.is_empty() {
        return Shape::Empty;
    }
    if trimmed.starts_with('[') {
        read_array(label, input, each, false);
        Shape::Array
    } else if trimmed.starts_with('{')
        && ["\"results\"", "\"cursor\""]
            .iter()
            .any(|k| trimmed[1..].trim_start().starts_with(k))
    {
        read_array(label, input, each, true);
        Shape::Results
    } else {
        read_lines(label, input, each);
        Shape::JsonLines
    }
}

/// The first bytes, not consumed.
fn peek<R: BufRead>(input: &mut R) -> std::io::Result<String> {
    let buf = input.fill_buf()?;
    Ok(String::from_utf8_lossy(&buf[..buf.len().min(256)]).into_owned())
}

fn read_lines<R: BufRead>(label: &str, mut input: R, each: &mut dyn FnMut(Read1)) {
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        n += 1;
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                each(Read1 {
                    source: format!("{label}:{n}"),
                    record: Err(format!(
                        "cannot be read past line {n} ({e}): a truncated or damaged file?"
                    )),
                });
                return;
            }
        }
        if line.len() > MAX_LINE_BYTES {
            each(Read1 {
                source: format!("{label}:{n}"),
                record: Err(format!(
                    "line {n} is longer than {MAX_LINE_BYTES} bytes; the rest of the file is not read"
                )),
            });
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = serde_json::from_slice::<Value>(&line).map_err(|e| {
            let at = if e.is_eof() {
                "is cut short (a truncated file?)".to_owned()
            } else {
                format!("is not JSON ({e})")
            };
            format!("line {n} {at}")
        });
        each(Read1 {
            source: format!("{label}:{n}"),
            record,
        });
    }
}

/// An array (`results: false`) or `{"results": [...]}`, element by element through a
/// visitor, so that the array is never held whole.
fn read_array<R: BufRead>(label: &str, input: R, each: &mut dyn FnMut(Read1), results: bool) {
    let mut count = 0u64;
    let mut de = serde_json::Deserializer::from_reader(input);
    let seq = Elements {
        label,
        each,
        count: &mut count,
    };
    let outcome = if results {
        serde::Deserializer::deserialize_map(&mut de, Results(seq))
    } else {
        serde::Deserializer::deserialize_seq(&mut de, seq)
    }
    .and_then(|()| de.end());
    if let Err(e) = outcome {
        let what = if e.is_eof() {
            "is cut short (a truncated file?)"
        } else {
            "is malformed"
        };
        each(Read1 {
            source: format!("{label}:{}", e.line()),
            record: Err(format!(
                "the array {what} at line {}, column {}: {e}; records after {count} are not read",
                e.line(),
                e.column()
            )),
        });
    }
}

struct Elements<'a, 'f> {
    label: &'a str,
    each: &'a mut (dyn FnMut(Read1) + 'f),
    count: &'a mut u64,
}

impl<'de> Visitor<'de> for Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            *self.count += 1;
            (self.each)(Read1 {
                source: format!("{}:record {}", self.label, self.count),
                record: Ok(v),
            });
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Elements<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

struct Results<'a, 'f>(Elements<'a, 'f>);

impl<'de> Visitor<'de> for Results<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{\"results\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut elements = Some(self.0);
        while let Some(k) = map.next_key::<String>()? {
            match (k.as_str(), elements.take()) {
                ("results", Some(seq)) => map.next_value_seed(seq)?,
                (_, taken) => {
                    elements = taken;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record's source and objectId, or why it is none.
    type Seen = Vec<(String, Result<String, String>)>;

    fn read(text: &str) -> (Shape, Seen) {
        let mut out = Vec::new();
        let shape = read_stream("f", BufReader::new(text.as_bytes()), &mut |r| {
            out.push((
                r.source,
                r.record
                    .map(|v| v["objectId"].as_str().unwrap_or("?").to_owned()),
            ))
        });
        (shape, out)
    }

    #[test]
    fn json_lines_go_on_past_a_bad_line_and_say_which() {
        let (shape, out) =
            read("{\"objectId\":\"a\"}\n\nnot json\n{\"objectId\":\"b\"}\n{\"objectId\":\"c\"");
        assert_eq!(shape, Shape::JsonLines);
        assert_eq!(out[0], ("f:1".into(), Ok("a".into())));
        assert_eq!(out[1].0, "f:3");
        assert!(out[1]
            .1
            .as_ref()
            .unwrap_err()
            .starts_with("line 3 is not JSON"));
        assert_eq!(out[2], ("f:4".into(), Ok("b".into())));
        assert!(
            out[3]
                .1
                .as_ref()
                .unwrap_err()
                .contains("line 5 is cut short"),
            "{out:?}"
        );
    }

    #[test]
    fn arrays_and_results_stream_their_elements() {
        let (shape, out) = read(" [{\"objectId\":\"a\"},{\"objectId\":\"b\"}]");
        assert_eq!(shape, Shape::Array);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], ("f:record 2".into(), Ok("b".into())));
        let (shape, out) =
            read("{\"cursor\": null, \"results\": [{\"objectId\":\"a\"}], \"x\": [1]}");
        assert_eq!(shape, Shape::Results);
        assert_eq!(out, [("f:record 1".to_owned(), Ok("a".to_owned()))]);
        let (_, out) = read("[{\"objectId\":\"a\"},\n{\"objectId\":");
        assert_eq!(out[0].1, Ok("a".into()));
        let e = out[1].1.as_ref().unwrap_err();
        assert!(
            e.contains("cut short") && e.contains("at line 2") && e.contains("after 1"),
            "{e}"
        );
        assert_eq!(read("  \n").0, Shape::Empty);
    }
}
