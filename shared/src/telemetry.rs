//! Logging: one JSON object per line on stdout, which CloudWatch and the local run both
//! read. `RUST_LOG` overrides the level.
//!
//! On Lambda, each invocation runs inside the runtime's `Lambda runtime invoke` span,
//! which holds the invocation's `requestId` (and `xrayTraceId` when the function is
//! traced): every line logged while it runs carries them as `span.requestId` and
//! `span.xrayTraceId`. The lines have a `level` (`INFO`, ...), which Lambda's JSON log
//! format reads for its application log level. The local server has no such span.

use tracing::Subscriber;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    // A second call (tests, the local server after the admin code) is harmless.
    let _ = subscriber(filter, std::io::stdout).try_init();
}

/// The filter for a `RUST_LOG` value: a level (`warn`) and `target=level` pairs
/// (`warn,im_shared=debug`), as `EnvFilter` reads them. `Targets` rather than `EnvFilter`
/// because `EnvFilter` links a regex engine (`regex-automata`) into every function for
/// span-field value directives (`[{id=1}]`) nobody here uses. Unset, blank, or not
/// parsable (such a directive included) gives `info`, so that a typo in a function's
/// environment never silences its logs.
pub fn filter_from(rust_log: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    // `Targets` would read an empty directive (`warn,`) as "every target at trace";
    // `EnvFilter` skips it.
    let directives: Vec<&str> = rust_log
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return info();
    }
    directives.join(",").parse().unwrap_or_else(|_| info())
}

/// `init`'s subscriber, on any writer (the tests read what it writes).
fn subscriber<W>(filter: Targets, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::layer()
        .json()
        .with_target(false)
        // The innermost span (the runtime's, with the request id) as `span`; not the
        // whole list, which would repeat it.
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer);
    tracing_subscriber::registry().with(format).with(filter)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn lines(filter: super::Targets, log: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        tracing::subscriber::with_default(super::subscriber(filter, buf.clone()), log);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn messages(lines: &[serde_json::Value]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| l["fields"]["message"].as_str().unwrap())
            .collect()
    }

    /// A line logged inside the runtime's span carries its request id and trace id.
    #[test]
    fn a_line_inside_the_invocation_span_carries_the_request_id() {
        let out = lines(super::filter_from(None), || {
            let span = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "req-42",
                xrayTraceId = "Root=1-abc"
            );
            let _in = span.enter();
            tracing::info!(status = 200, "request");
        });
        let line = &out[0];
        assert_eq!(line["span"]["requestId"], "req-42");
        assert_eq!(line["span"]["xrayTraceId"], "Root=1-abc");
        assert_eq!(line["level"], "INFO");
        assert!(line.get("spans").is_none());
    }

    fn log_at_each_level() {
        tracing::debug!(target: "im_shared::store", "store debug");
        tracing::info!(target: "im_shared::store", "store info");
        tracing::debug!(target: "lambda_runtime", "runtime debug");
        tracing::info!(target: "lambda_runtime", "runtime info");
        tracing::warn!(target: "lambda_runtime", "runtime warn");
    }

    #[test]
    fn without_rust_log_the_level_is_info() {
        for value in [None, Some(""), Some("  ")] {
            let out = lines(super::filter_from(value), log_at_each_level);
            assert_eq!(
                messages(&out),
                ["store info", "runtime info", "runtime warn"],
                "RUST_LOG={value:?}"
            );
        }
    }

    #[test]
    fn rust_log_directives_set_the_level_per_target() {
        let out = lines(
            super::filter_from(Some("warn,im_shared=debug")),
            log_at_each_level,
        );
        assert_eq!(
            messages(&out),
            ["store debug", "store info", "runtime warn"]
        );
        let out = lines(super::filter_from(Some(" warn, ,")), log_at_each_level);
        assert_eq!(messages(&out), ["runtime warn"]);
        let out = lines(super::filter_from(Some("error")), log_at_each_level);
        assert_eq!(messages(&out), Vec::<&str>::new());
    }

    #[test]
    fn an_unparsable_rust_log_falls_back_to_info() {
        for value in [
            "im_shared=loud",
            "a=b=c",
            "im_shared[{id=1}]=debug",
            "im_shared[{id}=debug",
        ] {
            let out = lines(super::filter_from(Some(value)), log_at_each_level);
            assert_eq!(
                messages(&out),
                ["store info", "runtime info", "runtime warn"],
                "RUST_LOG={value:?}"
            );
        }
    }
}
