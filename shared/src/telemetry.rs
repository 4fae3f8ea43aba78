//! Logging: one JSON object per line on stdout, which CloudWatch and the local run both
//! read. `RUST_LOG` overrides the level.
//!
//! On Lambda, each invocation runs inside the runtime's `Lambda runtime invoke` span,
//! which holds the invocation's `requestId` (and `xrayTraceId` when the function is
//! traced): every line logged while it runs carries them as `span.requestId` and
//! `span.xrayTraceId`. The lines have a `level` (`INFO`, ...), which Lambda's JSON log
//! format reads for its application log level. The local server has no such span.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests, the local server after the admin code) is harmless.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        // The innermost span (the runtime's, with the request id) as `span`; not the
        // whole list, which would repeat it.
        .with_current_span(true)
        .with_span_list(false)
        .try_init();
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

    /// The same settings as `init`, on a buffer: a line logged inside the runtime's span
    /// carries its request id and trace id.
    #[test]
    fn a_line_inside_the_invocation_span_carries_the_request_id() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_target(false)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(buf.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "req-42",
                xrayTraceId = "Root=1-abc"
            );
            let _in = span.enter();
            tracing::info!(status = 200, "request");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(line["span"]["requestId"], "req-42");
        assert_eq!(line["span"]["xrayTraceId"], "Root=1-abc");
        assert_eq!(line["level"], "INFO");
        assert!(line.get("spans").is_none());
    }
}
